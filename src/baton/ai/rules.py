"""Rules that name a category of an ``ai`` classify step, checked against what the step can
answer.

An orchestration acts on a classification with expressions such as ``next: [{when:
'=steps.intent.output.category == "card_arrival"', goto: ...}]`` (or a step's ``when``, a
stage's ``exit_when``, an input mapping: wherever an ``=expression`` stands). The step
answers one of its ``categories`` or, with ``classifier: NAME``, one of the labels of the
latest trained version of NAME as well. A rule naming a category the step cannot answer
never holds, and nothing says so at run time: a classifier retrained without a label (or
with it renamed), or a rule edited with a typo, silently routes every text elsewhere. A
fulfillment's step templates are orchestration steps too (their ``when``, their input:
``steps.intent.output.category`` of a template ``intent``; a scenario's ``when`` sees
no step), checked the same way. So:

* deploying or validating an orchestration or a fulfillment
  (:func:`definition_issues_txn`) reports each such rule as an error, with file, line and
  path, checked against the latest stored version of the step's classifier (a classifier
  never trained is not checked: the step says so when it runs);
* activating a stored version (:func:`activation_issues_txn`, from
  :meth:`baton.runtime.definitions.DefinitionRepo.set_active`) is refused the same way:
  an older version may name a label the classifier's latest version dropped;
* ``baton ai train`` (:func:`conflicts_txn`, from :func:`baton.ai.trained.train`) warns,
  or refuses with ``--strict``, when the new version lacks a category a rule of a deployed
  orchestration names (its active version, and any version runs are still on) or one of
  an active fulfillment's step templates.

What a rule names is read from the expression's text: a category step's output compared
with a string (``==``, ``!=``, either side) or tested with ``in [...]`` against a list of
strings (:func:`named_categories`). A category computed at run time is not seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from baton.errors import BatonError, Issue
from baton.expressions.cel import unquote

_STR = r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\''
_STRING = re.compile(_STR)
_REF = re.compile(r"(?<![\w.])steps\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*(" + _STR + r")\s*\])"
                  r"\s*\.\s*output\s*\.\s*category\b")
_OP = re.compile(r"\s*(==|!=)\s*")
_OP_BEFORE = re.compile(r"(==|!=)\s*\Z")
_IN = re.compile(r"\s+in\s*\[")
_LIST_ITEM = re.compile(r"\s*(" + _STR + r")\s*(,|\])")
_TIGHTER = frozenset("+-*/%.[(")  # after a string: it is part of a larger operand
_TIGHTER_BEFORE = frozenset("+-*/%!")  # before an operand: so is it
LISTED = 10  # categories named in a message before "…"


@dataclass(frozen=True)
class ClassifyStep:
    """An ``ai`` step with ``task: classify`` (or a fulfillment's step template): its own
    categories and its classifier."""

    name: str
    path: str  # stages[0].steps[1] (a fulfillment's: scenarios[0].steps[1], groups.g[0])
    categories: frozenset[str]
    classifier: str | None


@dataclass(frozen=True)
class CategoryRule:
    """An expression that names ``category`` of the classify step ``step``."""

    step: str
    category: str
    path: str  # where the expression stands: stages[0].next[1].when
    line: int = 0  # its line in the file (0: unknown)
    negated: bool = False  # compared with != (which then always holds)

    def never(self) -> str:
        """What comparing with a category the step never answers does."""
        return ("the comparison (!=) always holds" if self.negated
                else "the rule can never hold")


@dataclass(frozen=True)
class UnknownCategory:
    """A rule naming a category its step cannot answer. ``known``: what the step can
    answer (its categories, and its classifier's labels: of ``version``)."""

    orchestration: str
    file: str
    rule: CategoryRule
    step: ClassifyStep
    known: frozenset[str]
    version: int | None = None  # the classifier's version checked against
    orchestration_version: int | None = None  # a deployed version (None: being deployed)
    runs: int = 0  # runs in progress on that version
    kind: str = "orchestration"  # or "fulfillment" (``orchestration``: its name)

    def message(self) -> str:
        """What is wrong, for a definition's issue (located by the caller)."""
        step, cat = self.step, self.rule.category
        hint = _suggest(cat, self.known)
        if step.classifier is None:
            return (f"names category '{cat}' of ai step '{step.name}', which has no such "
                    f"category{hint} (its categories: {_listed(self.known)}): "
                    f"{self.rule.never()}")
        own = (f", and the step's own categories: {_listed(step.categories)}"
               if step.categories else "")
        return (f"names category '{cat}' of ai step '{step.name}', which its classifier "
                f"'{step.classifier}' (v{self.version}, the latest) does not know{hint} "
                f"(its labels: {_listed(self.known - step.categories)}{own}): "
                f"{self.rule.never()}; train a version with that label (baton ai train "
                f"{step.classifier} --from FILE.csv) or change the rule")

    def where(self) -> str:
        """The orchestration (deployed version), its file, and where the rule stands."""
        version = (f" v{self.orchestration_version}"
                   if self.orchestration_version is not None else "")
        runs = (f", {self.runs:,} run{'s' if self.runs != 1 else ''} in progress"
                if self.runs else "")
        return (f"{self.kind} '{self.orchestration}'{version} ({self.file}{runs}), "
                f"{self.rule.path}")

    def to_json(self) -> dict[str, Any]:
        """(the definition's name under its kind: ``orchestration`` or ``fulfillment``)"""
        return {self.kind: self.orchestration, "version": self.orchestration_version,
                "file": self.file, "path": self.rule.path, "step": self.step.name,
                "category": self.rule.category, "runs_in_progress": self.runs}


class LabelsInUse(BatonError):
    """``baton ai train --strict``: the new version lacks categories that rules of deployed
    orchestrations name; nothing was stored."""

    def __init__(self, name: str, version: int, unknown: Sequence[UnknownCategory]) -> None:
        self.unknown = tuple(unknown)
        lines = [f"{u.where()}: names category '{u.rule.category}' of ai step "
                 f"'{u.step.name}'" for u in self.unknown]
        n = len(self.unknown)
        super().__init__(f"classifier {name} v{version} not stored: it lacks "
                         f"{'a category' if n == 1 else f'{n} categories'} that deployed "
                         "rules name (they could never hold):\n  " + "\n  ".join(lines)
                         + "\nadd the labels to the training file, or change the rules "
                           "first (without --strict it is stored with a warning)")


# ---- what an expression names ----------------------------------------------------------------

def named_categories(source: str) -> Iterator[tuple[str, str, bool]]:
    """``(step, category, negated)`` for each category an expression compares a step's
    ``output.category`` with: ``steps.s.output.category == "x"`` (or ``!=``: ``negated``,
    or the string first), ``steps["s"].output.category in ["x", "y"]``. Text inside
    strings is not a reference; a comparison with anything but a string literal (or a list
    of them) names nothing."""
    text = source.removeprefix("=")
    spans = [m.span() for m in _STRING.finditer(text)]
    starts = {a: b for a, b in spans}
    ends = {b: a for a, b in spans}
    for m in _REF.finditer(text):
        if any(a <= m.start() < b for a, b in spans):
            continue  # inside a string literal
        step = m.group(1) or unquote(m.group(2))
        before = text[:m.start()].rstrip()
        if before and before[-1] in _TIGHTER_BEFORE:
            continue  # (x + steps.s.output.category): not the category compared
        op = _OP.match(text, m.end())
        if op is not None and op.end() in starts and _alone(text, starts[op.end()]):
            yield step, unquote(text[op.end():starts[op.end()]]), op.group(1) == "!="
            continue
        if op is None and (listed := _IN.match(text, m.end())) is not None:
            yield from ((step, c, False) for c in _listed_strings(text, listed.end()))
            continue
        left = _OP_BEFORE.search(before)
        if left is not None and op is None:
            head = before[:left.start()].rstrip()
            if len(head) in ends and _alone_before(text, ends[len(head)]):
                yield step, unquote(head[ends[len(head)]:]), left.group(1) == "!="


def _alone(text: str, end: int) -> bool:
    """Whether a string literal ending at ``end`` is the whole operand (not ``"a" + x``)."""
    rest = text[end:].lstrip()
    return not rest or rest[0] not in _TIGHTER


def _alone_before(text: str, start: int) -> bool:
    head = text[:start].rstrip()
    return not head or head[-1] not in _TIGHTER_BEFORE


def _listed_strings(text: str, at: int) -> list[str]:
    """The strings of a list literal starting at ``at`` (after its ``[``); none when an
    element is not a string literal (a computed list names nothing for sure)."""
    out = []
    while (m := _LIST_ITEM.match(text, at)) is not None:
        out.append(unquote(m.group(1)))
        at = m.end()
        if m.group(2) == "]":
            return out
    return []


# ---- what an orchestration (or a fulfillment) document has --------------------------------

def _steps(data: Any) -> Iterator[tuple[str, Any]]:
    """``(path, step)`` for each step of an orchestration document (its stages' steps) or
    of a fulfillment document (its step templates: each group's, each scenario's)."""
    if not isinstance(data, Mapping):
        return
    if data.get("kind") == "fulfillment":
        groups = data.get("groups")
        for g, steps in (groups.items() if isinstance(groups, Mapping) else ()):
            for j, step in enumerate(steps if isinstance(steps, list) else ()):
                yield f"groups.{g}[{j}]", step
        key = "scenarios"
    else:
        key = "stages"
    holders = data.get(key)
    for i, holder in enumerate(holders if isinstance(holders, list) else ()):
        path = f"{key}[{i}]"
        steps = holder.get("steps") if isinstance(holder, Mapping) else None
        for j, step in enumerate(steps if isinstance(steps, list) else ()):
            yield f"{path}.steps[{j}]", step


def classify_steps(data: Any) -> dict[str, ClassifyStep]:
    """The ``ai`` classify steps of an orchestration document (its YAML data), or the
    step templates of a fulfillment document, by name."""
    out: dict[str, ClassifyStep] = {}
    for path, step in _steps(data):
        if not (isinstance(step, Mapping) and step.get("type") == "ai"
                and step.get("task") == "classify" and isinstance(step.get("name"), str)):
            continue
        cats = step.get("categories")
        names = frozenset(str(c["name"]) for c in (cats if isinstance(cats, list) else ())
                          if isinstance(c, Mapping) and isinstance(c.get("name"), str))
        classifier = step.get("classifier")
        out.setdefault(step["name"], ClassifyStep(
            step["name"], path, names, classifier if isinstance(classifier, str) else None))
    return out


def category_rules(data: Any, lines: Mapping[str, int] | None = None,
                   steps: Mapping[str, ClassifyStep] | None = None) -> list[CategoryRule]:
    """Every expression of an orchestration document that names a category of one of its
    classify steps (``steps``: :func:`classify_steps`), with where it stands."""
    steps = classify_steps(data) if steps is None else steps
    out = []
    for path, source in _expressions(data, ""):
        for step, category, negated in named_categories(source):
            if step in steps:
                out.append(CategoryRule(step, category, path, _line(lines or {}, path),
                                        negated))
    return out


def unknown_categories(orchestration: str, file: str, data: Any,
                       labels: Callable[[str], tuple[int, frozenset[str]] | None],
                       lines: Mapping[str, int] | None = None,
                       only_classifier: str | None = None) -> list[UnknownCategory]:
    """The rules of an orchestration (or fulfillment) document naming a category their
    step cannot answer. ``labels(classifier)``: its latest version and labels, or None
    when it has none (its steps are not checked). ``only_classifier``: check only the
    steps using that one."""
    steps = classify_steps(data)
    if only_classifier is not None:
        steps = {k: s for k, s in steps.items() if s.classifier == only_classifier}
    if not steps:
        return []
    out = []
    for rule in category_rules(data, lines, steps):
        step = steps[rule.step]
        known, version = step.categories, None
        if step.classifier is not None:
            got = labels(step.classifier)
            if got is None:
                continue  # never trained: the step says so when it runs
            version, known = got[0], known | got[1]
        if rule.category not in known:
            out.append(UnknownCategory(orchestration, file, rule, step, known, version,
                                       kind=_kind(data)))
    return out


def _kind(data: Any) -> str:
    return "fulfillment" if isinstance(data, Mapping) and data.get(
        "kind") == "fulfillment" else "orchestration"


def _expressions(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if value.startswith("="):
            yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _expressions(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _expressions(v, f"{path}[{i}]")


def _line(lines: Mapping[str, int], path: str) -> int:
    while path and path not in lines:
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get(path, 0)


def _listed(names: frozenset[str]) -> str:
    ordered = sorted(names)
    if not ordered:
        return "none"
    more = f", … ({len(ordered)} in all)" if len(ordered) > LISTED else ""
    return ", ".join(ordered[:LISTED]) + more


def _suggest(name: str, options: frozenset[str]) -> str:
    from baton.definitions.checks import suggest

    return suggest(name, sorted(options))


# ---- against the store -------------------------------------------------------------------------

def _labels_txn(tx: Any) -> Callable[[str], tuple[int, frozenset[str]] | None]:
    """The latest version and labels of a classifier, read in ``tx`` once per name."""
    seen: dict[str, tuple[int, frozenset[str]] | None] = {}

    def labels(name: str) -> tuple[int, frozenset[str]] | None:
        if name not in seen:
            row = tx.classifier_txn(name, data=False)
            seen[name] = None if row is None else (int(row["version"]),
                                                    frozenset(row["labels"] or ()))
        return seen[name]

    return labels


def _checked(docs: Sequence[Any]) -> list[Any]:
    """The orchestrations and fulfillments among ``docs`` with a classify step (a step
    template) and a rule that may name one of its categories (the others need no parse,
    nor a read of the store)."""
    from baton.definitions.model import OrchestrationDefinition
    from baton.definitions.plans import FulfillmentDefinition

    def classifies(defn: Any) -> bool:
        if isinstance(defn, OrchestrationDefinition):
            return any(s.type == "ai" and s.options.get("task") == "classify"
                       for stage in defn.stages for s in stage.steps)
        if isinstance(defn, FulfillmentDefinition):
            return any(t.get("type") == "ai" and t.get("task") == "classify"
                       for t in defn.templates.values())
        return False

    return [d for d in docs if "category" in d.source and classifies(d.definition)]


def definition_issues(store: Any, docs: Sequence[Any]) -> list[Issue]:
    """:func:`definition_issues_txn` in a read transaction of its own, opened only when a
    document among ``docs`` has something to check (``baton validate``)."""
    if not _checked(docs):
        return []
    with store.read() as tx:
        return definition_issues_txn(tx, docs)


def definition_issues_txn(tx: Any, docs: Sequence[Any], *, lock: bool = False) -> list[Issue]:
    """The rules of the orchestrations and fulfillments among ``docs`` (loaded
    definitions; a fulfillment's: its step templates') naming a
    category their classify step cannot answer (its categories, and the labels of the
    latest stored version of its classifier), as errors with file, line and path: what a
    deploy refuses and ``baton validate`` lists. ``lock``: a deploy's write transaction
    takes the definitions lock first, as ``baton ai train`` does before it stores a
    version, so that neither misses what the other commits."""
    from baton.definitions.loader import parse_text

    wanted = _checked(docs)
    if not wanted:
        return []
    if lock:
        tx.lock_definitions_txn()
    labels = _labels_txn(tx)
    issues = []
    for doc in wanted:
        parsed, _ = parse_text(doc.source, doc.file)
        if len(parsed) != 1:
            continue  # (validated already: one document)
        shift = doc.line - parsed[0].line  # its lines in the file, not in its source
        lines = {k: v + shift for k, v in parsed[0].lines.items()}
        for u in unknown_categories(doc.name, doc.file, parsed[0].data, labels, lines):
            issues.append(Issue(doc.file, u.rule.line, u.rule.path, u.message()))
    return issues


# The kinds whose versions hold ai steps: an orchestration's, a fulfillment's templates.
KINDS = ("orchestration", "fulfillment")


def activation_issues_txn(tx: Any, row: Any) -> list[Issue]:
    """The rules of a stored version ``row`` (a :class:`~baton.store.base.DefinitionRow`
    of an orchestration or a fulfillment) naming a category their classify step cannot
    answer (its categories, and the labels of the latest stored version of its
    classifier): what activating that version refuses, as a deploy refuses them. In the
    activation's transaction, under the definitions lock (which ``baton ai train`` takes
    before it stores a version). Located in the version's own text (a file's other
    documents are not stored with it), as ``baton definitions show`` prints it."""
    from baton.definitions.loader import parse_text

    if row.kind not in KINDS or "category" not in row.source or "classify" not in row.source:
        return []
    parsed, _ = parse_text(row.source, row.file)
    if len(parsed) != 1:
        return []  # (validated when deployed: one document)
    kind = "" if row.kind == "orchestration" else f" --kind {row.kind}"
    said = (f" (activating {row.kind} '{row.name}' v{row.version}; its line as `baton "
            f"definitions show {row.name}{kind} --version {row.version}` prints it)")
    return [Issue(row.file, u.rule.line, u.rule.path, u.message() + said)
            for u in unknown_categories(row.name, row.file, parsed[0].data, _labels_txn(tx),
                                        parsed[0].lines)]


def conflicts_txn(tx: Any, classifier: str, labels: frozenset[str], version: int
                  ) -> list[UnknownCategory]:
    """The rules of deployed orchestrations (each one's active version, and any version
    runs in progress are on: they classify with the latest version too) and of active
    fulfillments (their step templates) that name a category a step with ``classifier:
    NAME`` could not answer if ``labels`` were the classifier's (its version
    ``version``). (A plan made already runs the steps its fulfillment's version gave it:
    that version is checked while it is active.)"""
    from baton.definitions.loader import parse_text

    rows = [r for kind in KINDS for r in tx.list_definitions_txn(kind)
            if classifier in r.source and "category" in r.source]
    if not rows:
        return []
    in_use = tx.orchestration_versions_in_progress_txn(
        {r.name for r in rows if r.kind == "orchestration"})
    out = []
    for row in rows:
        runs = in_use.get((row.name, row.version), 0) if row.kind == "orchestration" else 0
        if not (row.active or runs):
            continue
        parsed, _ = parse_text(row.source, row.file)
        if len(parsed) != 1:
            continue
        for u in unknown_categories(row.name, row.file, parsed[0].data,
                                    lambda _name: (version, labels),
                                    only_classifier=classifier):
            out.append(UnknownCategory(u.orchestration, u.file, u.rule, u.step, u.known,
                                       u.version, row.version, runs, u.kind))
    return out
