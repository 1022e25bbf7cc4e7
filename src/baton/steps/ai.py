"""``type: ai``: read unstructured text and answer with a structured result and its reasons.

Three tasks, each on a text (an ``=expression`` over the record, usually its subject and
body), each answer with a ``confidence``, a ``rationale`` and an ``ai`` audit block (provider,
model, prompt version, a hash of the input, latency) in the step's output, so the record's
timeline (the ``step_completed`` event) says what the AI decided and why:

* ``task: classify`` puts the text into one of the step's ``categories`` (each with a
  description and examples: the offline provider, ``baton.ai.offline``, is trained on them the
  first time a worker meets the step). Below ``min_confidence`` the ``outcome`` is ``review``
  rather than ``classified``, so the next steps route it to a person.
* ``task: extract`` finds the step's ``fields`` (typed: string, int, decimal, date, email,
  url, phone, choice; ``required``, ``choices``, ``pattern``, ``labels``) in the text
  (``baton.ai.extract``); a required field not found makes the ``outcome``
  ``missing_information`` instead of ``extracted``.
* ``task: match`` finds the record of an object type the text is about (``match: {object,
  fields, min_score, many}``), by fuzzy matching of the records' fields with the text
  (``baton.ai.match``), the message's new text first (its signature and quoted history only
  when that matched nothing). ``outcome``: ``matched``, ``ambiguous`` (two or more above the
  score when ``many`` is false) or ``no_match``.

The provider is the step's ``provider:``, else ``[ai] provider`` of ``baton.toml``, else the
offline one (``baton.ai.provider``). ``openai`` (any OpenAI-compatible endpoint) and
``anthropic`` ask a model over a ``kind: connection`` (the step's ``connection:`` and
``model:``, else ``[ai] connection`` and ``model``; ``baton.ai.llm``). Every task answered
or failed is an ``ai_call`` audit event on the record (with each HTTP call a model provider
made, as ``http_call`` events, secrets redacted).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from baton.ai.provider import FIELD_TYPES, PROVIDERS, Category, FieldSpec, Provider, Usage
from baton.definitions.checks import (
    Checker,
    Scope,
    check_keys,
    check_value,
    expect_list,
    expect_mapping,
    item,
    join,
    unknown,
)
from baton.definitions.model import StepDefinition
from baton.errors import BatonError, ExpressionError, NotFound, StepFailure
from baton.expressions import Missing, evaluate, is_expression
from baton.steps.base import JobStepType, StepOutput, StepWork

TASKS = ("classify", "extract", "match")
CATEGORY_KEYS = ("name", "description", "examples")
FIELD_KEYS = ("type", "required", "choices", "pattern", "labels", "description")
MATCH_KEYS = ("object", "fields", "min_score", "many")
log = logging.getLogger(__name__)
MAX_TEXT = 20_000  # characters of input a task reads (the start of a long message)
DEFAULT_MIN_SCORE = 85


class Ai(JobStepType):
    name = "ai"
    keys = ("task", "text", "categories", "min_confidence", "provider", "fields", "patterns",
            "match", "connection", "model", "classifier")
    job_kind = "ai"

    # ---- validation -------------------------------------------------------------------
    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        task = step.get("task")
        if "task" not in step:
            ck.add(join(path, "task"), f"required key 'task' is missing (one of: {', '.join(TASKS)})")
        elif task not in TASKS:
            ck.add(join(path, "task"), unknown("ai task", task, TASKS))
        if "text" not in step:
            ck.add(join(path, "text"), "required key 'text' is missing (what to read: an "
                                       "=expression such as '=record.subject + \" \" + record.body')")
        else:
            check_value(ck, join(path, "text"), step["text"], scope)
        if "provider" in step and step["provider"] not in PROVIDERS:
            ck.add(join(path, "provider"), unknown("ai provider", step["provider"], PROVIDERS))
        _check_model_options(ck, path, step, scope)
        if "min_confidence" in step:
            value = step["min_confidence"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                ck.add(join(path, "min_confidence"),
                       f"expected a number from 0 to 1, got {value!r}")
        wrong = {"classify": ("fields", "patterns", "match"),
                 "extract": ("categories", "match", "classifier"),
                 "match": ("categories", "fields", "patterns", "classifier")}.get(str(task), ())
        for key in wrong:
            if key in step:
                ck.add(join(path, key), f"'{key}' is not an option of task: {task}")
        if task == "classify" and "classifier" in step:
            _check_classifier(ck, path, step)
        elif task == "classify":
            _check_categories(ck, join(path, "categories"), step)
        elif task == "extract":
            patterns = _check_patterns(ck, join(path, "patterns"), step)
            _check_fields(ck, join(path, "fields"), step, patterns)
        elif task == "match":
            _check_match(ck, join(path, "match"), step, scope)

    def chainable(self, step: StepDefinition) -> bool:
        # the offline provider answers in milliseconds once trained; a match reads the store,
        # a model provider waits for the network (a step leaving it to [ai] provider is
        # taken for offline here: this does not see baton.toml)
        from baton.ai.provider import MODEL_PROVIDERS

        return step.options.get("task") != "match" \
            and step.options.get("provider") not in MODEL_PROVIDERS \
            and "connection" not in step.options \
            and "classifier" not in step.options  # (a worker's first use trains it: seconds)

    # ---- the attempt ------------------------------------------------------------------
    def run_job(self, work: StepWork) -> StepOutput:
        from baton.engine.decide import expression_scope  # (decide imports the step types)

        step = work.step
        assert work.orchestration is not None
        scope = expression_scope(dict(work.record or {}), work.run, work.now,
                                 work.orchestration)
        try:
            text = evaluate(step.options["text"], scope) if is_expression(
                step.options["text"]) else step.options["text"]
        except Missing:  # a value not there yet is null, as in a step's input: (no text)
            text = None
        except ExpressionError as exc:
            raise StepFailure(f"text: {exc.reason}", retryable=False) from exc
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise StepFailure(f"text gave {type(text).__name__}, not text", retryable=False)
        events: list[dict[str, Any]] = []
        where = {"step": step.name, "iteration": work.iteration, "attempt": work.attempt}
        try:
            out = answer(step, text, provider_name=work.ai_provider, records=work.records,
                         services=work.services, connection=work.ai_connection,
                         model=work.ai_model, classifiers=work.classifiers,
                         call_key=f"{work.run.id}:{step.name}:{work.iteration}", events=events)
        except StepFailure as exc:
            exc.audit = tuple({**e, **where} for e in events)
            raise
        return StepOutput(out, audit=tuple({**e, **where} for e in events))


AI_CALL_EVENT = "ai_call"
"""The audit event of one ``ai`` task answered (or failed): provider, model, prompt version,
input hash, output, confidence, rationale, latency, tokens and cost where reported."""


def answer(step: StepDefinition, text: str, *, provider_name: str | None = None,
           records: Any = None, services: Any = None, connection: str | None = None,
           model: str | None = None, call_key: str = "ai",
           events: list[dict[str, Any]] | None = None,
           classifiers: Any = None) -> dict[str, Any]:
    """Run the step's task on ``text``: the step's output (``baton ai test`` prints it).
    ``records`` reads the candidates of ``task: match`` (:class:`baton.ai.match.RecordScanner`);
    ``services`` are the connections a model provider calls (``connection`` and ``model``:
    the defaults of ``[ai]``, the step's own win). ``events`` receives the audit events: each
    HTTP call a provider made and one :data:`AI_CALL_EVENT` (also when the task fails).
    ``classifiers`` reads a trained classifier's training set by name (``classifier:``)."""
    from baton.ai.provider import ProviderContext, get_provider

    name = str(step.options.get("provider") or provider_name or "offline")
    trained = None
    if step.options.get("classifier"):
        name = "offline"  # (validation allows no other provider with a classifier)
        if classifiers is None:
            raise StepFailure("classifier: no trained classifiers can be read here",
                              retryable=False)
        try:
            trained = classifiers(str(step.options["classifier"]))
        except NotFound as exc:
            raise StepFailure(f"{exc} (train it: baton ai train "
                              f"{step.options['classifier']} --from FILE.csv)",
                              retryable=False) from None
    ctx = ProviderContext(services, str(step.options.get("connection") or connection or "")
                          or None, str(step.options.get("model") or model or "") or None,
                          call_key, trained)
    task = step.options["task"]
    audit: dict[str, Any] = {
        "provider": name if task != "match" else "match",
        "prompt_version": prompt_version(step),
        "input_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
        "input_chars": len(text)}
    if len(text) > MAX_TEXT:  # the task reads the start of a long text: the record says so
        audit["input_cut"] = True
        audit["read_chars"] = MAX_TEXT
    sink = events if events is not None else []
    provider: Provider | None = None
    started = time.perf_counter()
    try:
        provider = get_provider(name, ctx)
        if task == "classify":
            out, usage = classify_with(provider, step, text)
        elif task == "extract":
            out, usage = extract_with(provider, step, text)
        else:
            out, usage = match_with(step, text, records)
    except StepFailure as exc:
        sink.extend(getattr(provider, "calls", ()))
        sink.append({"type": AI_CALL_EVENT, **audit, "model": ctx.model or name,
                     "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                     "error": {"type": type(exc).__name__, "message": str(exc),
                               "retryable": exc.retryable,
                               # why an answer was no answer (InvalidAnswer, ModelStopped)
                               **{k: v for k, v in (exc.details or {}).items()
                                  if k in ("problems", "stop_reason", "said")}}})
        raise
    audit["model"] = usage.model
    audit["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    for key in ("input_tokens", "output_tokens", "cost"):
        if getattr(usage, key) is not None:
            audit[key] = getattr(usage, key)
    if usage.attempts != 1:
        audit["attempts"] = usage.attempts
    sink.extend(getattr(provider, "calls", ()))
    sink.append({"type": AI_CALL_EVENT, **audit, "outcome": out.get("outcome"),
                 "output": {k: out[k] for k in ("category", "fields", "missing", "record_id",
                                                  "record_ids") if k in out},
                 "confidence": out.get("confidence"), "rationale": out.get("rationale")})
    return {**out, "ai": audit}


def warm_classifiers(orchestrations: Iterable[Any], *, provider_name: str | None,
                     classifiers: Any, stopping: threading.Event | None = None) -> int:
    """Train now the offline models of the ``classify`` steps of ``orchestrations`` (their
    categories, and the latest version of a ``classifier:``), as their first attempts in
    this process would: a worker that starts serving does it in the background, so that
    its first such step does not wait seconds for the training (a step that comes while
    its model trains waits for that training, not another: ``ModelCache``). Steps answered
    by a model provider are left alone (nothing to train); a classifier not trained yet is
    skipped (its step says so when it runs). Returns how many steps' models are ready."""
    ready = 0
    steps = ((defn, step) for defn in orchestrations for stage in defn.stages
             for step in stage.steps_of(_AI_TYPES))
    for defn, step in steps:
        if stopping is not None and stopping.is_set():
            return ready
        opts = step.options
        if opts.get("task") != "classify":
            continue
        name = "offline" if opts.get("classifier") else \
            str(opts.get("provider") or provider_name or "offline")
        if name != "offline":
            continue
        try:
            answer(step, "warm", provider_name=name, classifiers=classifiers,
                   call_key="warm")  # (an empty text would ask no model: nothing trained)
        except StepFailure as exc:  # e.g. a classifier not trained yet
            log.info("ai step %s of %s not warmed: %s", step.name, defn.name, exc)
            continue
        except Exception:  # (its first real attempt reports it)
            log.warning("ai step %s of %s not warmed", step.name, defn.name,
                        exc_info=True)
            continue
        ready += 1
    return ready


_AI_TYPES = frozenset({"ai"})


def categories(step: StepDefinition) -> list[Category]:
    return [Category(str(c["name"]), str(c.get("description") or ""),
                     tuple(str(e) for e in c.get("examples", ())))
            for c in step.options.get("categories") or ()]


def field_specs(step: StepDefinition) -> list[FieldSpec]:
    out = []
    for name, spec in (step.options.get("fields") or {}).items():
        spec = spec or {}
        out.append(FieldSpec(str(name), str(spec.get("type", "string")),
                             bool(spec.get("required", False)),
                             tuple(str(c) for c in spec.get("choices", ())),
                             spec.get("pattern"), tuple(str(x) for x in spec.get("labels", ())),
                             str(spec.get("description", ""))))
    return out


def prompt_version(step: StepDefinition) -> str:
    """Which version of the task answered: a hash of the task, what configures it and the
    prompt templates of the model providers (from which the answer's schema is made: a change
    to a description, an example, a field or a template is a new version, in the audit)."""
    from baton.ai.llm import templates

    spec = {k: step.options[k] for k in ("task", "categories", "fields", "patterns", "match")
            if k in step.options}
    if step.options.get("task") != "match":  # the prompts a model provider is sent
        spec["templates"] = templates()
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()
                          ).hexdigest()[:12]


