"""Process-wide Prometheus metrics that every front end feeds: the REST API's ``/metrics`` serves
this registry, and a chat answer is counted once whether it came from the Chat tab, the CLI or
the API."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

registry = CollectorRegistry()

CHAT_TTFT_SECONDS = Histogram(
    "garden_chat_time_to_first_token_seconds",
    "Seconds from a chat request to its first generated token",
    ["backend"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
    registry=registry,
)
CHAT_TOKENS_PER_SECOND = Histogram(
    "garden_chat_tokens_per_second",
    "Generation speed of chat answers",
    ["backend"],
    buckets=(1, 5, 10, 20, 50, 100, 200, 500, 1000),
    registry=registry,
)


def observe_answer(backend: str, ttft_s: float | None, tokens_per_second: float | None) -> None:
    """Count one finished answer's time to first token and speed (plain values: this module
    sits below every service and imports none)."""
    if ttft_s is not None:
        CHAT_TTFT_SECONDS.labels(backend).observe(ttft_s)
    if tokens_per_second is not None:
        CHAT_TOKENS_PER_SECOND.labels(backend).observe(tokens_per_second)
