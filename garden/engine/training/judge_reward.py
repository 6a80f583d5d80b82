"""The ``judge`` reward of GRPO: an OpenAI-compatible model scores each completion 0 to 10
against a criterion (and the row's reference answer, when it has one).

The endpoint is the spec's own (``judge=URL|MODEL|CRITERION``; the web may name only the hosts
``services.endpoints.check_endpoint`` allows) or else the evaluation's judge, ``EVAL_JUDGE_URL``;
``EVAL_JUDGE_API_KEY`` is sent to that endpoint only. A batch's completions are judged a few at
a time; an unreachable judge or an answer without a score gives that completion 0 and a warning,
and a judge that fails on every completion of a step fails the run with one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from garden.config import Settings
from garden.errors import JobError

Log = Callable[[str, str], None]
Judged = tuple[str, str, str]  # the question, the answer, the reference answer

JUDGE_THREADS = 4
JUDGE_TIMEOUT_S = 60.0
DEFAULT_CRITERION = "The answer is correct, helpful and agrees with the reference answer."
SCORE_PROMPT = """You grade one answer to a question.

Question: {prompt}
Reference answer: {reference}

Answer: {completion}

Criterion: {criterion}

How well does the answer meet the criterion? Reply with one whole number from 0 (not at all)
to 10 (fully), and nothing else."""
NUMBER = re.compile(r"\d+(?:\.\d+)?")
YES_NO = re.compile(r"(yes|no)\b")
ENDPOINT_HINT = (
    "Set EVAL_JUDGE_URL (and EVAL_JUDGE_MODEL), or name the endpoint in the line: "
    "judge=URL|MODEL|CRITERION."
)


@dataclass(frozen=True)
class JudgeTarget:
    """Where a judge reward asks: an OpenAI-compatible base URL, its model, an optional key."""

    base_url: str
    model: str
    api_key: str | None = None


def default_judge(settings: Settings) -> JudgeTarget | None:
    """The evaluation's judge (``EVAL_JUDGE_URL``/``_MODEL``/``_API_KEY``); None when unset."""
    url = settings.eval_judge_url.strip()
    if not url:
        return None
    key = settings.eval_judge_api_key.get_secret_value().strip()
    return JudgeTarget(url, settings.eval_judge_model.strip() or "default", key or None)


def judge_target(url: str | None, model: str | None, default: JudgeTarget | None) -> JudgeTarget:
    """The endpoint a judge reward asks: ``url`` when given, else ``default``; the settings'
    key only goes to the settings' own URL."""
    if url:
        same = default is not None and default.base_url.rstrip("/") == url.rstrip("/")
        key = default.api_key if same and default is not None else None
        return JudgeTarget(url, model or "default", key)
    if default is None:
        raise JobError("A judge reward needs an endpoint, and none is set.", hint=ENDPOINT_HINT)
    return default


def parse_score(text: str) -> float | None:
    """A reply as a reward 0..1: its first number out of 10, or yes/no; None when neither."""
    reply = (text or "").strip().lower()
    if word := YES_NO.match(reply):
        return float(word.group(1) == "yes")
    found = NUMBER.search(reply)
    if found is None or float(found.group()) > 10:
        return None
    return float(found.group()) / 10


def judge_scorer(
    name: str, target: JudgeTarget, criterion: str | None = None, log: Log | None = None
) -> Callable[[list[Judged]], list[float]]:
    """Scores 0..1 for a batch of ``(question, answer, reference)`` texts, asking ``target``."""
    from garden.engine.serving.remote import (
        RemoteEndpoint,
        ask_once,
        endpoint_url,
        openai_client,
    )

    endpoint = RemoteEndpoint(endpoint_url(target.base_url), target.api_key)
    client = openai_client(endpoint).with_options(timeout=JUDGE_TIMEOUT_S)

    def score(judged: Judged) -> float:
        question, answer, reference = judged
        content = SCORE_PROMPT.format(
            prompt=question,
            reference=reference.strip() or "(none)",
            completion=answer,
            criterion=criterion or DEFAULT_CRITERION,
        )
        said = ask_once(client, endpoint, target.model, content, max_tokens=8)
        value = parse_score(said)
        if value is None:
            raise ValueError(f"the judge answered {said[:60]!r}, not a score from 0 to 10")
        return value

    def guarded(judged: Judged) -> float | str:
        try:
            return score(judged)
        except Exception as exc:  # one bad reply scores 0; the batch decides the run
            text = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            return " ".join(str(text).split())

    def scores(batch: list[Judged]) -> list[float]:
        with ThreadPoolExecutor(max_workers=max(1, min(JUDGE_THREADS, len(batch)))) as pool:
            results = list(pool.map(guarded, batch))
        failures = [result for result in results if isinstance(result, str)]
        if failures and len(failures) == len(results):
            raise JobError(
                f"The judge reward failed on all {len(results)} completions of a step: "
                f"{failures[0][:300]}",
                hint=f"Check that {endpoint.base_url} serves {target.model}. {ENDPOINT_HINT}",
            )
        if failures and log is not None:
            log(
                "WARNING",
                f"Judge reward {name}: {len(failures)} of {len(results)} completions scored 0 "
                f"({failures[0][:200]})",
            )
        return [0.0 if isinstance(result, str) else result for result in results]

    return scores
