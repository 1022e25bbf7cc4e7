"""Screen variants of the offline classifier on BANKING77 without leaking the evaluation.

    python bench/banking77_variants.py dev VARIANTS [--seed S] [--folds N]
        5-fold CV on the development 80 % (the held-out 20 % is set aside first)
    python bench/banking77_variants.py held VARIANTS
        train on the development 80 %, accuracy on the held-out 20 % (look once, at the end)
    python bench/banking77_variants.py full VARIANTS [--seed S]
        5-fold CV on the whole file, the same folds as ``bench/banking77.py --cv 5 --seed S``

The held-out 20 % is fold 0 of ``banking77.folds(rows, 5, 999)`` (stratified), set aside
before any tuning: tune on ``dev`` (seed 0), confirm on ``dev --seed 1``, then ``held`` once.

VARIANTS is a JSON list (inline or a file's path). A variant is ``[[[BLOCK, WEIGHT], ...], [MODEL, PARAM]]``: the named feature blocks (each a
sublinear TF-IDF, scaled by its weight, fitted on the training part only) side by side, and
a model: ``svc C`` (LinearSVC, one-vs-rest), ``cs C`` (Crammer-Singer), ``sgd ALPHA``
(modified Huber, averaged), ``lr C``, ``svcx C {OPTIONS}`` (LinearSVC with its other options,
e.g. ``{"loss": "hinge"}``), ``nb C ALPHA BETA [INPUTS [LEARNER [GAMMA]]]`` (NBSVM, see
:class:`NBLinear`). ``["ens", [[BLOCKS, MODEL, WEIGHT], ...]]`` averages
the members' standardised decision scores. Blocks: ``w13``, ``c25``, ``p`` are v4's (words
1-3, characters 2-5 inside words, pairs of stems, on ``offline.normalise``); the ``n``
variants use :func:`norm5` (v4's normalisation plus contractions without apostrophes,
"top-up"/"topup"/"topped up", "e-mail", British/American spellings, currency symbols as
words, whole numbers as one token, single-letter words kept); ``s13n`` stems 1-3, ``w12n``,
``c16n`` (characters 1-6), ``c36n`` (characters 3-6 across words), ``neg`` (the three words
after "not"/"never"/"no"), ``lsa:A+B:K`` (a K-dimensional truncated SVD of blocks A and B).

Features are cached per fold, so put many variants in one call. Prints one line per
variant: mean accuracy, per-fold accuracies, the model's fit time in CPU seconds (features
excluded). The data is CC BY 4.0 (Casanueva et al., 2020): see the data folder's README.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# this folder is sys.path[0] when run as a script
from banking77 import DEFAULT, folds, read  # type: ignore[import-not-found]

from baton.ai import offline

Rows = list[tuple[str, str]]

_SUBS = [(re.compile(p), r) for p, r in (
    (r"\b(ca|can)nt\b", "can not"), (r"\bdont\b", "do not"), (r"\bdoesnt\b", "does not"),
    (r"\bdidnt\b", "did not"), (r"\bwont\b", "will not"), (r"\bisnt\b", "is not"),
    (r"\bwasnt\b", "was not"), (r"\bhavent\b", "have not"), (r"\bhasnt\b", "has not"),
    (r"\bhadnt\b", "had not"), (r"\barent\b", "are not"), (r"\bwerent\b", "were not"),
    (r"\bcouldnt\b", "could not"), (r"\bshouldnt\b", "should not"),
    (r"\bwouldnt\b", "would not"), (r"\bim\b", "i am"), (r"\bive\b", "i have"),
    (r"\bid\b(?= like)", "i would"), (r"\btop[\s-]?ups?\b", "topup"),
    (r"\btopped[\s-]?up\b", "topup"), (r"\btopping[\s-]?up\b", "topup"),
    (r"\be[\s-]?mail", "email"), (r"\bcancell?ed\b", "cancelled"),
    (r"\bcancell?ing\b", "cancelling"), (r"\bcheque", "check"), (r"\bauthori[sz]", "authoriz"),
    (r"\bcolou?r", "color"), (r"\bpls\b|\bplz\b", "please"), (r"\bu\b", "you"),
    (r"\bur\b", "your"), (r"\batm'?s\b", "atm"), (r"\bpin\s?code\b", "pin"),
)]
_CURRENCY = [(re.compile(p), r) for p, r in (
    (r"\$", " dollar "), (r"£", " pound "), (r"€", " euro "))]
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_TOKEN = r"\b\w+\b"  # single letters too ("i", "a")


def norm5(text: str) -> str:
    """v4's normalisation plus support-message variants (see the module's docstring)."""
    t = text.lower().replace("\u2019", "'")
    for pattern, replacement in offline._CONTRACTIONS:
        t = pattern.sub(replacement, t)
    for pattern, replacement in _CURRENCY:
        t = pattern.sub(replacement, t)
    t = _NUMBER.sub(" 0 ", t)
    t = offline._SPACE.sub(" ", offline._PUNCT.sub(" ", t)).strip()
    for pattern, replacement in _SUBS:
        t = pattern.sub(replacement, t)
    return t


@functools.cache
def stemmed5(text: str) -> str:
    return " ".join(offline.stem(w) for w in norm5(text).split())


def pairs5(text: str) -> list[str]:
    words = sorted(list(dict.fromkeys(offline.stem(w) for w in offline._WORD.findall(
        norm5(text))))[:offline.MAX_PAIRS_WORDS])
    return [f"{a}~{b}" for i, a in enumerate(words) for b in words[i + 1:]]


def negated(text: str) -> list[str]:
    words = stemmed5(text).split()
    return [f"NOT_{x}" for i, w in enumerate(words) if w in ("not", "never", "no")
            for x in words[i + 1:i + 4]]


def _blocks() -> dict[str, Callable[[], Any]]:
    from sklearn.feature_extraction.text import TfidfVectorizer as T

    n = offline.normalise
    return {
        "w13": lambda: T(ngram_range=(1, 3), sublinear_tf=True, preprocessor=n),
        "c25": lambda: T(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                         preprocessor=n),
        "p": lambda: T(analyzer=offline.word_pairs, sublinear_tf=True, min_df=2),
        "w13n": lambda: T(ngram_range=(1, 3), sublinear_tf=True, preprocessor=norm5,
                          token_pattern=_TOKEN),
        "w12n": lambda: T(ngram_range=(1, 2), sublinear_tf=True, preprocessor=norm5,
                          token_pattern=_TOKEN),
        "s13n": lambda: T(ngram_range=(1, 3), sublinear_tf=True, preprocessor=stemmed5,
                          token_pattern=_TOKEN),
        "c25n": lambda: T(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                          preprocessor=norm5),
        "c16n": lambda: T(analyzer="char_wb", ngram_range=(1, 6), sublinear_tf=True,
                          preprocessor=norm5),
        "c36n": lambda: T(analyzer="char", ngram_range=(3, 6), sublinear_tf=True,
                          preprocessor=norm5, min_df=2),
        "pn": lambda: T(analyzer=pairs5, sublinear_tf=True, min_df=2),
        "neg": lambda: T(analyzer=negated, sublinear_tf=True, min_df=2),
    }


class Features:
    """Each block's matrices for each split, computed once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._makers = _blocks()

    def block(self, name: str, split: str, train: list[str], test: list[str]
              ) -> tuple[Any, Any]:
        import scipy.sparse as sp  # type: ignore[import-untyped]

        key = (name, split)
        if key in self._cache:
            return self._cache[key]
        if name.startswith("lsa:"):
            from sklearn.decomposition import TruncatedSVD
            from sklearn.preprocessing import normalize

            _, sources, k = name.split(":")
            parts = [self.block(s, split, train, test) for s in sources.split("+")]
            svd = TruncatedSVD(int(k), n_iter=5, random_state=0)
            a = normalize(svd.fit_transform(sp.hstack([p[0] for p in parts]).tocsr()))
            b = normalize(svd.transform(sp.hstack([p[1] for p in parts]).tocsr()))
            got = (sp.csr_matrix(a), sp.csr_matrix(b))
        elif name in self._makers:
            vectorizer = self._makers[name]()
            got = (vectorizer.fit_transform(train).tocsr(), vectorizer.transform(test).tocsr())
        else:
            raise SystemExit(f"unknown feature block {name!r}")
        self._cache[key] = got
        return got

    def matrices(self, blocks: list[list[Any]], split: str, train: list[str],
                 test: list[str]) -> tuple[Any, Any]:
        import scipy.sparse as sp

        parts = [(self.block(str(n), split, train, test), float(w)) for n, w in blocks]
        return (sp.hstack([a * w for (a, _), w in parts]).tocsr(),
                sp.hstack([b * w for (_, b), w in parts]).tocsr())


