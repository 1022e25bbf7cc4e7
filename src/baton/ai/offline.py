"""The offline classifier: no network, no download, trained from labelled texts in seconds.

A linear model over three kinds of TF-IDF features (sublinear term frequencies), from
scikit-learn: words (1- to 3-grams; with fewer than :data:`FEW` texts, word **stems** 1- to
2-grams), characters inside words (2 to 5) and **pairs of word stems** (every two distinct
stems of a text, wherever they stand: "top up ... failed" and "top up ... reverted" are
different intents although their n-grams are alike, and "card ... charged" is "charge ...
cards"); a multinomial logistic regression when it has fewer than :data:`FEW` training texts
(an ``ai`` step's categories: it generalises better from a few examples), a linear
support-vector classifier from there on (as accurate with many, and much faster to train).
Stems come from the Snowball English stemmer (``snowballstemmer``, pure Python, no data
files): with ten examples a category, "refunded" and "refunds" must count as "refund".
Why this and not something larger:

* it needs nothing but scikit-learn (no model to fetch, no GPU, a few MB of memory);
* it trains on BANKING77's 10,003 messages in seconds and classifies thousands per second
  (``bench/banking77.py`` measures both, with its accuracy; ``bench/RESULTS.md`` has the
  figures of the choices tried);
* its decisions can be explained: a linear model's score for a category is a sum over the
  words, pairs and fragments of the text, so the rationale names the ones that weighed most
  (stop words alone, "for the", are left out of it).

What it cannot know is what words mean beyond the training texts ("never showed up" is
"has not arrived"): with many texts it stops at ~0.916 on BANKING77. With the ``encoder``
extra installed, a classifier of :data:`FEW` texts or more also consults a pretrained sentence
encoder on its close calls (:class:`OfflineClassifier`, :mod:`baton.ai.encoder`): 0.929.

The rationale shows the words of the text itself, not their stems ("charged + twice", not
"charg + twice"). Texts are normalised first: lower case, English contractions spelled out ("can't" reads
"ca not"), punctuation as spaces, digits folded to 0 so that amounts and dates do not become
vocabulary. Character n-grams make it robust to typos and inflections ("refund",
"refunded", "refnd").

The confidence is the logistic regression's probability, or for the SVM a softmax of its
decision scores (comparable across texts of one model, not a probability in the statistical
sense); ``min_confidence`` on a step compares against it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from baton.errors import BatonError

MODEL_NAME = "baton-offline-tfidf-linear"
FEW = 2_000  # below this many training texts, logistic regression; from it on, a linear SVM
MODEL_VERSION = "4"  # 4: pairs of stems, stemmed words with few texts, SVM C=0.5 (3:
# contractions and punctuation normalised, characters 2-5, word pairs; 2: word 1-3-grams,
# characters 1-5; 1: 1-2, 2-5)

_DIGITS = re.compile(r"\d")
_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")
_WORD = re.compile(r"\w\w+")
_CONTRACTIONS = tuple((re.compile(p), r) for p, r in (
    (r"n't\b", " not"), (r"'m\b", " am"), (r"'re\b", " are"), (r"'ve\b", " have"),
    (r"'ll\b", " will"), (r"'d\b", " would"), (r"\bcannot\b", "can not")))
MAX_PAIRS_WORDS = 40  # pairs of a text's first 40 distinct stems at most (780 pairs)
_STEMMER_LOCK = threading.Lock()  # a Snowball stemmer keeps its word in itself: one at a time


def normalise(text: str) -> str:
    """What the features are computed on: lower case, English contractions spelled out
    ("can't" reads "ca not", "I'm" "I am"), digits as 0, punctuation as spaces, spaces
    collapsed."""
    t = text.lower().replace("\u2019", "'")
    for pattern, replacement in _CONTRACTIONS:
        t = pattern.sub(replacement, t)
    return _SPACE.sub(" ", _PUNCT.sub(" ", _DIGITS.sub("0", t))).strip()


@functools.cache
def _stemmer() -> Any:
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@functools.lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The Snowball English stem of a (normalised) word: "charged" and "charges" read
    "charg"."""
    with _STEMMER_LOCK:
        return str(_stemmer().stemWord(word))


