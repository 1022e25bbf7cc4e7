"""The sentence encoder the offline classifier consults (``baton.ai.encoder``): the real
all-MiniLM-L6-v2 weights from ``baton[encoder]``, run on the CPU. Without the extra these
tests skip, except under ``CI=true`` (``scripts/test`` installs it) where they fail."""

from __future__ import annotations

import csv
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from baton.ai import encoder as enc
from baton.ai.offline import FEW, MODELS, OfflineClassifier
from baton.ai.provider import OfflineProvider
from baton.ai.trained import TrainingSet
from baton.errors import BatonError

BANKING77 = Path(__file__).resolve().parents[3] / "shared" / "data" / "banking77" / "train.csv"


@pytest.fixture(scope="module")
def encoder() -> enc.Encoder:
    try:
        got = enc.load("auto")
    except BatonError as exc:  # installed but not usable: always a failure
        pytest.fail(str(exc))
    if got is None:
        if os.environ.get("CI") == "true":
            pytest.fail("baton[encoder] is not installed (scripts/test installs it)")
        pytest.skip("baton[encoder] is not installed")
    return got


@pytest.fixture(scope="module", autouse=True)
def encoded_once() -> Iterator[None]:
    """The same texts, in the same order, are encoded by the model once in this module:
    a call with a list it was given before answers with what it answered then (which is
    what encoding them again gives: the model is deterministic for the same batches).
    Several tests train on the same 2,400 texts; this spares re-encoding them each time
    (the counting below still sees every call the code makes)."""
    real = enc.Encoder.encode
    answers: dict[tuple[str, ...], Any] = {}

    def once(self: enc.Encoder, texts: Any) -> Any:
        key = (self.identity, *texts)
        if key not in answers:
            answers[key] = real(self, texts)
        return answers[key].copy()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(enc.Encoder, "encode", once)
        yield


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many texts each call of the encoder was given, in order (it still encodes)."""
    calls: list[int] = []
    real = enc.Encoder.encode

    def counting(self: enc.Encoder, texts: Any) -> Any:
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(enc.Encoder, "encode", counting)
    return calls


def test_paraphrases_are_closer_than_other_intents(encoder: enc.Encoder) -> None:
    v = encoder.encode(["my card hasn't come yet",
                        "the card you sent me was never delivered",
                        "I want my money back for this purchase",
                        ""])
    assert v.shape == (4, 384) and encoder.name == "all-MiniLM-L6-v2"
    assert abs(float((v[0] ** 2).sum()) - 1) < 1e-4  # unit vectors
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2
    assert encoder.encode([]).shape == (0, 384)


def banking77(n: int) -> list[tuple[str, str]]:
    with BANKING77.open(newline="", encoding="utf-8") as f:
        rows = [(r["text"].strip(), r["category"]) for r in csv.DictReader(f)]  # as read_csv
    random.Random(7).shuffle(rows)
    return rows[:n]


@pytest.fixture(scope="module")
def split() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """FEW + 400 texts to train on (the many-texts model: the real threshold, not a lower
    one, because the probe "my card still hasn't arrived" is card_arrival with 2,000 texts
    on, 0.64 against 0.21 at 2,400, while from 1,200 to 1,800 it goes either way) and 500
    to test."""
    rows = banking77(FEW + 900)
    return rows[:FEW + 400], rows[FEW + 400:]


@dataclass(frozen=True)
class Stored:
    """``b77`` v1, trained on the :func:`split`'s texts by ``baton ai train``'s
    :func:`~baton.ai.trained.train` into a SQLite file (a test opens a copy of its own)."""

    db: Path
    row: dict[str, Any]  # what train() returned
    encoded: list[int]  # how many texts each call of the encoder was given meanwhile
    model: OfflineClassifier  # the model it trained (from encoding its texts), kept here


@pytest.fixture(scope="module")
def stored(encoded_once: None, encoder: enc.Encoder, split: Any,
           tmp_path_factory: pytest.TempPathFactory) -> Stored:
    """Trained once in this module: two tests start from this version (a training of the
    2,400 texts with the encoder's model is seconds of CPU). The model is the one train()
    trained (a spy on OfflineClassifier.train keeps what it returns); only read."""
    from baton.ai.trained import train
    from baton.runtime.engine import Engine

    rows, _ = split
    db = tmp_path_factory.mktemp("b77") / "baton.db"
    calls: list[int] = []
    models: list[OfflineClassifier] = []
    real_encode, real_train = enc.Encoder.encode, OfflineClassifier.train

    def counting(self: enc.Encoder, texts: Any) -> Any:
        calls.append(len(texts))
        return real_encode(self, texts)

    def kept(cls: type[OfflineClassifier], *args: Any, **kwargs: Any) -> OfflineClassifier:
        models.append(real_train(*args, **kwargs))  # (cls: OfflineClassifier)
        return models[-1]

    engine = Engine(f"sqlite:///{db}")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(enc.Encoder, "encode", counting)
            patch.setattr(OfflineClassifier, "train", classmethod(kept))
            row = train(engine.store, "b77", [t for t, _ in rows], [c for _, c in rows],
                        source="v1.csv", actor="test", now="2026-12-04T00:00:00.000Z")
    finally:
        engine.close()  # (its WAL checkpointed into the file: a copy is the whole database)
    (model,) = models
    return Stored(db, row, calls, model)


def copy_of(got: Stored, tmp_path: Path) -> str:
    """A database of the test's own with ``b77`` v1 in it."""
    shutil.copyfile(got.db, tmp_path / "baton.db")
    return f"sqlite:///{tmp_path / 'baton.db'}"


def test_with_many_texts_the_encoder_decides_the_close_calls(
        encoder: enc.Encoder, split: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    train, test = split
    texts, labels = [t for t, _ in train], [c for _, c in train]
    with_it = MODELS.get(texts, labels)  # the provider's cache: the next test asks it again
    assert with_it.encoder_name == "all-MiniLM-L6-v2"
    monkeypatch.setattr(enc, "_CHOICE", ["off"])
    without = OfflineClassifier.train(texts, labels)
    assert without.encoder_name is None
    got = with_it.classify([t for t, _ in test])
    alone = without.classify([t for t, _ in test], explain=False)
    assert 0 < with_it.consulted < len(test)  # the close calls only
    right = sum(a.category == c for a, (_, c) in zip(got, test, strict=True))
    right_alone = sum(a.category == c for a, (_, c) in zip(alone, test, strict=True))
    assert right > right_alone, (right, right_alone)  # deterministic: same data, same model
    flipped = [a for a, b in zip(got, alone, strict=True) if a.category != b.category]
    assert flipped, "the encoder changed no answer"
    assert any(a.rationale and a.rationale[0].startswith("meaning close to its examples")
               for a in flipped)
    assert all(len(a.rationale) <= 5 for a in got)


def test_the_offline_provider_names_the_encoder_in_its_audit(
        encoder: enc.Encoder, split: Any) -> None:
    train, _ = split
    trained = TrainingSet("b77", 3, tuple(t for t, _ in train), tuple(c for _, c in train))
    got = OfflineProvider(trained).classify("my card still hasn't arrived", [])  # cached
    assert got.category == "card_arrival"
    assert got.usage.model.startswith("baton-offline-tfidf-linear/4+all-MiniLM-L6-v2 b77 v3")


def test_off_or_not_installed_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert enc.load("off") is None and enc.load(" OFF ") is None
    monkeypatch.setattr(enc, "PACKAGE", "no_such_encoder_package")
    assert enc.load("auto") is None and enc.load("") is None


def test_a_directory_that_is_not_a_model_says_what_is_missing(tmp_path: Path,
                                                              encoder: enc.Encoder) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BatonError, match=r"is not a sentence-transformers model: no "
                                         r"model\.safetensors, tokenizer\.json"):
        enc.load(str(tmp_path))
    with pytest.raises(BatonError, match=r"BATON_AI_ENCODER=.*/nowhere: .* is not a directory"):
        enc.load(str(tmp_path / "nowhere"))


def test_weights_that_are_not_the_published_ones_are_refused(
        encoder: enc.Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enc, "_weights_sha256", lambda path: "0" * 64)
    with pytest.raises(BatonError, match=r"model\.safetensors: SHA-256 0000000000000000… is not "
                                         r"the published all-MiniLM-L6-v2 \(53aa51172d142c89…\)"):
        enc.load("auto")


def test_a_model_directory_of_ones_own_is_named_by_its_folder_and_weights(
        encoder: enc.Encoder, tmp_path: Path) -> None:
    own = tmp_path / "my-encoder"
    own.mkdir()
    for f in encoder.path.iterdir():
        if f.is_file():
            (own / f.name).symlink_to(f)
    loaded = enc.load(str(own))
    assert loaded is not None and loaded.name == "all-MiniLM-L6-v2"  # the same weights


def test_the_train_command_says_it_trained_with_the_encoder(
        encoder: enc.Encoder, split: Any, tmp_path: Path) -> None:
    """``baton ai train`` on the :func:`split`'s texts, then ``baton ai test`` of a step that
    uses it (trained from the vectors the first stored, with the classifier's labels as
    categories)."""
    import json

    from typer.testing import CliRunner

    from baton.cli.main import app, state
    from tests.integration.test_ai_train import DEFS, write_csv

    train, _ = split
    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "definitions" / "t.yaml").write_text(DEFS)
    runner = CliRunner()

    def run(*args: str | Path) -> Any:
        return runner.invoke(app, ["--project", str(proj), "--db",
                                   f"sqlite:///{tmp_path / 'baton.db'}", *map(str, args)])

    try:
        shown = run("ai", "train", "banking", "--from", write_csv(tmp_path / "b.csv", train))
        assert shown.exit_code == 0, shown.output
        assert (f"classifier banking v1: {len(train):,} texts, 77 labels, trained in"
                in shown.output)
        assert ("s with the sentence encoder all-MiniLM-L6-v2, its sentence vectors stored with "
                "it (ai steps") in shown.output
        out = run("ai", "test", "intent", "--text", "my card still hasn't arrived", "--json")
        answer = json.loads(out.output)
        assert answer["category"] == "card_arrival"
        assert answer["ai"]["model"] == ("baton-offline-tfidf-linear/4+all-MiniLM-L6-v2 "
                                         "banking v1")
    finally:  # the CLI's state (its Engine, settings) is this process's: leave none behind
        if state._engine is not None:
            state._engine.close()
        state._project = state._settings = state._engine = None


