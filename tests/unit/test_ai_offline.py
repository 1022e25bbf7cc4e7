"""The offline classifier (``baton.ai.offline``): what its features read, and that a trained
model answers with a category, a confidence and a rationale a person can use."""

from __future__ import annotations

import pytest

from baton.ai.offline import FEW, OfflineClassifier, normalise, stem, stemmed, word_pairs
from baton.errors import BatonError

TEXTS = {
    "card_arrival": ["my card has not arrived yet", "when will my new card arrive",
                     "still waiting for the card you sent", "the card did not arrive in the post"],
    "top_up_failed": ["my top up failed", "the top-up did not go through",
                      "why was my top up declined", "I can't top up, it fails every time"],
    "refund": ["I want a refund for this purchase", "how do I get my money back",
               "refund the payment please", "the merchant refused my refund"],
}


def train() -> OfflineClassifier:
    texts = [t for ts in TEXTS.values() for t in ts]
    labels = [label for label, ts in TEXTS.items() for _ in ts]
    return OfflineClassifier.train(texts, labels)


def test_normalise_spells_out_contractions_and_drops_punctuation() -> None:
    assert normalise("I CAN'T top-up: £25.00 won't go!") == "i ca not top up 00 00 wo not go"
    assert normalise("I’m   waiting") == "i am waiting"


def test_stems_fold_inflections_together() -> None:
    assert stem("charged") == stem("charges") == stem("charge")
    assert stem("refunded") == stem("refunds") == "refund"
    assert stemmed("I was charged twice for Cards!") == "i was charg twice for card"


def test_word_pairs_are_every_pair_of_distinct_stems_wherever_they_stand() -> None:
    assert word_pairs("Top up failed, top up!") == ["fail~top", "fail~up", "top~up"]
    assert word_pairs("cards charged") == word_pairs("charge on the card")[:1] == ["card~charg"]
    assert word_pairs("a") == []
    many = " ".join(f"w{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(100))
    pairs = word_pairs(many)
    assert len(pairs) == 40 * 39 // 2  # bounded: the text's first 40 distinct words
    assert "waa~wbn" in pairs and not any("wdv" in p for p in pairs)


def test_a_trained_model_answers_with_confidence_and_a_usable_rationale() -> None:
    assert sum(len(ts) for ts in TEXTS.values()) < FEW  # the few-examples model (logistic regression)
    (answer,) = train().classify(["The top up I made this morning failed again"])
    assert answer.category == "top_up_failed"
    assert answer.ranking[0] == ("top_up_failed", answer.confidence)
    assert 1 / 3 < answer.confidence <= 1
    assert sum(p for _, p in answer.ranking) == pytest.approx(1, abs=1e-3)
    assert answer.rationale and len(answer.rationale) <= 5
    assert any("top" in r or "fail" in r for r in answer.rationale), answer.rationale
    stop = {"the", "i", "this", "again", "for the", "was"}
    assert not any(r in stop for r in answer.rationale), answer.rationale


def test_a_previous_training_is_not_read_when_the_encoder_is_not_used() -> None:
    """``train(earlier=...)`` asks for a previous version's vectors only when it encodes:
    with few texts (and ``[ai] encoder_few`` off) it does not, so nothing is read."""
    def earlier() -> None:
        raise AssertionError("read a previous training's vectors it does not use")

    texts = [t for ts in TEXTS.values() for t in ts]
    labels = [c for c, ts in TEXTS.items() for _ in ts]
    model = OfflineClassifier.train(texts, labels, earlier=earlier)
    assert model.reused == 0 and model.encoder_name is None


def test_word_pairs_show_in_the_rationale_as_two_words() -> None:
    (answer,) = train().classify(["money back refund"])
    assert answer.category == "refund"
    assert all("~" not in r for r in answer.rationale), answer.rationale


def test_the_rationale_shows_the_texts_own_words_not_their_stems() -> None:
    (answer,) = train().classify(["my refunded money is arriving back"])
    assert answer.category == "refund"
    shown = " ".join(answer.rationale)
    assert "refunded" in shown or "money" in shown, answer.rationale
    assert "arriv " not in f"{shown} " and "refund " not in f"{shown} ", answer.rationale


def test_training_needs_two_categories_and_as_many_labels_as_texts() -> None:
    with pytest.raises(BatonError, match="at least two categories"):
        OfflineClassifier.train(["a", "b"], ["x", "x"])
    with pytest.raises(BatonError, match="2 texts but 1 labels"):
        OfflineClassifier.train(["a", "b"], ["x"])


def test_a_trained_sets_texts_are_hashed_once_and_give_the_same_fingerprint() -> None:
    """A step's model is found by the fingerprint of every text it is trained on; with a
    trained classifier, the set's part is hashed once (kept on it), the step's added."""
    from baton.ai.offline import fingerprint, hasher
    from baton.ai.trained import TrainingSet

    trained = TrainingSet("t", 1, ("my card is late", "refund me"), ("card", "refund"))
    step_texts, step_labels = ["where is my parcel"], ["parcel"]
    whole = fingerprint([*trained.texts, *step_texts], [*trained.labels, *step_labels])
    assert fingerprint(step_texts, step_labels, trained.hasher) == whole
    assert fingerprint(step_texts, step_labels, trained.hasher) == whole  # start not consumed
    assert trained.hasher is trained.hasher  # (made once)
    assert fingerprint([], [], hasher(trained.texts, trained.labels)) == \
        fingerprint(trained.texts, trained.labels)