def stemmed(text: str) -> str:
    """The normalised text with each word replaced by its stem."""
    return " ".join(stem(w) for w in normalise(text).split())


def word_pairs(text: str) -> list[str]:
    """Every pair of distinct word stems of the text, in alphabetical order, wherever they
    stand ("arriv~card"): what two words mean together ("top up" with "failed" or with
    "reverted") that their n-grams miss when other words stand between them."""
    words = sorted(list(dict.fromkeys(stem(w) for w in _WORD.findall(normalise(text))))
                   [:MAX_PAIRS_WORDS])
    return [f"{a}~{b}" for i, a in enumerate(words) for b in words[i + 1:]]


@dataclass(frozen=True)
class Scored:
    """One text's answer: the best category, its confidence, the runners-up and why."""

    category: str
    confidence: float
    ranking: tuple[tuple[str, float], ...]  # (category, confidence), best first, top 5
    rationale: tuple[str, ...]  # the words/fragments that weighed most for ``category``


ENCODER_MARGIN = 0.5  # the encoder is consulted when the best two scores are this close
ENCODER_WEIGHT = 0.5  # and its linear model's scores count this much beside the TF-IDF ones
ENCODER_C = 3.0  # the linear SVM on the encoder's vectors (BANKING77: C 1-3 alike)
ENCODER_DIMS = 192  # the vectors' first principal components it learns from (BANKING77:
# 384 dimensions 0.9304, 192 0.9299, 128 0.9295; the SVM's fit takes half the time)
FEW_ENCODER_C = 50.0  # with few texts (opt-in, [ai] encoder_few): a logistic regression on
FEW_ENCODER_WEIGHT = 0.6  # the vectors, its log-probabilities weighted 0.6 beside the TF-IDF
# model's 0.4 (BANKING77, 10 an intent + names, 5 folds: 0.7526 alone; C 20-200 and weights
# 0.6-0.8 all 0.831-0.833; the vectors alone 0.83; a plain average of the probabilities 0.830)


@dataclass(frozen=True)
class Vectors:
    """The sentence vectors of a training set's texts, in order, as 16-bit floats, and the
    encoder that made them (:attr:`baton.ai.encoder.Encoder.identity`). ``baton ai train``
    stores them with the texts, so that a worker trains a classifier of thousands of texts
    from them instead of encoding every text again (BANKING77's 10,003: 15 of 20 s); a
    worker whose encoder differs encodes the texts itself."""

    encoder: str
    array: Any  # numpy float16, one row per text

    def to_json(self) -> dict[str, Any]:
        import base64

        rows, dims = self.array.shape
        return {"encoder": self.encoder, "dtype": "float16", "rows": int(rows),
                "dims": int(dims), "data": base64.b64encode(
                    self.array.astype("<f2", copy=False).tobytes()).decode("ascii")}

    @classmethod
    def from_json(cls, data: Any, rows: int) -> Vectors:
        """Stored vectors of ``rows`` texts; anything else is an error saying what."""
        import base64
        import binascii

        import numpy as np

        if not isinstance(data, dict) or data.get("dtype") != "float16" \
                or not isinstance(data.get("encoder"), str) or data.get("rows") != rows \
                or not isinstance(data.get("dims"), int) or data["dims"] <= 0:
            raise BatonError(f"stored sentence vectors are not float16 vectors of the set's "
                             f"{rows} texts")
        try:
            raw = base64.b64decode(str(data.get("data", "")), validate=True)
        except (binascii.Error, ValueError):
            raise BatonError("stored sentence vectors: not base64") from None
        if len(raw) != rows * data["dims"] * 2:
            raise BatonError(f"stored sentence vectors: {len(raw)} bytes, not {rows} x "
                             f"{data['dims']} 16-bit floats")
        return cls(data["encoder"], np.frombuffer(raw, dtype="<f2").reshape(rows, data["dims"]))


