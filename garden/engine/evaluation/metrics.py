"""Text metrics of an answer against its reference: ROUGE-L (``rouge-score``), exact and
contains match after normalisation."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD-style)."""
    text = text.lower().translate(_PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


@lru_cache(maxsize=1)
def _scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(answer: str, reference: str) -> float:
    return float(_scorer().score(reference, answer)["rougeL"].fmeasure)


def exact_match(answer: str, reference: str) -> bool:
    return normalise(answer) == normalise(reference)


def contains_match(answer: str, reference: str) -> bool:
    expected = normalise(reference)
    return bool(expected) and expected in normalise(answer)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
