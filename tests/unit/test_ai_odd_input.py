"""The offline classifier on training texts with little in them: one word each (no pairs of
words to learn), stop words, single letters, punctuation and emoji. It trains on the kinds of
feature the texts have, classifies and explains with those, and says so when there is
nothing at all to learn from."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from baton.ai import offline
from baton.ai.offline import FEW, NothingToLearn, OfflineClassifier
from baton.errors import BatonError

ONE_WORD = (["invoice", "refund", "cancel", "terminate"],
            ["billing", "billing", "cancellation", "cancellation"])


def kinds(model: OfflineClassifier) -> list[str]:
    """The kinds of feature a model was trained on (w: words, c: characters, p: pairs)."""
    union = model._pipeline.steps[0][1]
    return [name for name, t in union.transformer_list if t != "drop"]


def test_one_word_texts_train_without_pairs_and_explain_with_their_words() -> None:
    model = OfflineClassifier.train(*ONE_WORD)
    assert kinds(model) == ["w", "c"]
    invoice, terminate, nothing = model.classify(["invoice please", "I want to terminate", ""])
    assert invoice.category == "billing" and invoice.rationale[0] == "invoice"
    assert terminate.category == "cancellation" and "terminate" in terminate.rationale
    assert nothing.rationale == ()  # (a text with nothing the model knows: no reason)
    assert sum(p for _, p in nothing.ranking) == pytest.approx(1, abs=1e-3)


def test_texts_of_stop_words_or_single_letters_train() -> None:
    stop = OfflineClassifier.train(["the", "and", "of", "to"], ["a", "a", "b", "b"])
    assert kinds(stop) == ["w", "c"]
    (answer,) = stop.classify(["the end"])
    assert answer.category == "a" and answer.rationale == ()  # stop words are no reason
    letters = OfflineClassifier.train(["a", "b", "c", "d"], ["x", "x", "y", "y"])
    assert kinds(letters) == ["c"]  # a word is two letters or more
    assert letters.classify(["a"])[0].category == "x"


def test_some_texts_of_emoji_and_punctuation_among_words() -> None:
    model = OfflineClassifier.train(["😀 yes", "!!", "🎉 no", "?"], ["x", "x", "y", "y"])
    assert kinds(model) == ["w", "c"]
    (answer,) = model.classify(["yes"])
    assert answer.category == "x" and answer.rationale == ("yes",)


@pytest.mark.parametrize("texts", [["😀", "!!", "🎉", "?"], ["", " ", ".", "---"]])
def test_nothing_to_learn_from_is_a_clear_error(texts: list[str]) -> None:
    with pytest.raises(NothingToLearn, match=r"^nothing to learn from: none of the 4 texts "
                                             r"has a letter or a digit \(punctuation"):
        OfflineClassifier.train(texts, ["x", "x", "y", "y"])
    assert issubclass(NothingToLearn, BatonError)


def test_many_one_word_texts_train_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """From :data:`FEW` texts on, a pair must be seen twice: one-word texts have none."""
    monkeypatch.setattr(offline, "_encoder", lambda: None)  # the TF-IDF model alone
    texts = [f"w{i:04d}{'a' if i % 2 else 'b'}" for i in range(FEW)]
    labels = ["odd" if i % 2 else "even" for i in range(FEW)]
    model = OfflineClassifier.train(texts, labels)
    assert kinds(model) == ["w", "c"]
    assert [a.category for a in model.classify(["w9999a", "w9998b"])] == ["odd", "even"]


@pytest.fixture
def collect_this_tests_garbage() -> Iterator[None]:
    """``gc.collect()`` in the test looks at the objects made since it began: what the
    process held before is frozen (:func:`gc.freeze`) until it ends. In the suite's
    long-lived processes a full collection walks millions of objects, seconds each; the
    models that must be collected here are all made in the test. (A serving worker of an
    earlier test may have frozen the process's objects, :func:`baton.runtime.heap.settle`:
    they are frozen again after.)"""
    frozen = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if frozen:
            gc.freeze()


@pytest.mark.usefixtures("collect_this_tests_garbage")
def test_a_rationale_names_its_own_models_features() -> None:
    """A model's feature names are its own, also when a model that is gone had the same
    id(): they were kept by id (and never let go), so a new model could explain with a dead
    one's words, or fail on an index past their end."""
    before = len(offline._NAMES)
    for _ in range(8):
        OfflineClassifier.train(["refund please", "cancel now", "refund it", "cancel it"],
                                ["a", "b", "a", "b"]).classify(["refund"])
        gc.collect()
        model = OfflineClassifier.train(["card arrived late", "card never came",
                                         "money back now", "money returned please"],
                                        ["card", "card", "money", "money"])
        (answer,) = model.classify(["card late"])
        assert answer.category == "card"
        assert answer.rationale and all(w in "card late" for r in answer.rationale
                                        for w in r.replace("…", "").replace("+", " ").split()
                                        ), answer.rationale
    del model
    gc.collect()
    assert len(offline._NAMES) <= before  # a model's names go with it