class NBLinear:
    """NBSVM (Wang & Manning 2012, "Baselines and Bigrams"), one-vs-rest: per class c the
    log-count ratio ``r_c = log((p/|p|_1) / (q/|q|_1))`` (``p``, ``q``: ``alpha`` plus the
    feature sums over the class's texts and over the others), a binary linear model trained
    on ``X * r_c``, its weights interpolated ``w' = (1 - beta) * mean|w| + beta * w``. The
    decision is ``X . (r_c * w'_c) + b_c``: one sparse product for all classes.

    ``inputs``: ``b`` the features binarised (X > 0), ``bn`` binarised and each row
    L2-normalised, ``t`` the TF-IDF values as given (r from their sums), ``t1`` the TF-IDF
    values with ``r = 1`` (plain one-vs-rest, to compare learners). ``learner``: ``svc``
    (LinearSVC, squared hinge), ``hinge`` (LinearSVC, hinge), ``bal`` (LinearSVC, each
    class-vs-rest problem weighted balanced), ``lr`` (logistic regression, liblinear)."""

    def __init__(self, c: float, alpha: float, beta: float, inputs: str = "b",
                 learner: str = "svc", gamma: float = 1.0) -> None:
        self.c, self.alpha, self.beta, self.inputs, self.learner = c, alpha, beta, inputs, learner
        self.gamma = gamma  # r tempered: sign(r) * |r| ** gamma (1: Wang & Manning's r)
        if inputs not in ("b", "bn", "t", "t1"):
            raise SystemExit(f"nb: unknown inputs {inputs!r} (b, bn, t or t1)")
        if learner not in ("svc", "hinge", "bal", "lr"):
            raise SystemExit(f"nb: unknown learner {learner!r} (svc, hinge, bal or lr)")

    def _x(self, x: Any) -> Any:
        from sklearn.preprocessing import normalize

        if self.inputs in ("t", "t1"):
            return x
        xb = x.copy()
        xb.data[:] = 1.0
        xb.eliminate_zeros()
        return normalize(xb) if self.inputs == "bn" else xb

    def fit(self, x: Any, y: list[str]) -> NBLinear:
        import numpy as np
        import scipy.sparse as sp
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC

        xb = self._x(x).tocsr()
        labels = np.asarray(y)
        self.classes_ = np.array(sorted(set(y)))
        total = np.asarray(xb.sum(axis=0)).ravel()
        coefs, biases = [], []
        for c in self.classes_:
            pos = labels == c
            p = self.alpha + np.asarray(xb[pos].sum(axis=0)).ravel()
            q = self.alpha + (total - (p - self.alpha))
            r = np.log(p / p.sum()) - np.log(q / q.sum())
            if self.inputs == "t1":
                r = np.ones_like(r)
            elif self.gamma != 1.0:
                r = np.sign(r) * np.abs(r) ** self.gamma
            xr = xb @ sp.diags(r)
            if self.learner == "lr":
                clf: Any = LogisticRegression(C=self.c, solver="liblinear")
            else:
                clf = LinearSVC(C=self.c, loss="hinge" if self.learner == "hinge"
                                else "squared_hinge",
                                class_weight="balanced" if self.learner == "bal" else None)
            clf.fit(xr, pos)
            w = clf.coef_.ravel()
            w = (1.0 - self.beta) * np.abs(w).mean() + self.beta * w
            coefs.append(w * r)
            biases.append(float(clf.intercept_[0]))
        self.coef_ = np.vstack(coefs)
        self.intercept_ = np.array(biases)
        return self

    def decision_function(self, x: Any) -> Any:
        import numpy as np

        return np.asarray(self._x(x) @ self.coef_.T) + self.intercept_


