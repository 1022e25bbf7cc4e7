"""Classifiers trained from labelled records: ``baton ai train NAME --from FILE.csv``.

A CSV file of texts and their labels (columns ``text`` and ``label`` by default) becomes a
new version of the classifier ``NAME`` in the database (``baton_classifiers``); an ``ai``
step with ``task: classify`` and ``classifier: NAME`` is answered by the offline provider
trained on the latest version (plus the step's own categories' names, descriptions and
examples, if it has categories). What is stored is the training set, compressed, not a
pickled model (a pickle read from the database would run whatever it holds, and breaks
across scikit-learn versions): a worker trains the classifier from it once per version (the
offline classifier is deterministic and trains on 10,000 texts in seconds) and keeps it.
When the sentence encoder took part (:mod:`baton.ai.encoder`), the texts' sentence vectors
are stored too (16-bit floats: data, not code), so that a worker with the same encoder
trains from them instead of encoding every text again.
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baton.errors import BatonError, NotFound, ValidationError

if TYPE_CHECKING:
    from baton.ai.offline import Vectors

log = logging.getLogger(__name__)
MAX_TEXT = 20_000  # characters of a training text kept
MAX_ROWS = 100_000  # rows of a training file (the offline classifier trains on 10,000 in seconds)
MAX_CSV_BYTES = 256 * 1024 * 1024  # a training file larger than this is refused unread


@dataclass(frozen=True)
class TrainingSet:
    name: str
    version: int
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    vectors: Vectors | None = None  # the texts' sentence vectors, if stored with them

    @functools.cached_property
    def hasher(self) -> Any:
        """The texts' :func:`baton.ai.offline.hasher` (hashed once per set, not per step)."""
        from baton.ai.offline import hasher

        return hasher(self.texts, self.labels)