Earlier = Callable[[], "tuple[Sequence[str], Vectors] | None"]
"""What a previous training's texts and vectors are, asked only when they would be used."""


def training_vectors(enc: Any, texts: Sequence[str], known: Vectors | None,
                     earlier: Earlier | None = None) -> tuple[Any, int]:
    """``texts``' sentence vectors as 16-bit floats (what is stored, and what is trained on,
    so that a model trained from stored vectors is the model trained by encoding), and how
    many were taken from ``earlier``: the first ``len(known.array)`` from ``known`` when
    ``enc`` made them; of the rest, a text ``earlier`` holds (the texts of a classifier's
    previous version and their vectors: a retraining mostly repeats them) takes its vector
    from there when ``enc`` made those; the others are encoded, in one call."""
    import numpy as np

    def made_by_enc(v: Vectors) -> bool:
        return bool(v.encoder == enc.identity and v.array.shape[1] == enc.dimensions)

    out = np.empty((len(texts), enc.dimensions), dtype="<f2")
    n = 0
    if known is not None and made_by_enc(known) and len(known.array) <= len(texts):
        n = len(known.array)
        out[:n] = known.array
    missing = list(range(n, len(texts)))
    taken = 0
    before = earlier() if earlier is not None and missing else None
    if before is not None and made_by_enc(before[1]):
        old_texts, old = before
        where = {t: i for i, t in enumerate(old_texts)}  # (a text listed twice: one vector)
        rows, found, still = [], [], []
        for i in missing:
            j = where.get(texts[i])
            if j is None:
                still.append(i)
            else:
                rows.append(i)
                found.append(j)
        if rows:
            out[rows] = old.array[found]
        missing, taken = still, len(rows)
    if missing:
        out[missing] = enc.encode([texts[i] for i in missing]).astype("<f2")
    return out, taken