def test_stored_sentence_vectors_train_the_same_model_without_encoding_again(
        encoder: enc.Encoder, split: Any, stored: Stored, tmp_path: Path,
        encoded: list[int]) -> None:
    """``baton ai train`` stores its texts' vectors; a worker with the same encoder trains
    from them (only texts it was not given vectors for are encoded) and gets the same model.
    (The worker's model, trained from the vectors read back from the store, is the one
    compared with the first, the model train() trained by encoding the texts: a second
    training from the same vectors outside the store proved nothing more.)"""
    import numpy as np

    from baton.ai.offline import Vectors
    from baton.ai.trained import TrainedSets
    from baton.runtime.engine import Engine

    rows, test = split
    texts, labels = [t for t, _ in rows], [c for _, c in rows]
    first = stored.model  # train()'s, kept with its vectors (keep_vectors=True)
    assert stored.encoded == [len(texts)] and first.vectors is not None
    assert first.vectors.array.shape == (len(texts), 384)
    assert first.vectors.array.dtype == np.float16
    assert first.vectors.encoder.startswith("all-MiniLM-L6-v2/53aa51172d142c89/")
    back = Vectors.from_json(first.vectors.to_json(), len(texts))
    assert np.array_equal(back.array, first.vectors.array)

    encoded.clear()  # a step's own categories' examples after the stored texts: those alone
    OfflineClassifier.train([*texts, "where is my parcel", "parcel not delivered"],
                            [*labels, "parcel", "parcel"], known=back)
    assert encoded == [2]
    encoded.clear()  # vectors another encoder made are not used
    OfflineClassifier.train(texts, labels, known=Vectors("other-model/0/int8", back.array))
    assert encoded == [len(texts)]
    for bad, message in (({**first.vectors.to_json(), "rows": 3}, "not float16 vectors of"),
                         ({**first.vectors.to_json(), "data": "AAAA"}, "bytes, not"),
                         ({**first.vectors.to_json(), "data": "no base64!"}, "not base64")):
        with pytest.raises(BatonError, match=message):
            Vectors.from_json(bad, len(texts))

    # Through the store: the classifier's row carries them, the worker's reader hands them on.
    engine = Engine(copy_of(stored, tmp_path))
    try:
        row = stored.row
        assert row["vectors"] is True and row["encoder"] == "all-MiniLM-L6-v2"
        got = TrainedSets(engine.store.read)("b77")
        assert got.vectors is not None and got.vectors.array.shape == (len(texts), 384)
        assert got.vectors.encoder == first.vectors.encoder
        assert np.array_equal(got.vectors.array, first.vectors.array)
        encoded.clear()
        MODELS._models.clear()  # (the process's cache: this set must be trained here)
        trainings = MODELS.trainings
        answer = OfflineProvider(got).classify("my card still hasn't arrived", [])
        assert answer.category == "card_arrival"
        worker = MODELS.get(got.texts, got.labels)  # the model the provider trained, cached
        assert MODELS.trainings == trainings + 1
        # nothing encoded but the question, if it was a close call: every training text
        # had its vector
        assert encoded == [1] * worker.consulted, (encoded, worker.consulted)
    finally:
        engine.close()
    questions = [t for t, _ in test]
    ours = [(a.category, a.confidence, a.rationale) for a in worker.classify(questions)]
    theirs = [(a.category, a.confidence, a.rationale) for a in first.classify(questions)]
    differ = [(q, a, b) for q, a, b in zip(questions, ours, theirs, strict=True) if a != b]
    assert not differ, f"{len(differ)} answers differ, the first: {differ[0]}"


