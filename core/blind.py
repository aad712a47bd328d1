"""The blind test ("can YOU guess which ones are cancerous?"): trial order, scoring and the exact
binomial p-value. Pure logic: no I/O, no torch, no UI.

Two modes:
- "class": generated patches of a class-conditional run, shown one at a time; the person says
  cancerous or non-cancerous. Correct answers above chance mean the model draws the classes apart.
- "real-vs-generated": pairs of one real and one generated patch side by side; the person says which
  one is generated. Correct answers above chance mean the generated patches are recognisable.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from fractions import Fraction

from core.labels import LABEL_NAMES

CLASS_MODE = "class"
PAIR_MODE = "real-vs-generated"
MODES = (CLASS_MODE, PAIR_MODE)
CLASS_NAMES = LABEL_NAMES  # answers in class mode, indexed by PCam label
SIDES = ("a", "b")  # left, right


def binomial_tail(correct: int, n: int, p: float | Fraction = Fraction(1, 2)) -> float:
    """One-sided exact binomial p-value P(X >= correct) for X ~ Binomial(n, p).

    Computed with exact rational arithmetic (math.comb and Fraction) and rounded once at the end,
    so 10/10 at p = 1/2 is exactly 1/1024. `correct` <= 0 gives 1.0."""
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    if not 0 <= correct <= n:
        raise ValueError(f"correct must be in [0, {n}], got {correct}")
    p = Fraction(p)
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    q = 1 - p
    tail = sum(math.comb(n, k) * p**k * q ** (n - k) for k in range(correct, n + 1))
    return float(tail)


def p_value(correct: int, n: int) -> float:
    """P(X >= correct | chance guessing, p = 0.5): how surprising the score is for a coin flipper."""
    return binomial_tail(correct, n, Fraction(1, 2))


def verdict(correct: int, n: int, alpha: float = 0.05) -> str:
    """A one-line reading of the score for a person, not a statistician."""
    if n == 0:
        return "no answers"
    p = p_value(correct, n)
    if p < alpha:
        return f"better than chance (p = {p:.3g} < {alpha})"
    return f"consistent with guessing (p = {p:.3g} >= {alpha})"


def class_trials(per_class: int, seed: int) -> list[tuple[int, int]]:
    """(class label, index within that class) for `per_class` samples of each class, shuffled
    with a seeded RNG so the same seed gives the same order."""
    if per_class <= 0:
        raise ValueError(f"per_class must be positive, got {per_class}")
    trials = [(label, i) for label in (0, 1) for i in range(per_class)]
    random.Random(seed).shuffle(trials)
    return trials


def pair_sides(n: int, seed: int) -> list[str]:
    """For each of n pairs, the side ('a' left, 'b' right) that shows the generated patch; a seeded
    shuffle of a balanced list, so neither side is the safe bet."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    sides = [SIDES[i % 2] for i in range(n)]
    random.Random(seed).shuffle(sides)
    return sides


@dataclass
class BlindSession:
    """The answers of one test as it goes: `truths` are the right answers in order
    (a class name for the class mode, the generated side for the pair mode)."""

    mode: str
    truths: list[str]
    answers: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown blind-test mode {self.mode!r}")

    @property
    def n(self) -> int:
        return len(self.truths)

    @property
    def position(self) -> int:
        return len(self.answers)

    @property
    def done(self) -> bool:
        return len(self.answers) >= len(self.truths)

    def answer(self, value: str) -> bool:
        """Record the answer to the current trial; returns whether it was right."""
        if self.done:
            raise ValueError("the test is over")
        allowed = CLASS_NAMES if self.mode == CLASS_MODE else SIDES
        if value not in allowed:
            raise ValueError(f"answer must be one of {allowed}, got {value!r}")
        self.answers.append(value)
        return value == self.truths[len(self.answers) - 1]

    @property
    def correct(self) -> int:
        return sum(a == t for a, t in zip(self.answers, self.truths))

    @property
    def p_value(self) -> float:
        return p_value(self.correct, self.position)

    def record(self, **extra) -> dict:
        """The answers as stored with the result (JSON-ready)."""
        key = "truth" if self.mode == CLASS_MODE else "generated"
        return dict(extra, trials=[{key: t, "answer": a, "correct": a == t}
                                   for t, a in zip(self.truths, self.answers)])