def model(spec: list[Any]) -> Any:
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.svm import LinearSVC

    kind, param = spec[0], float(spec[1])
    if kind == "nb":  # ["nb", C, alpha, beta, inputs, learner, gamma]
        inputs = str(spec[4]) if len(spec) > 4 else "b"
        learner = str(spec[5]) if len(spec) > 5 else "svc"
        gamma = float(spec[6]) if len(spec) > 6 else 1.0
        return NBLinear(param, float(spec[2]), float(spec[3]), inputs, learner, gamma)
    if kind == "svcx":  # ["svcx", C, {LinearSVC's other parameters}]
        return LinearSVC(C=param, **(spec[2] if len(spec) > 2 else {}))
    if kind == "svc":
        return LinearSVC(C=param)
    if kind == "cs":
        return LinearSVC(C=param, multi_class="crammer_singer")
    if kind == "sgd":
        return SGDClassifier(loss="modified_huber", alpha=param, average=True, max_iter=30,
                             tol=None, random_state=0)
    if kind == "lr":
        return LogisticRegression(C=param, max_iter=1000)
    raise SystemExit(f"unknown model {kind!r}")


def scores(features: Features, blocks: list[list[Any]], spec: list[Any], split: str,
           train: Rows, test: Rows) -> tuple[Any, list[str], float]:
    """Standardised decision scores of the test texts, the classes, the fit's CPU time."""
    import numpy as np

    xtr, xte = features.matrices(blocks, split, [t for t, _ in train], [t for t, _ in test])
    started = time.process_time()
    fitted = model(spec).fit(xtr, [c for _, c in train])
    cpu = time.process_time() - started
    d = (np.log(fitted.predict_proba(xte) + 1e-9) if spec[0] == "lr"
         else fitted.decision_function(xte))
    d = (d - d.mean(axis=1, keepdims=True)) / (d.std(axis=1, keepdims=True) + 1e-9)
    return d, list(fitted.classes_), cpu


