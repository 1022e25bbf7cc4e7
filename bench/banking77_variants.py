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

Typo correction (:class:`Typos`, fitted on the training part only): ``w13t`` / ``pt`` are
``w13`` / ``p`` on text whose rare words (training frequency <= 1, and every word unseen in
training) are replaced by the most frequent training word of frequency > 1 within
Damerau-Levenshtein distance 1 (2 from 7 letters), rapidfuzz; suffixes: ``tl`` Levenshtein,
``t2`` frequency <= 2, ``tf`` the nearest first, ``t4`` words of >= 4 letters only, ``tx`` 2
edits from 9 letters, ``tc`` both, ``tk`` the original word kept beside its correction.
``lead`` (the first 1, 2, 3 words as position-marked tokens), ``cw23`` (stem 2-3-grams with
stop words removed, negations kept). More models: ``knn K P`` (cosine kNN, votes cosine**P),
``centroid 0`` (Rocchio), ``bag N FRAC C`` (N LinearSVCs on random FRAC of the columns,
averaged: one linear model), ``kridge ALPHA`` (least squares one-vs-rest, dual Cholesky),
``cnb ALPHA`` (complement naive Bayes), ``ksvc C KIND GAMMA [VOTES]`` (libsvm one-vs-one on a
precomputed cosine / poly / rbf kernel). Members' scores are cached per split, so an
ensemble's members are fitted once per call.

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


class Typos:
    """Typo correction to the training vocabulary, fitted on the training texts only: a word
    (of ``offline.normalise``'s text, ``\\w\\w+``, at least ``min_len`` letters, not a
    number) whose training frequency is <= ``rare`` (every word unseen in training too) is
    replaced by the most frequent word of frequency > ``rare`` within Damerau-Levenshtein
    (``dl``) or Levenshtein (``lev``) distance 1, 2 for words of >= ``long`` letters (ties of
    frequency: the nearer). ``first``: prefer the nearest, then the most frequent.
    Corrections are cached per word."""

    def __init__(self, rare: int = 1, long: int = 7, metric: str = "dl", min_len: int = 3,
                 order: str = "freq", keep: bool = False) -> None:
        self.rare, self.long, self.metric, self.min_len, self.order = (
            rare, long, metric, min_len, order)
        self.keep = keep  # the original word kept, its correction after it
        self.fixed: dict[str, str] = {}

    def fit(self, texts: list[str]) -> Typos:
        from collections import Counter

        counts = Counter(w for t in texts for w in offline._WORD.findall(offline.normalise(t)))
        self.counts = counts
        self.trusted = [w for w, n in counts.items() if n > self.rare]
        self.fixed = {}
        return self

    def word(self, w: str) -> str:
        got = self.fixed.get(w)
        if got is not None:
            return got
        got = w
        if (self.counts.get(w, 0) <= self.rare and len(w) >= self.min_len
                and not w.isdigit() and not any(ch.isdigit() for ch in w)):
            from rapidfuzz import process
            from rapidfuzz.distance import DamerauLevenshtein, Levenshtein

            scorer = DamerauLevenshtein.distance if self.metric == "dl" else Levenshtein.distance
            cutoff = 2 if len(w) >= self.long else 1
            near = process.extract(w, self.trusted, scorer=scorer, score_cutoff=cutoff,
                                   limit=None)
            if near:
                if self.order == "first":
                    key = lambda m: (m[1], -self.counts[m[0]])
                else:
                    key = lambda m: (-self.counts[m[0]], m[1])
                got = min(near, key=key)[0]
        if self.keep and got != w:
            got = f"{w} {got}"
        self.fixed[w] = got
        return got

    def __call__(self, text: str) -> str:
        return " ".join(self.word(w) if len(w) > 1 else w
                        for w in offline.normalise(text).split())

    def pairs(self, text: str) -> list[str]:
        return offline.word_pairs(self(text))


