"""Time-ordered ids: the two-characters-per-lookup encoding is Crockford base32 exactly
as the character-by-character one was, and ids of one millisecond stay in order."""

from __future__ import annotations

import random

from baton import ids
from baton.ids import UlidIds, _b32, _b32_80


def test_the_random_part_is_encoded_as_before() -> None:
    rng = random.Random(19)
    for v in [0, 1, 31, 32, 1023, 1024, 2**79, 2**80 - 1,
              *(rng.getrandbits(80) for _ in range(5000))]:
        assert _b32_80(v) == _b32(v, 16), v


def test_ids_are_the_time_then_the_random_part_in_order(monkeypatch: object) -> None:
    gen = UlidIds()
    clock = iter([1_700_000_000.0001, 1_700_000_000.0002, 1_700_000_000.0003, 1_700_000_001.5])
    monkeypatch.setattr(ids.time, "time", lambda: next(clock))  # type: ignore[attr-defined]
    made = [gen.new("run") for _ in range(4)]
    assert made == sorted(made)
    assert all(m.startswith("run_") and len(m) == 4 + 26 for m in made)
    assert {m[4:14] for m in made[:3]} == {_b32(1_700_000_000_000, 10)}  # one millisecond
    assert made[3][4:14] == _b32(1_700_000_001_500, 10)
    alphabet = ids._ALPHABET
    rands = [sum(alphabet.index(c) << (5 * (15 - i)) for i, c in enumerate(m[14:]))
             for m in made]
    assert rands[1] == rands[0] + 1 and rands[2] == rands[1] + 1  # +1 within a millisecond
