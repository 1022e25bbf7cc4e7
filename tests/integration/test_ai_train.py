"""Trained classifiers (issue 14 item 6): ``baton ai train NAME --from FILE.csv`` stores a new
version of classifier NAME in the database; an ``ai`` step with ``classifier: NAME`` is
answered by the offline provider trained on the latest version. In process on both
databases, and the commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from baton.ai.trained import read_csv, train
from baton.errors import BatonError, DefinitionError

ROWS = [
    ("I was charged twice for my card payment", "card_payment_wrong"),
    ("the card payment shows the wrong amount", "card_payment_wrong"),
    ("why was my card payment higher than the price", "card_payment_wrong"),
    ("my new card has not arrived yet", "card_arrival"),
    ("how long does it take for the card to arrive", "card_arrival"),
    ("still waiting for my card in the post", "card_arrival"),
    ("I forgot my passcode and cannot log in", "passcode_forgotten"),
    ("how do I reset my passcode", "passcode_forgotten"),
    ("locked out, need a new passcode", "passcode_forgotten"),
]

DEFS = """
kind: object
name: Message
fields:
  body: {type: text}
---
kind: orchestration
name: t_trained
trigger: {type: record, object: Message}
stages:
  - name: read
    steps:
      - name: intent
        type: ai
        task: classify
        classifier: banking
        text: '=record.body'