class TypoBlock:
    """A block on typo-corrected text: ``kind`` ``w`` (words 1-3, as ``w13``) or ``p``
    (pairs of stems, as ``p``); the corrector is fitted in :meth:`fit_transform`."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind, self.options = kind, options

    def fit_transform(self, texts: list[str]) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer as T

        typos = Typos(**self.options).fit(texts)
        self.typos = typos
        if self.kind == "w":
            self.vectorizer = T(ngram_range=(1, 3), sublinear_tf=True, preprocessor=typos)
        else:
            self.vectorizer = T(analyzer=typos.pairs, sublinear_tf=True, min_df=2)
        return self.vectorizer.fit_transform(texts)

    def transform(self, texts: list[str]) -> Any:
        return self.vectorizer.transform(texts)


def leading(text: str) -> list[str]:
    """The text's first one, two and three words as position-marked tokens ("^how do"): what
    kind of message it is ("why ...", "how do i ...", "can i ...") where the n-grams do not
    say where they stand."""
    words = offline.normalise(text).split()
    return [f"^{' '.join(words[:n])}" for n in (1, 2, 3) if len(words) >= n]


@functools.cache
def _content_stop() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS - {"not", "no", "never", "nor", "cannot"})


def content(text: str) -> str:
    """The text's stems without stop words (negations kept): "my card has not arrived yet"
    reads "card not arriv"."""
    stop = _content_stop()
    return " ".join(offline.stem(w) for w in offline.normalise(text).split() if w not in stop)


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
        "cw23": lambda: T(ngram_range=(2, 3), sublinear_tf=True, preprocessor=content,
                          min_df=2),
        "lead": lambda: T(analyzer=leading, sublinear_tf=True, min_df=2),
        # typo-corrected words / pairs (:class:`Typos`): t = Damerau-Levenshtein, frequency
        # <= 1 corrected, 2 edits from 7 letters; tl Levenshtein; t2 frequency <= 2; tf nearest
        # first; t4 words of >= 4 letters only; tx 2 edits from 9 letters; tk the original
        # word kept beside its correction
        "w13t": lambda: TypoBlock("w"), "pt": lambda: TypoBlock("p"),
        "w13tl": lambda: TypoBlock("w", metric="lev"), "ptl": lambda: TypoBlock("p", metric="lev"),
        "w13t2": lambda: TypoBlock("w", rare=2), "pt2": lambda: TypoBlock("p", rare=2),
        "w13tf": lambda: TypoBlock("w", order="first"),
        "ptf": lambda: TypoBlock("p", order="first"),
        "w13t4": lambda: TypoBlock("w", min_len=4), "pt4": lambda: TypoBlock("p", min_len=4),
        "w13tx": lambda: TypoBlock("w", long=9), "ptx": lambda: TypoBlock("p", long=9),
        "w13tk": lambda: TypoBlock("w", keep=True), "ptk": lambda: TypoBlock("p", keep=True),
        # conservative: 4 letters or more, 2 edits from 9 letters
        "w13tc": lambda: TypoBlock("w", min_len=4, long=9),
        "ptc": lambda: TypoBlock("p", min_len=4, long=9),
    }


class Features:
    """Each block's matrices for each split, computed once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._makers = _blocks()
        self.cpu: dict[str, float] = {}  # each block's features (fit + transform), CPU s

    def block(self, name: str, split: str, train: list[str], test: list[str]
              ) -> tuple[Any, Any]:
        import scipy.sparse as sp  # type: ignore[import-untyped]

        key = (name, split)
        if key in self._cache:
            return self._cache[key]
        started = time.process_time()
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
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - started
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


class Knn:
    """Cosine k nearest neighbours (rows L2-normalised), each neighbour's vote its cosine to
    the power ``p`` (0: unweighted), summed per class: the decision scores."""

    def __init__(self, k: int, p: float = 1.0) -> None:
        self.k, self.p = k, p

    def fit(self, x: Any, y: list[str]) -> Knn:
        import numpy as np
        from sklearn.preprocessing import normalize

        self.x = normalize(x).T.tocsr()
        self.classes_ = np.array(sorted(set(y)))
        index = {c: i for i, c in enumerate(self.classes_)}
        self.y = np.array([index[c] for c in y])
        return self

    def decision_function(self, x: Any) -> Any:
        import numpy as np
        from sklearn.preprocessing import normalize

        sim = np.asarray((normalize(x) @ self.x).todense())
        top = np.argpartition(-sim, self.k, axis=1)[:, : self.k]
        votes = np.take_along_axis(sim, top, axis=1).clip(0) ** self.p
        out = np.zeros((x.shape[0], len(self.classes_)))
        rows = np.repeat(np.arange(x.shape[0]), self.k)
        np.add.at(out, (rows, self.y[top].ravel()), votes.ravel())
        return out


