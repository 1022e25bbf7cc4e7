"""Accuracy and speed of Baton's offline classifier on BANKING77 (../shared/data/banking77).

    python bench/banking77.py --train FILE.csv --test FILE.csv [--shots K]
        train on one file, print the accuracy on the other as the last line
    python bench/banking77.py --cv 5 [--shots K] [--data FILE.csv]
        K-fold cross-validated accuracy (stratified, seeded) on one file

``--encoder-few`` consults it with fewer than 2,000 training texts too (``[ai] encoder_few``).
``--encoder off`` leaves out the sentence encoder (``baton.ai.encoder``; ``auto``, the default,
uses it when ``baton[encoder]`` is installed; or a model directory). It is loaded before the
clock starts (once per process, ~2 s), and the line before the accuracy says whether it was used
and on how many of the test messages.
``--per-text`` classifies the test messages one a call, as an ``ai`` step asks (by default
they are classified in one call: faster, and the 8-bit encoder's vectors move a little with
the texts encoded beside them). ``--names`` also trains on each intent's name ("card arrival"), as an ``ai`` step trains on its
categories' names. ``--shots K`` trains on only K examples per intent (the first K of each, in file order after
a seeded shuffle). Also printed: training time and classification speed (messages/s), by the
clock and in this process's CPU time (what they are on a machine nobody else uses). The
data is CC BY 4.0 (Casanueva et al., 2020): see the data folder's README and LICENSE.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

from baton.ai.encoder import configure, encoder
from baton.ai.offline import OfflineClassifier

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77" / "train.csv"


def read(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [(r["text"], r["category"]) for r in csv.DictReader(f)]


def shots(rows: list[tuple[str, str]], k: int | None, seed: int) -> list[tuple[str, str]]:
    if k is None:
        return rows
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    taken: dict[str, int] = defaultdict(int)
    out = []
    for text, label in shuffled:
        if taken[label] < k:
            taken[label] += 1
            out.append((text, label))
    return out


def with_names(train: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Also each intent's name as a text ("card arrival"), as an ai step trains on its
    categories' names (``baton.ai.provider.training_set``)."""
    return train + [(label.replace("_", " "), label) for label in sorted({c for _, c in train})]


def evaluate(train: list[tuple[str, str]], test: list[tuple[str, str]],
             per_text: bool = False) -> dict[str, float]:
    started, cpu = time.perf_counter(), time.process_time()
    model = OfflineClassifier.train([t for t, _ in train], [c for _, c in train])
    trained, trained_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    if per_text:  # one text a call, as an ai step asks (the 8-bit encoder's vector of a
        # text moves a little with the texts encoded beside it: bench/RESULTS.md)
        answers = [a for t, _ in test for a in model.classify([t], explain=False)]
    else:
        answers = model.classify([t for t, _ in test], explain=False)
    took, took_cpu = time.perf_counter() - started, time.process_time() - cpu
    consulted = model.consulted
    right = sum(a.category == c for a, (_, c) in zip(answers, test, strict=True))
    # wall time and this process's CPU time: on a shared machine the first is the second
    # plus the waiting for a core
    return {"accuracy": right / len(test), "train_s": trained, "train_cpu_s": trained_cpu,
            "messages_per_s": len(test) / took if took else float("inf"),
            "messages_per_cpu_s": len(test) / took_cpu if took_cpu else float("inf"),
            "train_size": len(train), "test_size": len(test),
            "encoded_share": consulted / len(test)}


def folds(rows: list[tuple[str, str]], k: int, seed: int) -> list[list[int]]:
    """Stratified: each intent's rows dealt round-robin over the folds after a shuffle."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, (_, label) in enumerate(rows):
        by_label[label].append(i)
    out: list[list[int]] = [[] for _ in range(k)]
    rng = random.Random(seed)
    n = 0
    for label in sorted(by_label):
        idx = by_label[label]
        rng.shuffle(idx)
        for i in idx:
            out[n % k].append(i)
            n += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path)
    ap.add_argument("--test", type=Path)
    ap.add_argument("--data", type=Path, default=DEFAULT, help="the file --cv splits")
    ap.add_argument("--cv", type=int, help="K-fold cross-validation on --data")
    ap.add_argument("--shots", type=int, help="train on K examples per intent")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, help="use only the first N rows (a quick check)")
    ap.add_argument("--names", action="store_true",
                    help="also train on each intent's name, as an ai step does")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--encoder", default="auto",
                    help="the sentence encoder: auto (if installed), off, or a model directory")
    ap.add_argument("--encoder-few", action="store_true",
                    help="also with fewer than 2,000 training texts ([ai] encoder_few)")
    ap.add_argument("--per-text", action="store_true",
                    help="classify the test texts one a call, as ai steps ask (slower)")
    args = ap.parse_args()
    configure(args.encoder, args.encoder_few)
    started = time.perf_counter()
    enc = encoder()  # loaded once, before the clock starts, as a worker keeps it
    loaded = time.perf_counter() - started
    if args.cv:
        rows = read(args.data)[: args.limit]
        parts = folds(rows, args.cv, args.seed)
        results = []
        for f, test_idx in enumerate(parts):
            held = set(test_idx)
            train = shots([r for i, r in enumerate(rows) if i not in held], args.shots,
                          args.seed + f)
            train = with_names(train) if args.names else train
            results.append(evaluate(train, [rows[i] for i in test_idx], args.per_text))
        summary = {k: sum(r[k] for r in results) / len(results) for k in results[0]}
        summary["folds"] = args.cv
    elif args.train and args.test:
        train = shots(read(args.train)[: args.limit], args.shots, args.seed)
        summary = evaluate(with_names(train) if args.names else train, read(args.test),
                           args.per_text)
    else:
        ap.error("give --train and --test, or --cv K")
    summary["shots"] = args.shots
    summary["names"] = args.names
    summary["per_text"] = args.per_text
    if args.json:
        print(json.dumps(summary))
    print(f"trained on {summary['train_size']:.0f} messages in {summary['train_s']:.2f} s "
          f"({summary['train_cpu_s']:.2f} s CPU); classified {summary['messages_per_s']:.0f} "
          f"messages/s ({summary['messages_per_cpu_s']:.0f} per CPU second)", file=sys.stderr)
    print(f"encoder: {enc.name + (' (8-bit)' if enc.quantized else '') if enc else 'none'}"
          f"{f' (loaded in {loaded:.1f} s)' if enc else ''}; consulted on "
          f"{summary['encoded_share']:.1%} of the test messages", file=sys.stderr)
    print(f"accuracy: {summary['accuracy']:.4f}")


if __name__ == "__main__":
    main()