_SAYS_SOMETHING = re.compile(r"\w")
NOT_ASKED = "not asked (the text is empty)"
"""The ``ai.model`` of a task on an empty text: no provider was asked (a model provider's
call would cost and decide nothing)."""
NOTHING_KNOWN = ("no word of the text is in the classifier's training texts: this is the "
                 "category they favour, not a reading of the text")


def says_something(text: str) -> bool:
    """Whether ``text`` has a letter or a digit (a text of spaces and punctuation, or none,
    is an empty message: nothing to classify or extract)."""
    return _SAYS_SOMETHING.search(text) is not None


def classify_with(provider: Provider, step: StepDefinition, text: str
                  ) -> tuple[dict[str, Any], Usage]:
    """The classification of ``text``. An empty text (:func:`says_something`) is not
    classified: ``category`` null, ``confidence`` 0, ``outcome`` ``review`` (a person
    decides), whatever ``min_confidence`` says, and no provider is asked."""
    if not says_something(text):
        return {"category": None, "confidence": 0.0, "outcome": "review", "ranking": [],
                "rationale": ["the text is empty: nothing to classify (a person decides)"]
                }, Usage(NOT_ASKED)
    cats = categories(step)
    trained = getattr(provider, "trained", None)
    if trained is not None:  # its labels, besides (or instead of) the step's categories
        have = {c.name for c in cats}  # (labels: one per training text; each label once)
        cats += [Category(label) for label in dict.fromkeys(trained.labels)
                 if label not in have]
    got = provider.classify(text[:MAX_TEXT], cats)
    threshold = step.options.get("min_confidence")
    review = threshold is not None and got.confidence < float(threshold)
    return {
        "category": got.category,
        "confidence": got.confidence,
        "outcome": "review" if review else "classified",
        "ranking": [{"category": c, "confidence": p} for c, p in got.ranking],
        # (the offline classifier gives no reason when nothing of the text is known to it)
        "rationale": list(got.rationale) or [NOTHING_KNOWN],
    }, got.usage