class Centroid:
    """Rocchio: each class's mean of the L2-normalised rows, itself normalised; the decision
    is the cosine to each centroid."""

    def fit(self, x: Any, y: list[str]) -> Centroid:
        import numpy as np
        from sklearn.preprocessing import normalize

        xn = normalize(x)
        self.classes_ = np.array(sorted(set(y)))
        labels = np.asarray(y)
        self.c: Any = normalize(np.vstack([np.asarray(xn[labels == c].mean(axis=0))
                                      for c in self.classes_]))
        return self

    def decision_function(self, x: Any) -> Any:
        import numpy as np
        from sklearn.preprocessing import normalize

        return np.asarray(normalize(x) @ self.c.T)


class Bagged:
    """``n`` LinearSVCs (C ``c``), each on a random ``frac`` of the feature columns (seeds
    ``seed``..``seed + n - 1``), their decision scores averaged; averaging linear models is
    one linear model (the mean of the coefficients, zero where a member did not see a
    column), so classifying costs what v4's does."""

    def __init__(self, n: int, frac: float, c: float, seed: int = 0) -> None:
        self.n, self.frac, self.c, self.seed = n, frac, c, seed

    def fit(self, x: Any, y: list[str]) -> Bagged:
        import numpy as np
        from sklearn.svm import LinearSVC

        d = x.shape[1]
        coef: Any = None
        bias: Any = None
        for i in range(self.n):
            cols = np.sort(np.random.default_rng(self.seed + i).choice(
                d, int(self.frac * d), replace=False))
            svc = LinearSVC(C=self.c).fit(x[:, cols], y)
            full = np.zeros((len(svc.classes_), d))
            full[:, cols] = svc.coef_
            coef = full if coef is None else coef + full
            bias = svc.intercept_.copy() if bias is None else bias + svc.intercept_
            self.classes_ = svc.classes_
        self.coef_, self.intercept_ = coef / self.n, bias / self.n
        return self

    def decision_function(self, x: Any) -> Any:
        import numpy as np

        return np.asarray(x @ self.coef_.T) + self.intercept_