def read_csv(path: Path, text_column: str = "text", label_column: str = "label"
             ) -> tuple[list[str], list[str]]:
    """The texts and labels of a CSV file with a header; a problem names the file, the line
    and the column. A file over :data:`MAX_CSV_BYTES` or :data:`MAX_ROWS` is refused."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise BatonError(f"{path}: cannot read it: {exc.strerror}") from None
    texts: list[str] = []
    labels: list[str] = []
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_CSV_BYTES:
            raise BatonError(f"{path}: {size:,} bytes: a training file is at most "
                             f"{MAX_CSV_BYTES:,} bytes")
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for col in (text_column, label_column):
            if col not in header:
                raise BatonError(f"{path}:1: no column {col!r} (the header has: "
                                 f"{', '.join(header) or 'nothing'}; choose with --text / "
                                 "--label)")
        try:
            for row in reader:
                text = (row.get(text_column) or "").strip()
                label = (row.get(label_column) or "").strip()
                if not text and not label:
                    continue  # a blank line
                if not text or not label:
                    empty = text_column if not text else label_column
                    raise BatonError(f"{path}:{reader.line_num}: empty {empty!r}")
                if len(texts) >= MAX_ROWS:
                    raise BatonError(f"{path}:{reader.line_num}: more than {MAX_ROWS:,} rows: "
                                     f"a classifier is trained on at most {MAX_ROWS:,} texts")
                texts.append(text[:MAX_TEXT])
                labels.append(label)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BatonError(f"{path}:{reader.line_num}: not readable as UTF-8 CSV: "
                             f"{exc}") from None
    if len(set(labels)) < 2:
        raise BatonError(f"{path}: the classifier needs examples of at least two labels, got "
                         f"{len(set(labels))} in {len(texts)} rows")
    return texts, labels


def training_warnings(texts: Sequence[str], labels: Sequence[str]) -> list[str]:
    """What in a training set is likely a mistake, though it trains: the same text under
    two or more labels (the model cannot learn both; one of them is probably mislabelled),
    and labels with a single example (the classifier will rarely answer them)."""
    seen: dict[str, set[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        seen.setdefault(" ".join(text.lower().split()), set()).add(label)
    clashes = {t: sorted(ls) for t, ls in seen.items() if len(ls) > 1}
    out = []
    if clashes:
        first = next(iter(clashes))
        out.append(f"{len(clashes)} text{'s' if len(clashes) != 1 else ''} appear under more "
                   f"than one label (e.g. {first[:60]!r} as {', '.join(clashes[first])}): "
                   "correct or remove them")
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    single = sorted(label for label, n in counts.items() if n == 1)
    if single:
        out.append(f"{len(single)} label{'s have' if len(single) != 1 else ' has'} a single "
                   f"example ({', '.join(single[:10])}{', …' if len(single) > 10 else ''}): "
                   "the classifier will rarely answer them; add examples")
    return out


def train(store: Any, name: str, texts: Sequence[str], labels: Sequence[str], *,
          source: str | None, actor: str, now: str, strict: bool = False) -> dict[str, Any]:
    """Train on ``texts`` (so a set that cannot be trained on is refused before it is
    stored) and store it as the next version of ``name``; returns the stored row (without
    its data) with ``seconds``, the training time, ``encoder``, the sentence encoder the
    model consults (:mod:`baton.ai.encoder`) or None, ``reused``: how many texts took
    their sentence vectors from the latest version instead of being encoded again (a
    retraining on a file with a few rows added or changed encodes those alone), and
    ``unknown_categories``: the rules of deployed orchestrations naming a category that
    this version lacks for a step with ``classifier: NAME`` (:mod:`baton.ai.rules`).
    ``strict``: refuse such a version (:class:`~baton.ai.rules.LabelsInUse`), storing
    nothing; checked before the training and again in the transaction that stores it,
    under the definitions lock a deploy takes to check the other way round."""
    from baton.ai.offline import OfflineClassifier, fingerprint
    from baton.ai.rules import LabelsInUse, conflicts_txn
    from baton.definitions.checks import IDENTIFIER

    if not IDENTIFIER.fullmatch(name):
        raise ValidationError("classifier", {"name": f"{name!r} is not a name (letters, "
                                                     "digits and _, starting with a letter)"})
    known = frozenset(labels)
    if strict:  # refused before seconds of training, when it is already clear
        with store.read() as tx:
            latest = tx.classifier_txn(name, data=False)
            version = (latest["version"] + 1) if latest else 1
            unknown = conflicts_txn(tx, name, known, version)
        if unknown:
            raise LabelsInUse(name, version, unknown)
    started = time.perf_counter()
    took_from: list[TrainingSet] = []  # the version earlier() read, if it had vectors

    def earlier() -> tuple[Sequence[str], Vectors] | None:
        """The latest version's texts and vectors (read when the encoder is used): those
        texts need no encoding again."""
        with store.read() as tx:
            head = tx.classifier_txn(name)
        got = _vectors_of(head) if head is not None else None
        if got is None or got.vectors is None:
            return None
        took_from.append(got)
        return got.texts, got.vectors

    model = OfflineClassifier.train(texts, labels, keep_vectors=True, earlier=earlier)
    seconds = time.perf_counter() - started
    stored: dict[str, Any] = {"texts": list(texts), "labels": list(labels)}
    if model.vectors is not None:
        stored["vectors"] = model.vectors.to_json()
    data = gzip.compress(json.dumps(stored, ensure_ascii=False).encode())
    with store.write() as tx:
        tx.lock_definitions_txn()  # (a deploy checking its rules against it waits)
        latest = tx.classifier_txn(name, data=False)
        version = (latest["version"] + 1) if latest else 1
        unknown = conflicts_txn(tx, name, known, version)
        if unknown and strict:
            raise LabelsInUse(name, version, unknown)
        row = {"name": name, "version": version,
               "labels": sorted(known), "examples": len(texts),
               "fingerprint": fingerprint(texts, labels), "data": data,
               "source": source, "created_at": now, "created_by": actor}
        tx.insert_classifier_txn(row)
    return {**{k: v for k, v in row.items() if k != "data"}, "seconds": seconds,
            "encoder": model.encoder_name,  # the sentence encoder it consults, or None
            "vectors": model.vectors is not None,  # its texts' vectors stored with them
            # texts whose vectors came from the version before (not encoded again)
            "reused": {"version": took_from[0].version, "texts": model.reused}
            if took_from and model.reused else None,
            "unknown_categories": unknown}


class TrainedSets:
    """The latest training set of each classifier, read from the store when a step needs
    it: one query for the latest version each time (a new training is used at once), the
    data only when the version changed. Thread-safe; one per worker process."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self._read = read  # the store's read() context manager factory
        self._lock = threading.Lock()
        self._sets: dict[str, TrainingSet] = {}

    def __call__(self, name: str) -> TrainingSet:
        with self._read() as tx:
            head = tx.classifier_txn(name, data=False)
            if head is None:
                raise NotFound("classifier", name)
            with self._lock:
                held = self._sets.get(name)
            if held is not None and held.version == head["version"]:
                return held
            row = tx.classifier_txn(name, head["version"])
        got = training_set(row)
        with self._lock:
            self._sets[name] = got
        return got


def training_set(row: dict[str, Any]) -> TrainingSet:
    """A stored version (its row with ``data``) as a :class:`TrainingSet`; vectors that
    cannot be read are logged and left out (the texts are what counts: they are encoded
    again)."""
    data = json.loads(gzip.decompress(row["data"]))
    vectors = None
    if data.get("vectors") is not None:
        from baton.ai.offline import Vectors

        try:
            vectors = Vectors.from_json(data["vectors"], len(data["texts"]))
        except BatonError as exc:
            log.warning("classifier %s v%s: %s; its texts are encoded again", row["name"],
                        row["version"], exc)
    return TrainingSet(row["name"], int(row["version"]), tuple(data["texts"]),
                       tuple(data["labels"]), vectors)


def _vectors_of(row: dict[str, Any]) -> TrainingSet | None:
    """The version ``row`` for its vectors, or None when it has none or cannot be read (a
    retraining then encodes every text: slower, never wrong)."""
    try:
        got = training_set(row)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # gzip, JSON, shape
        log.warning("classifier %s v%s cannot be read (%s): every text is encoded",
                    row.get("name"), row.get("version"), exc)
        return None
    return got if got.vectors is not None else None
