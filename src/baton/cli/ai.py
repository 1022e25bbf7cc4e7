"""``baton ai test STEP --text "..."``: run one ``ai`` step's task on a text and show the answer
with its rationale, for designers tuning categories, fields and match settings.

The step is read from the project's definition files (what is being edited; ``--definitions``
names other files), or with ``--deployed`` from the active deployed version. A ``match``
step reads its candidates from the project's database, as a worker would. The heavy parts
(scikit-learn, rapidfuzz) load when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from baton.cli.output import console, err_console, print_json, table

ai_app = typer.Typer(no_args_is_help=True,
                     help="AI steps: try a step's task (classify, extract, match) on a text; "
                          "train a classifier from labelled texts, list and prune its versions.")


@ai_app.command("test")
def ai_test(
    step: Annotated[str, typer.Argument(help="The ai step's name")],
    text: Annotated[str | None, typer.Option("--text", "-t", help="The text to read")] = None,
    text_file: Annotated[Path | None, typer.Option(
        "--text-file", help="Read the text from this file ('-': standard input)")] = None,
    orchestration: Annotated[str | None, typer.Option(
        "--orchestration", "-o", help="The orchestration the step is in (when several have "
                                      "a step of that name)")] = None,
    definitions: Annotated[Path | None, typer.Option(
        "--definitions", help="Definition file or folder (default: the project's "
                              "definitions/)")] = None,
    deployed: Annotated[bool, typer.Option(
        "--deployed", help="Use the active deployed version instead of the files")] = False,
    provider: Annotated[str | None, typer.Option(
        "--provider", help="Answer with this provider (default: the step's, else baton.toml's)"
    )] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the step's output as JSON.")
                       ] = False,
) -> None:
    """Run STEP's task on a text and print the answer with its rationale."""
    import dataclasses

    from baton.cli.context import state
    from baton.errors import BatonError
    from baton.steps.ai import answer

    if (text is None) == (text_file is None):
        _fail("give the text with --text or --text-file (one of them)")
    if text_file is not None:
        # a byte that is not UTF-8 reads as U+FFFD, from a file or the standard input alike:
        # the text is only tried, not stored
        if str(text_file) == "-":
            stdin = getattr(sys.stdin, "buffer", None)
            text = stdin.read().decode("utf-8", errors="replace") if stdin is not None \
                else sys.stdin.read()
        elif not text_file.is_file():
            _fail(f"{text_file}: no such file")
        else:
            try:
                text = text_file.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                _fail(f"{text_file}: cannot read it: {exc.strerror}")
    assert text is not None
    eng = state.engine(flows=True)
    found = _find_step(eng, step, orchestration, definitions, deployed, state)
    definition = found
    if provider is not None:
        definition = dataclasses.replace(found, options={**found.options, "provider": provider})
    from baton.ai.trained import TrainedSets
    from baton.runtime.reader import StoreRecords

    settings = state.settings()
    try:
        out = answer(definition, text, provider_name=settings.ai_provider,
                     records=StoreRecords(eng.store, eng.definitions),
                     services=eng.connections, connection=settings.ai_connection,
                     model=settings.ai_model, classifiers=TrainedSets(eng.store.read))
    except BatonError as exc:
        # what a model provider said of its error is not in the message (a worker logs
        # that): here, on the designer's own terminal, it is shown
        said = ((getattr(exc, "details", None) or {}).get("provider_error") or {}
                ).get("message")
        _fail(str(exc) + (f"\nthe provider said: {said}" if said else ""))
    if as_json:
        print_json(out)
        return
    _show(definition.options["task"], out)