"""


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")
              ) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def classify(harness: Any, body: str) -> Any:
    rec = harness.engine.create_record("Message", {"body": body})
    harness.work()
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    return harness.engine.get_run(run.id).steps["intent"]


def test_a_step_uses_the_latest_trained_version(harness: Any, tmp_path: Path) -> None:
    harness.deploy_text(DEFS)
    sr = classify(harness, "where is my card")
    assert sr.status.value == "fallout"  # not trained yet: says how
    assert "classifier 'banking' not found" in sr.error["message"]
    assert "baton ai train banking --from FILE.csv" in sr.error["message"]

    texts, labels = read_csv(write_csv(tmp_path / "v1.csv", ROWS))
    row = train(harness.engine.store, "banking", texts, labels, source="v1.csv", actor="test",
                now="2026-01-01T00:00:00Z")
    assert (row["version"], row["examples"], row["labels"]) == (
        1, 9, ["card_arrival", "card_payment_wrong", "passcode_forgotten"])
    sr = classify(harness, "my card still has not arrived")
    assert sr.status.value == "completed", sr.error
    assert sr.output["category"] == "card_arrival"
    assert sr.output["ai"]["model"].endswith(" banking v1")
    assert {r["category"] for r in sr.output["ranking"]} == set(row["labels"])

    # a new version (a new label) is used at once by the same worker
    more = ROWS + [("I want to close my account", "terminate_account"),
                   ("please delete my account", "terminate_account"),
                   ("how do I close my account for good", "terminate_account")]
    texts, labels = read_csv(write_csv(tmp_path / "v2.csv", more))
    assert train(harness.engine.store, "banking", texts, labels, source="v2.csv",
                 actor="test", now="2026-01-02T00:00:00Z")["version"] == 2
    sr = classify(harness, "close my account please")
    assert sr.output["category"] == "terminate_account"
    assert sr.output["ai"]["model"].endswith(" banking v2")
    with harness.engine.store.read() as tx:
        listed = tx.list_classifiers_txn()
    assert [(r["name"], r["version"], r["source"]) for r in listed] == [
        ("banking", 2, "v2.csv"), ("banking", 1, "v1.csv")]
    assert "data" not in listed[0]


def test_old_versions_are_pruned_and_the_latest_still_answers(harness: Any, tmp_path: Path
                                                                ) -> None:
    harness.deploy_text(DEFS)
    texts, labels = read_csv(write_csv(tmp_path / "v.csv", ROWS))
    for day in (1, 2, 3):
        train(harness.engine.store, "banking", texts, labels, source=f"v{day}.csv",
              actor="test", now=f"2026-01-0{day}T00:00:00Z")
    train(harness.engine.store, "other", texts, labels, source="o.csv", actor="test",
          now="2026-01-04T00:00:00Z")
    with harness.engine.store.read() as tx:
        listed = tx.list_classifiers_txn()
    assert [(r["name"], r["version"]) for r in listed] == [
        ("banking", 3), ("banking", 2), ("banking", 1), ("other", 1)]
    assert all(r["bytes"] > 100 for r in listed), listed  # the gzip of 9 texts and labels
    with pytest.raises(ValueError, match="keep at least one version"), \
            harness.engine.store.write() as tx:
        tx.delete_classifier_versions_txn("banking", 0)
    with harness.engine.store.write() as tx:
        gone = tx.delete_classifier_versions_txn("banking", 1)
    assert [(r["version"], r["source"]) for r in gone] == [(2, "v2.csv"), (1, "v1.csv")]
    with harness.engine.store.write() as tx:
        assert tx.delete_classifier_versions_txn("banking", 1) == []  # nothing older left
    with harness.engine.store.read() as tx:
        assert [(r["name"], r["version"]) for r in tx.list_classifiers_txn()] == [
            ("banking", 3), ("other", 1)]  # another classifier's versions untouched
        assert tx.classifier_txn("banking", 1) is None
    sr = classify(harness, "my card still has not arrived")
    assert sr.status.value == "completed", sr.error
    assert sr.output["ai"]["model"].endswith(" banking v3")
    # the next training is v4, not a reused number
    assert train(harness.engine.store, "banking", texts, labels, source=None, actor="test",
                 now="2026-01-05T00:00:00Z")["version"] == 4


def test_bad_training_files_say_where(tmp_path: Path) -> None:
    with pytest.raises(BatonError, match=r"v\.csv:1: no column 'label' \(the header has: "
                                         r"text, intent; choose with --text / --label\)"):
        read_csv(write_csv(tmp_path / "v.csv", ROWS, ("text", "intent")))
    assert read_csv(write_csv(tmp_path / "v.csv", ROWS, ("text", "intent")),
                    label_column="intent")[1][0] == "card_payment_wrong"
    with pytest.raises(BatonError, match=r"e\.csv:3: empty 'label'"):
        read_csv(write_csv(tmp_path / "e.csv", [ROWS[0], ("no label", "")]))
    with pytest.raises(BatonError, match="at least two labels, got 1 in 2 rows"):
        read_csv(write_csv(tmp_path / "o.csv", ROWS[:2]))
    with pytest.raises(BatonError, match="cannot read it"):
        read_csv(tmp_path / "missing.csv")


@pytest.mark.parametrize(("old", "new", "message"), [
    ("classifier: banking", "classifier: 'bank ing'",
     "expected the name of a trained classifier (baton ai train NAME), got 'bank ing'"),
    ("classifier: banking", "classifier: banking\n        provider: openai",
     "a trained classifier is answered by the offline provider, not 'openai'"),
    ("task: classify", "task: extract\n        fields: {a: {}}",
     "'classifier' is not an option of task: extract"),
])
def test_bad_classifier_steps_are_located(harness: Any, old: str, new: str, message: str
                                          ) -> None:
    with pytest.raises(DefinitionError) as exc:
        harness.deploy_text(DEFS.replace(old, new))
    assert message in str(exc.value) and "steps[0]" in str(exc.value), str(exc.value)


def test_the_train_command(tmp_path: Path) -> None:
    """The commands in this process (typer's runner: a ``baton`` process each would load
    scikit-learn again, 10 s a time on a loaded machine)."""
    from typer.testing import CliRunner

    from baton.cli.main import app, state

    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "definitions" / "t.yaml").write_text(DEFS)
    runner = CliRunner()

    def run(*args: str | Path) -> Any:
        got = runner.invoke(app, ["--project", str(proj), "--db",
                                  f"sqlite:///{tmp_path / 'baton.db'}", *map(str, args)])
        return got

    try:
        _train_commands(run, tmp_path)
    finally:  # the CLI's state (its Engine, settings) is this process's: leave none behind
        if state._engine is not None:
            state._engine.close()
        state._project = state._settings = state._engine = None


def _train_commands(run: Any, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "labelled.csv", ROWS)
    shown = run("ai", "train", "banking", "--from", source)
    assert shown.exit_code == 0, shown.output
    assert "classifier banking v1: 9 texts, 3 labels, trained in" in shown.output
    got = run("ai", "train", "banking", "--from", source, "--json")
    assert json.loads(got.output)["version"] == 2, got.output
    assert json.loads(got.output)["source"] == "labelled.csv"
    listed = run("ai", "classifiers", "--json")
    assert [r["version"] for r in json.loads(listed.output)] == [2, 1]
    out = run("ai", "test", "intent", "--text", "forgot my passcode", "--json")
    answer = json.loads(out.output)
    assert answer["category"] == "passcode_forgotten"
    assert answer["ai"]["model"].endswith("banking v2")
    bad = run("ai", "train", "banking", "--from", tmp_path / "nope.csv")
    assert bad.exit_code == 1 and "nope.csv: cannot read it" in bad.output
    run("ai", "train", "banking", "--from", source)  # v3
    listed = run("ai", "classifiers")
    assert listed.exit_code == 0 and "stored" in listed.output and " B " in listed.output, \
        listed.output
    pruned = run("ai", "prune", "banking", "--keep", "2")
    assert pruned.exit_code == 0, pruned.output
    assert "classifier banking: deleted v1 (" in pruned.output
    assert "the newest 2 kept" in pruned.output
    assert [r["version"] for r in json.loads(run("ai", "classifiers", "--json").output)] == [3, 2]
    again = run("ai", "prune", "banking", "--keep", "2", "--json")
    assert again.exit_code == 0 and json.loads(again.output) == []
    assert "nothing to delete" in run("ai", "prune", "banking", "--keep", "5").output
    none = run("ai", "prune", "nosuch", "--keep", "1")
    assert none.exit_code == 1 and "no classifier 'nosuch'" in none.output
    zero = run("ai", "prune", "banking", "--keep", "0")
    assert zero.exit_code == 2 and "--keep" in zero.output
    assert [r["version"] for r in json.loads(run("ai", "classifiers", "--json").output)] == [3, 2]


ONE_WORD_STEP = """
kind: object
name: Note
fields:
  body: {type: text}