class OfflineClassifier:
    """A trained model: :meth:`train`, then :meth:`classify` (thread-safe to read).

    With many texts (:data:`FEW` or more) and a sentence encoder installed
    (:mod:`baton.ai.encoder`), a second linear SVM is trained on the texts' sentence vectors
    (their :data:`ENCODER_DIMS` principal components);
    a text whose two best TF-IDF scores are within :data:`ENCODER_MARGIN` of each other (one
    in six on BANKING77) is also encoded, and that SVM's scores are added to the TF-IDF
    ones at :data:`ENCODER_WEIGHT`. The rest are decided by the TF-IDF model alone, which is
    thirty times faster and right on them (BANKING77, 5-fold: 0.916 alone, 0.931 with the
    encoder on every text, 0.929 when it is consulted on the close ones only)."""

    def __init__(self, pipeline: Any, labels: Sequence[str], fingerprint: str,
                 head: Any = None, encoder: Any = None) -> None:
        self._pipeline = pipeline
        self.labels = tuple(labels)
        self.fingerprint = fingerprint  # what it was trained on: its texts and labels
        self._head = head  # the SVM on sentence vectors, or None
        self._encoder = encoder
        self.encoder_name: str | None = encoder.name if encoder is not None else None
        self.consulted = 0  # texts the encoder was asked about (a figure for the bench)
        self.vectors: Vectors | None = None  # its training texts' (train(keep_vectors=True))
        self.reused = 0  # training texts whose vectors came from train(earlier=...)

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[str], *, c: float = 0.5,
              known: Vectors | None = None, keep_vectors: bool = False,
              earlier: Earlier | None = None) -> OfflineClassifier:
        """Train on ``texts`` labelled ``labels`` (at least two categories). ``known``: the
        sentence vectors of the first texts, if stored (:class:`Vectors`); with
        ``keep_vectors`` the model keeps its training texts' vectors (:attr:`vectors`).
        ``earlier``: asked for texts and their vectors from a previous training when the
        encoder is used (its texts found here are not encoded again; :attr:`reused` counts
        them)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, make_pipeline
        from sklearn.svm import LinearSVC

        if len(texts) != len(labels):
            raise BatonError(f"{len(texts)} texts but {len(labels)} labels")
        distinct = sorted(set(labels))
        if len(distinct) < 2:
            raise BatonError("the classifier needs examples of at least two categories, got "
                             f"{distinct or 'none'}")
        few = len(texts) < FEW
        # named by the prefix their features carry in a rationale (_feature_names)
        features = FeatureUnion([
            # with few texts, stems: "refunded" must count as the "refund" of another example
            # (BANKING77, 10 an intent, fold 0: 0.747 -> 0.761); with many, words 1-3 do
            # better (the stems are in the pairs)
            ("w", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, preprocessor=stemmed)
             if few else
             TfidfVectorizer(ngram_range=(1, 3), sublinear_tf=True, preprocessor=normalise)),
            ("c", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                                  preprocessor=normalise)),
            # a pair seen once in thousands of texts is noise; in a few dozen, it is all there is
            ("p", TfidfVectorizer(analyzer=word_pairs, sublinear_tf=True,
                                  min_df=1 if few else 2)),
        ])
        if few:
            # few examples: a multinomial logistic regression generalises better from them
            # (BANKING77 with 10 an intent: 0.73 against 0.71 in v2) and its probabilities are
            # the confidence; it trains in a second on a few hundred texts
            model: Any = LogisticRegression(C=50.0, max_iter=2000)
        else:
            model = LinearSVC(C=c, random_state=0)  # many: as accurate; seconds on 10,000
        pipeline = make_pipeline(features, model)
        enc = _encoder() if not few or _encoder_few() else None
        if enc is None:
            _fit(model, _fit_features(features, texts), list(labels))
            return cls(pipeline, [str(x) for x in pipeline.classes_],
                       fingerprint(texts, labels))
        from sklearn.decomposition import PCA

        # on every core (BANKING77's 10,003 texts: 15 s), those not stored already
        stored, reused = training_vectors(enc, texts, known, earlier)
        vectors = stored.astype("float32")
        head = make_pipeline(PCA(min(ENCODER_DIMS, enc.dimensions), random_state=0),
                             LinearSVC(C=ENCODER_C, random_state=0)) if not few else \
            LogisticRegression(C=FEW_ENCODER_C, max_iter=3000)
        # then the vectors' model beside the TF-IDF features (liblinear and numpy let go of
        # the GIL, the features hold it; encoding beside them is slower: PyTorch's threads
        # wait for each other), and the TF-IDF model's fit after the vectors' (see _fit)
        with ThreadPoolExecutor(1, thread_name_prefix="fit-vectors") as pool:
            fitted = pool.submit(_fit, head, vectors, list(labels))
            x = _fit_features(features, texts)
            fitted.result()
        _fit(model, x, list(labels))
        if list(head.classes_) != list(pipeline.classes_):  # both sort the same labels
            raise BatonError("the sentence-vector model's categories differ from the TF-IDF "
                             "model's")
        trained = cls(pipeline, [str(x) for x in pipeline.classes_], fingerprint(texts, labels),
                      head, enc)
        trained.reused = reused
        if keep_vectors:
            trained.vectors = Vectors(enc.identity, stored)
        return trained

    def classify(self, texts: Sequence[str], *, explain: bool = True) -> list[Scored]:
        """The best category of each text, with confidences and (``explain``) a rationale."""
        if not texts:
            return []
        from sklearn import config_context

        # The models validated what they were fitted on; what they are asked about is text
        # they vectorise themselves. Skipping scikit-learn's checks of every argument on
        # every call (parameters, finiteness) was a fifth of an ai step's classification.
        with config_context(assume_finite=True, skip_parameter_validation=True):
            return self._classify(texts, explain)

    def _classify(self, texts: Sequence[str], explain: bool) -> list[Scored]:
        union, svc = self._pipeline.steps[0][1], self._pipeline.steps[-1][1]
        x = union.transform(list(texts))
        helped: dict[int, int] = {}  # text -> the category the encoder's scores favour
        if hasattr(svc, "predict_proba"):
            probs = svc.predict_proba(x)
            if self._head is not None:  # few texts, the encoder asked on every one
                probs, helped = self._blend(texts, probs)
            rows = [[float(p) for p in row] for row in probs]
        else:
            scores = svc.decision_function(x)
            if len(self.labels) == 2:  # binary: one score, for the second label
                scores = [[-float(s), float(s)] for s in scores]
            elif self._head is not None:
                scores, helped = self._consult(texts, scores)
            rows = [_softmax([float(s) for s in row]) for row in scores]
        out = []
        for i, probs in enumerate(rows):
            order = sorted(range(len(probs)), key=lambda k: -probs[k])
            best = order[0]
            why = self._rationale(texts[i], x, i, best, svc, union) if explain else ()
            if explain and helped.get(i) == best:
                why = (f"meaning close to its examples ({self.encoder_name})", *why[:4])
            out.append(Scored(self.labels[best], round(probs[best], 4),
                              tuple((self.labels[k], round(probs[k], 4)) for k in order[:5]),
                              why))
        return out

    def _blend(self, texts: Sequence[str], probs: Any) -> tuple[Any, dict[int, int]]:
        """Few texts: the TF-IDF model's and the vectors' probabilities, mixed in log space
        (:data:`FEW_ENCODER_WEIGHT`); returns them and, for each text whose answer the
        vectors changed, that answer (theirs, or one both rank high)."""
        import numpy as np

        self.consulted += len(texts)
        vec = self._head.predict_proba(self._encoder.encode(list(texts)))
        mixed = np.exp((1 - FEW_ENCODER_WEIGHT) * np.log(np.maximum(probs, 1e-12))
                       + FEW_ENCODER_WEIGHT * np.log(np.maximum(vec, 1e-12)))
        mixed /= mixed.sum(axis=1, keepdims=True)
        alone, best = probs.argmax(axis=1), mixed.argmax(axis=1)
        return mixed, {int(i): int(best[i]) for i in np.flatnonzero(alone != best)}

    def _consult(self, texts: Sequence[str], scores: Any) -> tuple[Any, dict[int, int]]:
        """Add the sentence-vector SVM's scores to the texts whose two best scores are
        close; returns the scores and, for each text consulted, the category it favoured."""
        import numpy as np

        scores = np.asarray(scores, dtype=np.float64)
        top2 = np.sort(scores, axis=1)[:, -2:]
        close = np.flatnonzero(top2[:, 1] - top2[:, 0] < ENCODER_MARGIN)
        if close.size == 0:
            return scores, {}
        self.consulted += int(close.size)
        extra = self._head.decision_function(
            self._encoder.encode([texts[int(i)] for i in close]))
        scores[close] += ENCODER_WEIGHT * extra
        return scores, {int(i): int(np.argmax(e)) for i, e in zip(close, extra, strict=True)}

    def _rationale(self, text: str, x: Any, row: int, label: int, svc: Any, union: Any
                   ) -> tuple[str, ...]:
        """The features with the largest contribution (weight x value) to ``label``'s score:
        words and phrases first, character fragments only when they add something; stems
        shown as the text's own words ("charg" as "charged")."""
        coef = svc.coef_[0 if svc.coef_.shape[0] == 1 else label]
        sign = -1.0 if svc.coef_.shape[0] == 1 and label == 0 else 1.0
        vec = x.getrow(row).tocoo()
        names = _feature_names(union)
        own = normalise(text).split()
        surface: dict[str, str] = {w: w for w in own}  # a word of the text stands for itself
        for w in own:
            surface.setdefault(stem(w), w)  # a stem for the first word of the text it is of
        contrib = sorted(((sign * float(coef[j]) * float(v), int(j))
                          for j, v in zip(vec.col, vec.data, strict=True)), reverse=True)
        words: list[str] = []
        for weight, j in contrib:
            if weight <= 0 or len(words) >= 5:
                break
            name = names[j]
            if name.startswith(("w:", "p:")):
                terms = [surface.get(t, t) for t in name[2:].replace("~", " ").split()]
                if all(t in _stop_words() for t in terms):
                    continue  # "for the", "was": true, but no reason a person can use
                words.append((" + " if name.startswith("p:") else " ").join(terms))
            else:
                frag = name[2:].strip()
                if len(frag) >= 4 and not any(frag in w for w in words):
                    words.append(f"{frag}…")
        return tuple(words)