@ai_app.command("train")
def ai_train(
    name: Annotated[str, typer.Argument(help="The classifier's name (an ai step's "
                                              "classifier: NAME)")],
    source: Annotated[Path, typer.Option(
        "--from", help="CSV file with a header: a text and a label per row")],
    text_column: Annotated[str, typer.Option("--text", help="The column of the texts")
                           ] = "text",
    label_column: Annotated[str, typer.Option("--label", help="The column of the labels")
                            ] = "label",
    strict: Annotated[bool, typer.Option(
        "--strict", help="Store nothing when the new version lacks a category that a rule "
                         "of a deployed orchestration or an active fulfillment's step templates names "
                         "(default: store it and warn)")
                      ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored version as JSON")
                       ] = False,
) -> None:
    """Train the offline classifier NAME on labelled texts and store it as its next version.

    The deployed orchestrations (and active fulfillments' step templates) whose ai steps
    use NAME are checked: a rule naming a
    category the new version lacks (`steps.intent.output.category == "card_arrival"`)
    could never hold, and each is named in a warning (with --strict: the version is not
    stored)."""
    from baton.ai.offline import NothingToLearn
    from baton.ai.rules import LabelsInUse
    from baton.ai.trained import read_csv, train, training_warnings
    from baton.cli.context import state
    from baton.clock import iso
    from baton.errors import BatonError

    try:
        _check_text(source)
        texts, labels = read_csv(source, text_column, label_column)
        eng = state.engine()
        row = train(eng.store, name, texts, labels, source=source.name, actor="cli",
                    now=iso(eng.clock.now()), strict=strict)
    except NothingToLearn as exc:
        _fail(f"{source}: {exc}")
    except LabelsInUse as exc:
        from baton.cli.output import print_error

        print_error(str(exc), kind="conflict",
                    unknown_categories=[u.to_json() for u in exc.unknown])
        raise typer.Exit(1) from None
    except BatonError as exc:
        _fail(str(exc))
    unknown = row.pop("unknown_categories")
    warnings = training_warnings(texts, labels)
    if as_json:
        print_json({**row, "warnings": warnings + [_unknown_warning(row, u) for u in unknown],
                    "unknown_categories": [u.to_json() for u in unknown]})
        return
    for warning in warnings:
        err_console.print(f"warning: {source.name}: {warning}", highlight=False)
    for u in unknown:
        err_console.print(f"warning: {_unknown_warning(row, u)}", highlight=False,
                          markup=False)
    console.print(f"classifier {row['name']} v{row['version']}: {row['examples']:,} texts, "
                  f"{len(row['labels'])} labels, trained in {row['seconds']:.1f} s"
                  f"{' with the sentence encoder ' + row['encoder'] if row['encoder'] else ''}"
                  f"{_reused(row)}"
                  f"{', its sentence vectors stored with it' if row.get('vectors') else ''} "
                  f"(ai steps with classifier: {row['name']} use it now)", highlight=False)


@ai_app.command("classifiers")
def ai_classifiers(
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON")] = False,
) -> None:
    """The trained classifiers, every version, newest first."""
    from baton.cli.context import state

    eng = state.engine()
    with eng.store.read() as tx:
        rows = tx.list_classifiers_txn()
    if as_json:
        print_json(rows)
        return
    table("Classifiers", ["name", "version", "texts", "labels", "stored", "from", "trained at"],
          [[r["name"], str(r["version"]), f"{r['examples']:,}", str(len(r["labels"])),
            _size(r["bytes"]), r["source"] or "", r["created_at"]] for r in rows])


@ai_app.command("prune")
def ai_prune(
    name: Annotated[str, typer.Argument(help="The classifier whose old versions go")],
    keep: Annotated[int, typer.Option(
        "--keep", min=1, help="How many of its newest versions to keep (at least 1: ai steps "
                              "use the latest)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the deleted versions as JSON")
                       ] = False,
) -> None:
    """Delete the versions of classifier NAME older than its newest KEEP. Each version stores
    its training texts (and their sentence vectors: megabytes for thousands of texts); ai
    steps only ever use the latest, so older ones are kept only to train from again."""
    from baton.cli.context import state

    eng = state.engine()
    with eng.store.write() as tx:
        if not tx.list_classifiers_txn(name):
            _fail(f"no classifier {name!r} (baton ai classifiers lists them)")
        gone = tx.delete_classifier_versions_txn(name, keep)
    if as_json:
        print_json(gone)
        return
    if not gone:
        console.print(f"classifier {name}: nothing to delete (it has {keep} version"
                      f"{'s' if keep != 1 else ''} or fewer)", highlight=False)
        return
    versions = ", ".join(f"v{r['version']}" for r in reversed(gone))
    console.print(f"classifier {name}: deleted {versions} "
                  f"({_size(sum(r['bytes'] or 0 for r in gone))}); "
                  f"the newest {keep} kept", highlight=False)


def _unknown_warning(row: dict[str, Any], u: Any) -> str:
    """A deployed rule naming a category the stored version lacks
    (:class:`baton.ai.rules.UnknownCategory`)."""
    return (f"{u.where()}: names category '{u.rule.category}' of ai step '{u.step.name}', "
            f"which classifier {row['name']} v{row['version']} does not have: "
            f"{u.rule.never()} (train it with that label, or change the rule)")


def _size(n: int | None) -> str:
    n = n or 0
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def _reused(row: dict[str, Any]) -> str:
    got = row.get("reused")
    if not got:
        return ""
    return (f" ({got['texts']:,} of {row['examples']:,} texts' vectors taken from "
            f"v{got['version']}, not encoded again)")