def test_with_few_texts_the_encoder_is_asked_only_when_configured(
        encoder: enc.Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ai step's own categories (8 examples an intent here): the TF-IDF model alone,
    unless ``[ai] encoder_few`` asks for the encoder too; then every text is encoded and
    more are right (deterministic: the same data, the same models).

    30 of BANKING77's 77 intents (the first the shuffled file names): the property is the
    encoder's help with few examples an intent, which the number of intents does not make;
    the logistic regression's fit grows with intents x features (77: 616 texts, 25,600
    features, 12 s of CPU a fit; 30: 2 s). With 30, 352 of the 400 are right with it
    against 309 alone (77: 317 against 276)."""
    rows = banking77(4000)
    intents = set(list(dict.fromkeys(label for _, label in rows))[:30])
    taken: dict[str, int] = {}
    train, test = [], []
    for text, label in rows:
        if label not in intents:
            continue
        if taken.get(label, 0) < 8:
            taken[label] = taken.get(label, 0) + 1
            train.append((text, label))
        elif len(test) < 400:
            test.append((text, label))
    texts, labels = [t for t, _ in train], [c for _, c in train]
    assert len(texts) < FEW
    alone = OfflineClassifier.train(texts, labels)
    assert alone.encoder_name is None  # the default: no encoder below FEW texts
    monkeypatch.setattr(enc, "_FEW", [True])
    with_it = OfflineClassifier.train(texts, labels)
    assert with_it.encoder_name == "all-MiniLM-L6-v2"
    got = with_it.classify([t for t, _ in test])
    assert with_it.consulted == len(test)  # every text
    base = alone.classify([t for t, _ in test], explain=False)
    right = sum(a.category == c for a, (_, c) in zip(got, test, strict=True))
    right_alone = sum(a.category == c for a, (_, c) in zip(base, test, strict=True))
    assert right > right_alone + len(test) // 20, (right, right_alone)
    flipped = [a for a, b in zip(got, base, strict=True) if a.category != b.category]
    assert flipped and all(a.rationale[0].startswith("meaning close to its examples")
                           for a in flipped if a.rationale)
    kept = [a for a, b in zip(got, base, strict=True) if a.category == b.category]
    assert not any(a.rationale and a.rationale[0].startswith("meaning close") for a in kept)
    for a in got:  # the mix is a distribution: its best first, the answer's confidence
        scores = [p for _, p in a.ranking]
        assert 0 < a.confidence <= 1 and scores == sorted(scores, reverse=True)
        assert a.ranking[0] == (a.category, a.confidence) and sum(scores) <= 1.0001
    # The provider's model cache tells the two apart (a small set: each get trains one).
    small = [t for t, c in train if c in {labels[0], labels[-1]}]
    small_labels = [c for c in labels if c in {labels[0], labels[-1]}]
    one = MODELS.get(small, small_labels)
    assert one.encoder_name == "all-MiniLM-L6-v2" and MODELS.get(small, small_labels) is one
    monkeypatch.setattr(enc, "_FEW", [False])
    other = MODELS.get(small, small_labels)
    assert other is not one and other.encoder_name is None


def test_a_retraining_encodes_only_the_texts_the_latest_version_lacks(
        encoder: enc.Encoder, split: Any, stored: Stored, tmp_path: Path,
        encoded: list[int]) -> None:
    """``baton ai train`` again on a file with rows added, changed, removed and reordered:
    the texts the latest version holds take its stored vectors, only the others are
    encoded (together, in one call), and the version stores both."""
    import numpy as np

    from baton.ai.trained import TrainedSets, _vectors_of, train
    from baton.runtime.engine import Engine

    rows, _ = split
    engine = Engine(copy_of(stored, tmp_path))  # b77 v1: the split's rows
    try:
        v1 = stored.row
        assert v1["version"] == 1 and v1["source"] == "v1.csv"
        assert v1["reused"] is None and stored.encoded == [len(rows)]
        new = [("where is my parcel", "parcel"), ("the parcel never came", "parcel"),
               (rows[0][0] + " please", rows[0][1])]  # a changed text is a new text
        changed = rows[20:] + new
        random.Random(3).shuffle(changed)
        encoded.clear()
        v2 = train(engine.store, "b77", [t for t, _ in changed], [c for _, c in changed],
                   source="v2.csv", actor="test", now="2026-12-04T00:01:00.000Z")
        assert encoded == [3], encoded  # the three texts v1 does not hold
        assert v2["version"] == 2 and v2["reused"] == {"version": 1, "texts": len(rows) - 20}
        sets = TrainedSets(engine.store.read)
        got = sets("b77")
        assert got.version == 2 and got.vectors is not None
        with engine.store.read() as tx:
            v1_row = tx.classifier_txn("b77", 1)
        assert v1_row is not None
        v1_set = _vectors_of(v1_row)
        assert v1_set is not None and v1_set.vectors is not None
        at = {t: i for i, t in enumerate(v1_set.texts)}
        for i, text in enumerate(got.texts):  # a text v1 held: v1's vector, bit for bit
            if text in at:
                assert np.array_equal(got.vectors.array[i], v1_set.vectors.array[at[text]])
        # the others are what encoding them gives (the three, encoded together as train did)
        others = [i for i, text in enumerate(got.texts) if text not in at]
        assert len(others) == 3
        fresh = encoder.encode([got.texts[i] for i in others]).astype("<f2")
        assert np.allclose(got.vectors.array[others].astype("f4"), fresh.astype("f4"),
                           atol=2e-3)
        with engine.store.read() as tx:
            row = tx.classifier_txn("b77", 2)
        assert row is not None
        assert _vectors_of({**row, "data": b"not gzip"}) is None  # unreadable: encode all
    finally:
        engine.close()