def extract_with(provider: Provider, step: StepDefinition, text: str
                 ) -> tuple[dict[str, Any], Usage]:
    """The fields of ``text``; an empty text (:func:`says_something`) has none, and no
    provider is asked."""
    from baton.ai.provider import Extraction

    specs = field_specs(step)
    if says_something(text):
        got = provider.extract(text[:MAX_TEXT], specs, step.options.get("patterns") or {})
    else:
        got = Extraction({}, 0.0, Usage(NOT_ASKED))
    missing = [f.name for f in specs if f.required and f.name not in got.fields]
    threshold = step.options.get("min_confidence")
    outcome = "missing_information" if missing else "extracted"
    if not missing and threshold is not None and got.confidence < float(threshold):
        outcome = "review"
    rationale = []
    for f in specs:
        found = got.fields.get(f.name)
        if found is None:
            rationale.append(f"{f.name}: not found" + (" (required)" if f.required else ""))
        else:
            where = f" at {found.start}" if found.start >= 0 else ""
            rationale.append(f"{f.name}: {found.text!r}{where} ({found.how})")
    return {
        "fields": {f.name: got.fields[f.name].value if f.name in got.fields else None
                   for f in specs},
        "missing": missing,
        "outcome": outcome,
        "confidence": got.confidence,
        "rationale": rationale,
    }, got.usage