def accuracy(features: Features, variant: list[Any], split: str, train: Rows, test: Rows
             ) -> tuple[float, float]:
    members = variant[1] if variant[0] == "ens" else [[variant[0], variant[1], 1.0]]
    total: Any = None
    cpu = 0.0
    classes: list[str] = []
    for blocks, spec, weight in members:
        d, classes, seconds = scores(features, blocks, spec, split, train, test)
        cpu += seconds
        total = d * float(weight) if total is None else total + d * float(weight)
    right = sum(classes[k] == c for k, (_, c) in zip(total.argmax(axis=1), test, strict=True))
    return right / len(test), cpu


def cv(rows: Rows, k: int, seed: int) -> list[tuple[Rows, Rows]]:
    out = []
    for part in folds(rows, k, seed):
        held = set(part)
        out.append(([r for i, r in enumerate(rows) if i not in held], [rows[i] for i in part]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("dev", "held", "full"))
    ap.add_argument("variants", help="a list of variants, as JSON or a JSON file's path")
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5, help="evaluate on the first N folds only")
    args = ap.parse_args()
    given = args.variants.strip()
    variants = json.loads(given if given.startswith("[") else Path(given).read_text())
    rows = read(args.data)
    aside = set(folds(rows, 5, 999)[0])
    dev = [r for i, r in enumerate(rows) if i not in aside]
    if args.mode == "dev":
        splits = cv(dev, 5, args.seed)[: args.folds]
    elif args.mode == "held":
        splits = [(dev, [r for i, r in enumerate(rows) if i in aside])]
    else:
        splits = cv(rows, 5, args.seed)[: args.folds]
    features = Features()
    for variant in variants:
        got = [accuracy(features, variant, f"{args.mode}{args.seed}/{n}", train, test)
               for n, (train, test) in enumerate(splits)]
        accs = [a for a, _ in got]
        print(f"{args.mode} seed {args.seed} {json.dumps(variant)}: mean {sum(accs) / len(accs):.4f}"
              f" folds {' '.join(f'{a:.4f}' for a in accs)}"
              f" fit {sum(c for _, c in got) / len(got):.1f} s CPU", flush=True)


if __name__ == "__main__":
    main()