# by the union itself, not its id(): a model's union that is gone (a cache evicted it) must
# not lend its names to a new one given the same id
_NAMES: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()
_NAMES_LOCK = threading.Lock()


def _feature_names(union: Any) -> list[str]:
    with _NAMES_LOCK:
        names = _NAMES.get(union)
        if names is None:
            names = []
            for prefix, t in union.transformer_list:  # in the order of their columns
                if t != "drop":
                    names += [f"{prefix}:{n}" for n in t.get_feature_names_out()]
            _NAMES[union] = names
        return names


class NothingToLearn(BatonError):
    """No text of a training set has anything the features read (a letter or a digit)."""


_NOTHING = ("empty vocabulary", "no terms remain")  # scikit-learn: a vectorizer learnt none


def _fit_features(features: Any, texts: Sequence[str]) -> Any:
    """Fit the feature union on ``texts`` and return their features. A kind of feature the
    texts have none of is dropped from the union (one-word texts have no pairs of words,
    "&&" or an emoji no words, and with many texts a pair must be seen twice), so the model
    learns from the others and classifies with the ones it learnt; when no kind has any
    (every text empty, punctuation or emoji), an error says so."""
    try:
        return features.fit_transform(list(texts))
    except ValueError as exc:
        if not any(s in str(exc) for s in _NOTHING):
            raise
    from sklearn.base import clone

    empty = []
    for name, vectorizer in features.transformer_list:
        try:
            clone(vectorizer).fit(list(texts))
        except ValueError as exc:
            if not any(s in str(exc) for s in _NOTHING):
                raise
            empty.append(name)
    if len(empty) == len(features.transformer_list):
        raise NothingToLearn(f"nothing to learn from: none of the {len(texts)} texts has a letter "
                         "or a digit (punctuation, symbols and emoji are not read)")
    features.set_params(**dict.fromkeys(empty, "drop"))
    return features.fit_transform(list(texts))