def match_with(step: StepDefinition, text: str, records: Any) -> tuple[dict[str, Any], Usage]:
    from baton.ai.match import RecordScanner, match
    from baton.intake.mail import split_reply

    spec = step.options["match"]
    if not isinstance(records, RecordScanner):
        raise StepFailure("match: no records to match against here", retryable=False)
    fields = [str(f) for f in spec["fields"]]
    try:
        candidates = records.scan(str(spec["object"]), fields)
    except BatonError as exc:
        raise StepFailure(str(exc), retryable=False) from exc
    text = text[:MAX_TEXT]
    new_text, _signature = split_reply(text)
    min_score = float(spec.get("min_score", DEFAULT_MIN_SCORE))
    found = match(new_text or text, candidates, fields, min_score=min_score,
                  fallback=text if new_text and new_text != text else "")
    many = bool(spec.get("many", False))
    best = found[0] if found else None
    if best is None:
        outcome = "no_match"
    elif many or len(found) == 1 or found[1].score < best.score:
        outcome = "matched"
    else:
        outcome = "ambiguous"  # two records as good as each other: a person decides
    listed = [{"record_id": c.record_id, "score": c.score, "matched_on": c.matched_on,
               "value": c.value, "evidence": c.evidence} for c in found[:20]]
    nothing = (f"nothing in the text scored {min_score:.0f} or more against "
               f"{len(candidates)} {spec['object']} records")
    rationale = [f"{c.matched_on} {c.value!r} ~ {c.evidence!r} ({c.score:.0f})"
                 for c in found[:5]] or [nothing]
    out: dict[str, Any] = {
        "record_id": best.record_id if best and outcome == "matched" else None,
        "score": best.score if best else 0.0,
        "matched_on": best.matched_on if best else None,
        "candidates": listed,
        "outcome": outcome,
        "confidence": round(best.score / 100, 4) if best else 0.0,
        "rationale": rationale,
    }
    if many:
        out["record_ids"] = [c.record_id for c in found]
    return out, Usage(f"rapidfuzz/{len(candidates)} candidates")