class DualRidge:
    """Least squares one-vs-rest (targets +1 / -1), solved in the dual: ``(X X' + alpha I) A
    = Y`` by Cholesky (n x n, n the training texts: seconds where sklearn's ``sparse_cg``
    took minutes for 77 targets), the weights ``X' A``, the bias the targets' means (the
    features are not centred)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def fit(self, x: Any, y: list[str]) -> DualRidge:
        import numpy as np
        import scipy.linalg as la  # type: ignore[import-untyped]

        self.classes_ = np.array(sorted(set(y)))
        labels = np.asarray(y)
        t = np.where(labels[:, None] == self.classes_[None, :], 1.0, -1.0)
        self.intercept_ = t.mean(axis=0)
        k = np.asarray((x @ x.T).todense())
        k[np.diag_indices_from(k)] += self.alpha
        a = la.cho_solve(la.cho_factor(k, overwrite_a=True), t - self.intercept_)
        self.coef_ = np.asarray(x.T @ a).T
        return self

    def decision_function(self, x: Any) -> Any:
        import numpy as np

        return np.asarray(x @ self.coef_.T) + self.intercept_


class KernelSVC:
    """libsvm's SVC (one-vs-one, its votes and confidences turned one-vs-rest by scikit-learn)
    on a precomputed kernel of the L2-normalised rows: ``cos`` the cosine, ``poly`` (cosine
    + 1) ** ``gamma`` / 2 ** gamma, ``rbf`` exp(gamma (cosine - 1)) (the RBF kernel of unit
    vectors, ``gamma`` = 1 / sigma^2)."""

    def __init__(self, c: float, kind: str = "cos", gamma: float = 1.0, votes: str = "ovr"
                 ) -> None:
        self.c, self.kind, self.gamma = c, kind, gamma
        self.votes = votes  # "ovr": scikit-learn's votes + confidences; "sum": per class the
        # sum of its one-vs-one margins (for a smoother score to ensemble)

    def _k(self, cos: Any) -> Any:
        import numpy as np

        if self.kind == "poly":
            return ((cos + 1.0) / 2.0) ** self.gamma
        if self.kind == "rbf":
            return np.exp(self.gamma * (cos - 1.0))
        return cos

    def fit(self, x: Any, y: list[str]) -> KernelSVC:
        import numpy as np
        from sklearn.preprocessing import normalize
        from sklearn.svm import SVC

        self.x = normalize(x).tocsr()
        self.svc = SVC(C=self.c, kernel="precomputed", cache_size=1000).fit(
            self._k(np.asarray((self.x @ self.x.T).todense())), y)
        self.classes_ = self.svc.classes_
        return self

    def decision_function(self, x: Any) -> Any:
        import numpy as np
        from sklearn.preprocessing import normalize

        k = self._k(np.asarray((normalize(x) @ self.x.T).todense()))
        if self.votes == "ovr":
            return self.svc.decision_function(k)
        self.svc.decision_function_shape = "ovo"
        d = self.svc.decision_function(k)
        self.svc.decision_function_shape = "ovr"
        n = len(self.classes_)
        out = np.zeros((k.shape[0], n))
        col = 0
        for i in range(n):
            for j in range(i + 1, n):
                out[:, i] += d[:, col]
                out[:, j] -= d[:, col]
                col += 1
        return out


def model(spec: list[Any]) -> Any:
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.svm import LinearSVC

    kind, param = spec[0], float(spec[1])
    if kind == "nb":  # ["nb", C, alpha, beta, inputs, learner, gamma]
        inputs = str(spec[4]) if len(spec) > 4 else "b"
        learner = str(spec[5]) if len(spec) > 5 else "svc"
        gamma = float(spec[6]) if len(spec) > 6 else 1.0
        return NBLinear(param, float(spec[2]), float(spec[3]), inputs, learner, gamma)
    if kind == "knn":  # ["knn", K, P]: cosine kNN, votes cosine ** P
        return Knn(int(param), float(spec[2]) if len(spec) > 2 else 1.0)
    if kind == "centroid":  # ["centroid", 0]: Rocchio, cosine to the class centroids
        return Centroid()
    if kind == "bag":  # ["bag", N, FRAC, C]: N LinearSVCs on random FRAC of the columns
        return Bagged(int(param), float(spec[2]), float(spec[3]))
    if kind == "ridge":  # ["ridge", ALPHA]: least squares one-vs-rest (RidgeClassifier)
        from sklearn.linear_model import RidgeClassifier

        return RidgeClassifier(alpha=param)
    if kind == "ksvc":  # ["ksvc", C, KIND, GAMMA]: libsvm one-vs-one, precomputed kernel
        return KernelSVC(param, str(spec[2]) if len(spec) > 2 else "cos",
                         float(spec[3]) if len(spec) > 3 else 1.0,
                         str(spec[4]) if len(spec) > 4 else "ovr")
    if kind == "kridge":  # ["kridge", ALPHA]: least squares one-vs-rest, dual Cholesky
        return DualRidge(param)
    if kind == "cnb":  # ["cnb", ALPHA]: complement naive Bayes on the TF-IDF values
        from sklearn.naive_bayes import ComplementNB

        return ComplementNB(alpha=param)
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

    key = (json.dumps(blocks), json.dumps(spec), split)
    if key in _SCORES:  # an ensemble's members are fitted once per split
        return _SCORES[key]
    xtr, xte = features.matrices(blocks, split, [t for t, _ in train], [t for t, _ in test])
    started = time.process_time()
    fitted = model(spec).fit(xtr, [c for _, c in train])
    cpu = time.process_time() - started
    d = (np.log(fitted.predict_proba(xte) + 1e-9) if spec[0] == "lr"
         else fitted.predict_joint_log_proba(xte) if spec[0] == "cnb"
         else fitted.decision_function(xte))
    d = (d - d.mean(axis=1, keepdims=True)) / (d.std(axis=1, keepdims=True) + 1e-9)
    _SCORES[key] = (d, list(fitted.classes_), cpu)
    return d, list(fitted.classes_), cpu


_SCORES: dict[tuple[str, str, str], tuple[Any, list[str], float]] = {}


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
    print("features, CPU s a split (fit + transform): " + ", ".join(
        f"{name} {seconds / len(splits):.1f}" for name, seconds in features.cpu.items()))


if __name__ == "__main__":
    main()
