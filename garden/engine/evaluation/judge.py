"""LLM-as-judge: an OpenAI-compatible model picks the better of base and tuned answers, each
pair judged in both orders so that the position of an answer does not decide."""

from __future__ import annotations

from garden.engine.evaluation.records import JudgeConfig, SidePair
from garden.engine.serving.remote import RemoteEndpoint, ask_once, endpoint_url, openai_client

VERDICT_PROMPT = """You compare two answers to the same question against a reference answer.

Question: {prompt}
Reference answer: {reference}

Answer A: {first}

Answer B: {second}

Which answer is better: closer to the reference, correct and helpful? Reply with exactly one
word: A, B or TIE."""


def _verdict(text: str) -> str:
    word = (text or "").strip().upper()
    if word.startswith("TIE"):
        return "TIE"
    return word[:1] if word[:1] in ("A", "B") else "TIE"


def win_rate(config: JudgeConfig, pairs: list[SidePair]) -> float | None:
    """The tuned answers' share of wins (a tie counts half); ``ServingError`` when the judge
    cannot be reached or refuses."""
    endpoint = RemoteEndpoint(endpoint_url(config.base_url), config.api_key or None)
    client = openai_client(endpoint)
    scores: list[float] = []
    for pair in pairs:
        for tuned_first in (True, False):
            first, second = (pair.tuned, pair.base) if tuned_first else (pair.base, pair.tuned)
            content = VERDICT_PROMPT.format(
                prompt=pair.prompt, reference=pair.reference, first=first, second=second
            )
            verdict = _verdict(ask_once(client, endpoint, config.model, content, max_tokens=4))
            tuned_letter = "A" if tuned_first else "B"
            scores.append(0.5 if verdict == "TIE" else float(verdict == tuned_letter))
    return sum(scores) / len(scores) if scores else None