def _check_categories(ck: Checker, path: str, step: Mapping[str, Any], at_least: int = 2
                      ) -> None:
    if "categories" not in step:
        ck.add(path, "required key 'categories' is missing (a list of {name, description, "
                     "examples})")
        return
    cats = expect_list(ck, path, step["categories"])
    if cats is None:
        return
    seen: set[str] = set()
    for k, cat in enumerate(cats):
        cpath = item(path, k)
        m = expect_mapping(ck, cpath, cat)
        if m is None:
            continue
        check_keys(ck, cpath, m, CATEGORY_KEYS, ("name",))
        name = m.get("name")
        if isinstance(name, str):
            if name in seen:
                ck.add(join(cpath, "name"), f"duplicate category '{name}'")
            seen.add(name)
        elif "name" in m:
            ck.add(join(cpath, "name"), f"expected a category name, got {name!r}")
        if "description" in m and not isinstance(m["description"], str):
            ck.add(join(cpath, "description"), "expected text")
        examples = m.get("examples", [])
        if "examples" in m and expect_list(ck, join(cpath, "examples"), examples) is None:
            continue
        if not m.get("description") and not examples:
            ck.add(cpath, f"category '{name}' needs a description or examples to learn from")
        for e, example in enumerate(examples or []):
            if not isinstance(example, str) or not example.strip():
                ck.add(item(join(cpath, "examples"), e), "expected a non-empty example text")
    if len(seen) < at_least:
        ck.add(path, "classify needs at least two categories (or a trained classifier: "
                     "classifier: NAME)")


def _check_classifier(ck: Checker, path: str, step: Mapping[str, Any]) -> None:
    """``classifier: NAME``: a classifier trained with ``baton ai train NAME``; the step's
    ``categories``, if any, add their examples to its training set. (Whether it has been
    trained is known when the step runs: the database holds it, not the definitions.)"""
    from baton.definitions.checks import IDENTIFIER

    name = step["classifier"]
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        ck.add(join(path, "classifier"), f"expected the name of a trained classifier "
                                         f"(baton ai train NAME), got {name!r}")
    if step.get("provider") not in (None, "offline"):
        ck.add(join(path, "provider"), "a trained classifier is answered by the offline "
                                       f"provider, not {step['provider']!r}")
    if "categories" in step:
        _check_categories(ck, join(path, "categories"), step, at_least=1)


def _check_patterns(ck: Checker, path: str, step: Mapping[str, Any]) -> dict[str, str]:
    if "patterns" not in step:
        return {}
    m = expect_mapping(ck, path, step["patterns"])
    out: dict[str, str] = {}
    for name, regex in (m or {}).items():
        if not _regex_problem(ck, join(path, str(name)), regex):
            out[str(name)] = regex
    return out


def _regex_problem(ck: Checker, path: str, regex: Any) -> bool:
    if not isinstance(regex, str) or not regex:
        ck.add(path, f"expected a regular expression, got {regex!r}")
        return True
    try:
        re.compile(regex)
    except re.error as exc:
        ck.add(path, f"bad regular expression {regex!r}: {exc}")
        return True
    return False