def _encoder() -> Any:
    from baton.ai.encoder import encoder

    return encoder()


_LIBLINEAR = threading.Lock()


def _fit(model: Any, x: Any, y: list[str]) -> None:
    """Fit ``model`` (or a pipeline ending in one) on ``x``. A linear SVM is fitted by
    liblinear, which draws its coordinate order from one random generator for the whole
    process: two fits at once (the two models of one training, two trainings in two
    threads) would interleave their draws and give a model a little different from run to
    run. Those fits take turns, so a worker trains exactly the model ``baton ai train``
    did; the rest of a pipeline (PCA) runs outside the turn."""
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    if isinstance(model, Pipeline):
        *rest, (_name, last) = model.steps
        for _n, step in rest:
            x = step.fit_transform(x, y)
        model = last
    if isinstance(model, LinearSVC):
        with _LIBLINEAR:
            model.fit(x, y)
    else:
        model.fit(x, y)


def _encoder_few() -> bool:
    from baton.ai.encoder import few

    return few()


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | {"0", "00", "000", "0000", "not"}


def _softmax(scores: list[float]) -> list[float]:
    # Scores of a linear SVM are margins around 0..±2; scaled so that a clear winner
    # (margin ~1 above the next) gets ~0.9.
    top = max(scores)
    exps = [math.exp(4.0 * (s - top)) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def fingerprint(texts: Sequence[str], labels: Sequence[str], start: Any = None) -> str:
    """What a model is trained on, in 16 hex digits. ``start``: :func:`hasher` of texts that
    come first (a trained classifier's 10,000 are hashed once, not at every step)."""
    return str(hasher(texts, labels, start).hexdigest()[:16])


def hasher(texts: Sequence[str], labels: Sequence[str], start: Any = None) -> Any:
    """The SHA-256 state of :func:`fingerprint` after ``texts`` (continuing a copy of
    ``start``'s, which is left as it was)."""
    h = start.copy() if start is not None else hashlib.sha256(
        f"{MODEL_NAME}/{MODEL_VERSION}".encode())
    for t, label in zip(texts, labels, strict=True):
        h.update(b"\x00" + t.encode() + b"\x01" + str(label).encode())
    return h


class ModelCache:
    """Trained classifiers by fingerprint, shared by a process's threads (a step's
    categories are trained once per worker, on first use). A model being trained is
    trained once: a thread that asks for it meanwhile waits for that training (a trained
    classifier of 10,000 texts takes seconds of every core; two at once took twice as
    long and trained it twice). A model of a trained classifier's version (``owner``)
    replaces the models of its older versions: a worker that sees retrainings keeps one
    (BANKING77's takes about 0.1 GB), not one per version up to ``size``."""

    def __init__(self, size: int = 32) -> None:
        self._models: OrderedDict[str, OfflineClassifier] = OrderedDict()
        self._lock = threading.Lock()
        self._training: dict[str, threading.Event] = {}  # key -> set when its training ends
        self._owners: dict[str, tuple[str, int]] = {}  # key -> (classifier, version)
        self._size = size
        self.trainings = 0  # models trained by this cache (a figure for tests and the bench)

    def get(self, texts: Sequence[str], labels: Sequence[str],
            known: Vectors | None = None, *, print_: str | None = None,
            owner: tuple[str, int] | None = None) -> OfflineClassifier:
        """The model of ``texts`` and ``labels``, trained on first use (``known``: the
        stored sentence vectors of the first texts, :meth:`OfflineClassifier.train`;
        ``print_``: their :func:`fingerprint`, when the caller has it; ``owner``: the
        trained classifier and version they come from)."""
        from baton.ai.encoder import choice

        # with the encoder or without, for few texts too or not
        key = f"{print_ or fingerprint(texts, labels)}/{choice()}/{_encoder_few()}"
        while True:
            with self._lock:
                model = self._models.get(key)
                if model is not None:
                    self._models.move_to_end(key)
                    return model
                busy = self._training.get(key)
                if busy is None:  # this thread trains it
                    done = self._training[key] = threading.Event()
                    break
            busy.wait()  # another thread trains it: its model, or (it failed) a try of ours
        try:
            model = OfflineClassifier.train(texts, labels, known=known)  # outside the lock
            with self._lock:
                self.trainings += 1
                if owner is not None and any(name == owner[0] and version > owner[1]
                                             for name, version in self._owners.values()):
                    return model  # (a newer version came meanwhile: this one is not kept)
                self._models[key] = model
                if owner is not None:
                    self._owners[key] = owner
                    for old in [k for k, (name, version) in self._owners.items()
                                if name == owner[0] and version < owner[1]]:
                        self._models.pop(old, None)
                        del self._owners[old]
                while len(self._models) > self._size:
                    gone, _ = self._models.popitem(last=False)
                    self._owners.pop(gone, None)
        finally:
            with self._lock:
                del self._training[key]
            done.set()
        return model


MODELS = ModelCache()