---
kind: orchestration
name: t_one_word
trigger: {type: record, object: Note}
stages:
  - name: read
    steps:
      - name: intent
        type: ai
        task: classify
        text: '=record.body'
        categories:
          - {name: billing, examples: [invoice, refund]}
          - {name: cancellation, examples: [cancel, terminate]}
"""


def test_a_step_whose_examples_are_single_words_answers(harness: Any) -> None:
    harness.deploy_text(ONE_WORD_STEP)
    rec = harness.engine.create_record("Note", {"body": "please send the invoice again"})
    harness.work()
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    sr = harness.engine.get_run(run.id).steps["intent"]
    assert sr.status.value == "completed", sr.error
    assert sr.output["category"] == "billing" and "invoice" in sr.output["rationale"]


def test_training_files_that_are_not_utf8_text_or_say_nothing(tmp_path: Path) -> None:
    """``baton ai train`` on a Latin-1 or binary file, or on texts without a letter: one
    line naming the file (and line), exit 1, nothing stored; one-word texts train."""
    from typer.testing import CliRunner

    from baton.cli.main import app, state

    runner = CliRunner()

    def run(*args: str | Path, stdin: bytes | None = None) -> Any:
        return runner.invoke(app, ["--project", str(tmp_path), "--db",
                                   f"sqlite:///{tmp_path / 'baton.db'}", *map(str, args)],
                             input=stdin)

    files = {
        "latin1.csv": "text,label\nRückerstattung,billing\nkündigen,cancel\n".encode("latin-1"),
        "late.csv": ("text,label\n" + "hello there,a\nbye now,b\n" * 1000).encode()
        + "R\xfcck,a\n".encode("latin-1"),
        "binary.csv": bytes(range(256)) * 4,
        "nul.csv": b"text,label\nab\x00c,x\nd,y\n",
        "emoji.csv": "text,label\n😀,a\n!!,b\n".encode(),
        "oneword.csv": b"text,label\ninvoice,billing\nrefund,billing\ncancel,cancellation\n"
                       b"terminate,cancellation\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    expected = {
        "latin1.csv": "latin1.csv:2: not UTF-8 text (byte 0xfc at column 2; save the file as "
                      "UTF-8 CSV)",
        "late.csv": "late.csv:2002: not UTF-8 text (byte 0xfc at column 2;",
        "binary.csv": "binary.csv:1: not text (a NUL byte at column 1; a binary file?)",
        "nul.csv": "nul.csv:2: not text (a NUL byte at column 3; a binary file?)",
        "emoji.csv": "emoji.csv: nothing to learn from: none of the 2 texts has a letter or "
                     "a digit",
    }
    try:
        for name, message in expected.items():
            got = run("ai", "train", "bad", "--from", tmp_path / name)
            assert got.exit_code == 1 and message in got.output, got.output
            assert isinstance(got.exception, SystemExit), got.exception  # not a traceback
            assert len(got.output.strip().splitlines()) == 1, got.output
        assert json.loads(run("ai", "classifiers", "--json").output) == []
        ok = run("ai", "train", "ow", "--from", tmp_path / "oneword.csv")
        assert ok.exit_code == 0 and "classifier ow v1: 4 texts, 2 labels" in ok.output, \
            ok.output
    finally:
        if state._engine is not None:
            state._engine.close()
        state._project = state._settings = state._engine = None


def test_ai_test_reads_a_text_that_is_not_utf8(tmp_path: Path) -> None:
    """``baton ai test --text-file``: a byte that is not UTF-8 reads as U+FFFD, from a file
    and from the standard input alike (the text is tried, not stored)."""
    from typer.testing import CliRunner

    from baton.cli.main import app, state

    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "t.yaml").write_text(ONE_WORD_STEP)
    (tmp_path / "note.txt").write_bytes("the invoice for the R\xfcckerstattung".encode("latin-1"))
    runner = CliRunner()
    base = ["--project", str(tmp_path), "--db", f"sqlite:///{tmp_path / 'baton.db'}",
            "ai", "test", "intent", "--json", "--text-file"]
    try:
        for where, stdin in ((str(tmp_path / "note.txt"), None),
                             ("-", (tmp_path / "note.txt").read_bytes())):
            got = runner.invoke(app, [*base, where], input=stdin)
            assert got.exit_code == 0, got.output
            assert json.loads(got.output)["category"] == "billing"
    finally:
        if state._engine is not None:
            state._engine.close()
        state._project = state._settings = state._engine = None