def _check_text(path: Path) -> None:
    """Refuse a file that is not UTF-8 text (a spreadsheet saved as Latin-1, a binary file)
    naming the line of its first bad byte: the CSV reader decodes in blocks, so the line it
    was at is not that line, and it lets a NUL byte through. A file that cannot be read is
    left to the reader, which says so."""
    from baton.errors import BatonError

    try:
        data = path.read_bytes()
    except OSError:
        return
    nul = data.find(b"\x00")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if nul < 0 or exc.start < nul:
            line, column = _line_column(data, exc.start)
            raise BatonError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} "
                             f"at column {column}; save the file as UTF-8 CSV)") from None
    if nul >= 0:
        line, column = _line_column(data, nul)
        raise BatonError(f"{path}:{line}: not text (a NUL byte at column {column}; a "
                         "binary file?)")


def _line_column(data: bytes, at: int) -> tuple[int, int]:
    """The line and column (1-based, in bytes) of byte ``at``."""
    start = data.rfind(b"\n", 0, at) + 1
    return data.count(b"\n", 0, at) + 1, at - start + 1


def _fail(message: str) -> Any:
    from baton.cli.output import print_error

    print_error(message)
    raise typer.Exit(1)


def _find_step(eng: Any, name: str, orchestration: str | None, path: Path | None,
               deployed: bool, state: Any) -> Any:
    from baton.definitions.loader import check_definitions
    from baton.definitions.model import OrchestrationDefinition
    from baton.flows import registered_flows

    orchestrations: list[OrchestrationDefinition] = []
    if deployed:
        for row in eng.definitions.list_versions("orchestration"):
            if row.active:
                orchestrations.append(eng.definitions.orchestration(row.name)[0])
    else:
        folder = path or state.project().definitions_dir
        if not folder.exists():
            _fail(f"{folder}: no such file or folder (or use --deployed)")
        loaded, issues = check_definitions([folder], known_flows=registered_flows(),
                                           deployed_objects=eng.definitions.object_types())
        if issues:
            for issue in issues:
                err_console.print(str(issue), markup=False, highlight=False)
            _fail(f"{len(issues)} problem(s) in the definitions")
        orchestrations = [d.definition for d in loaded
                          if isinstance(d.definition, OrchestrationDefinition)]
    matches = []
    ai_steps = []
    for o in orchestrations:
        for stage in o.stages:
            for s in stage.steps:
                if s.type == "ai":
                    ai_steps.append(f"{o.name}/{s.name}")
                    if s.name == name and orchestration in (None, o.name):
                        matches.append((o.name, s))
    if not matches:
        where = f" in {orchestration}" if orchestration else ""
        _fail(f"no ai step {name!r}{where}; ai steps: {', '.join(ai_steps) or 'none'}")
    if len(matches) > 1:
        _fail(f"{len(matches)} orchestrations have an ai step {name!r} "
              f"({', '.join(o for o, _ in matches)}): name one with --orchestration")
    return matches[0][1]


def _show(task: str, out: dict[str, Any]) -> None:
    console.print(f"[bold]outcome[/bold]: {out['outcome']}   "
                  f"[bold]confidence[/bold]: {out['confidence']:.2f}", highlight=False)
    if task == "classify":
        console.print(f"[bold]category[/bold]: {out['category']}", highlight=False)
        table("Ranking", ["category", "confidence"],
              [[r["category"], f"{r['confidence']:.3f}"] for r in out["ranking"]])
    elif task == "extract":
        table("Fields", ["field", "value"],
              [[k, "" if v is None else str(v)] for k, v in out["fields"].items()])
        if out["missing"]:
            console.print(f"[bold]missing[/bold]: {', '.join(out['missing'])}", highlight=False)
    else:
        console.print(f"[bold]record[/bold]: {out['record_id'] or '-'}", highlight=False)
        table("Candidates", ["record", "score", "field", "value", "found in the text"],
              [[c["record_id"], f"{c['score']:.0f}", c["matched_on"], c["value"],
                c["evidence"]] for c in out["candidates"]])
    console.print("[bold]rationale[/bold]:", highlight=False)
    for line in out["rationale"]:
        console.print(f"  - {line}", markup=False, highlight=False)
    ai = out["ai"]
    console.print(f"[dim]{ai['provider']} · {ai['model']} · prompt {ai['prompt_version']} · "
                  f"{ai['latency_ms']} ms[/dim]", highlight=False)