def _check_fields(ck: Checker, path: str, step: Mapping[str, Any],
                  patterns: Mapping[str, str]) -> None:
    if "fields" not in step:
        ck.add(path, "required key 'fields' is missing (a mapping of field name to {type, "
                     "required, choices, pattern})")
        return
    fields = expect_mapping(ck, path, step["fields"])
    if fields is None:
        return
    if not fields:
        ck.add(path, "extract needs at least one field")
    for name, spec in fields.items():
        fpath = join(path, str(name))
        if spec is None:
            continue  # a string field found after its label
        m = expect_mapping(ck, fpath, spec)
        if m is None:
            continue
        check_keys(ck, fpath, m, FIELD_KEYS, ())
        ftype = m.get("type", "string")
        if ftype not in FIELD_TYPES:
            ck.add(join(fpath, "type"), unknown("field type", ftype, FIELD_TYPES))
        if "required" in m and not isinstance(m["required"], bool):
            ck.add(join(fpath, "required"), f"expected true or false, got {m['required']!r}")
        choices = m.get("choices")
        if ftype == "choice" and not choices:
            ck.add(fpath, f"a choice field needs 'choices' (the values '{name}' may take)")
        if choices is not None:
            got = expect_list(ck, join(fpath, "choices"), choices)
            for k, c in enumerate(got or []):
                if not isinstance(c, str) or not c.strip():
                    ck.add(item(join(fpath, "choices"), k), "expected a non-empty text")
        if "labels" in m:
            got = expect_list(ck, join(fpath, "labels"), m["labels"])
            for k, label in enumerate(got or []):
                if not isinstance(label, str) or not label.strip():
                    ck.add(item(join(fpath, "labels"), k), "expected a non-empty text")
        if "pattern" in m and m["pattern"] not in patterns:
            _regex_problem(ck, join(fpath, "pattern"), m["pattern"])


def _check_match(ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
    if "match" not in step:
        ck.add(path, "required key 'match' is missing ({object: Account, fields: [domain, "
                     "name], min_score: 85, many: false})")
        return
    m = expect_mapping(ck, path, step["match"])
    if m is None:
        return
    check_keys(ck, path, m, MATCH_KEYS, ("object", "fields"))
    obj = m.get("object")
    known = scope.objects.get(obj) if isinstance(obj, str) else None
    if "object" in m and scope.objects and known is None and not scope.unknown_objects:
        ck.add(join(path, "object"), unknown("object type", obj, sorted(scope.objects)))
    if "fields" in m:
        fields = expect_list(ck, join(path, "fields"), m["fields"])
        if fields is not None and not fields:
            ck.add(join(path, "fields"), "name at least one field to match on")
        for k, f in enumerate(fields or []):
            if not isinstance(f, str):
                ck.add(item(join(path, "fields"), k), f"expected a field name, got {f!r}")
            elif known is not None and f not in known:
                ck.add(item(join(path, "fields"), k),
                       f"{obj} has no field '{f}' (its fields: {', '.join(sorted(known))})")
    if "min_score" in m:
        v = m["min_score"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 100:
            ck.add(join(path, "min_score"), f"expected a score from 1 to 100, got {v!r}")
    if "many" in m and not isinstance(m["many"], bool):
        ck.add(join(path, "many"), f"expected true or false, got {m['many']!r}")


def _check_model_options(ck: Checker, path: str, step: Mapping[str, Any], scope: Scope
                         ) -> None:
    """``connection`` and ``model``: for the providers that call a model (``openai``,
    ``anthropic``); they may be left to ``[ai]`` of baton.toml."""
    from baton.ai.provider import MODEL_PROVIDERS

    provider = step.get("provider")
    for key in ("connection", "model"):
        if key not in step:
            continue
        value = step[key]
        if step.get("task") == "match":
            ck.add(join(path, key), f"'{key}' is not an option of task: match (it asks no "
                                    "model: it matches records)")
        elif provider is not None and provider not in MODEL_PROVIDERS:
            ck.add(join(path, key), f"'{key}' is for the providers that call a model "
                                    f"({', '.join(MODEL_PROVIDERS)}), not {provider!r}")
        elif not isinstance(value, str) or not value.strip() or is_expression(value):
            ck.add(join(path, key), f"expected a {key} name, got {value!r}")
        elif key == "connection" and scope.connections is not None:
            ctype = scope.connections.get(value)
            https = sorted(n for n, t in scope.connections.items() if t == "http")
            if ctype is None:
                ck.add(join(path, key), f"unknown connection '{value}'"
                       + (f" (http connections: {', '.join(https)})" if https
                          else " (no connection of type http is defined or deployed)"))
            elif ctype != "http":
                ck.add(join(path, key), f"connection '{value}' is of type {ctype}; a model "
                                        "provider calls a connection of type http")


AI = Ai()
