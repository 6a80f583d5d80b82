"""Load, on loopback only, bounded in count and time: 20 concurrent chat sessions through the
app's Gradio API on the vLLM backend for 20 s (each session asks several times). Figures measured on a shared machine are noisy:
they are reported, not asserted. (A second training job queueing behind a running one, from
the app and the CLI at once, is tests/faults/test_integrity.py.)"""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningApp

SESSIONS = 20
DURATION_S = 20.0
MAX_NEW_TOKENS = 24
LOAD_TIMEOUT_S = 600.0
ANSWER_TIMEOUT_S = 240.0
QUESTIONS = ["Name a fruit.", "What colour is grass?", "Say hello.", "Count to three."]


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _respond_args(model: str, message: str) -> tuple[Any, ...]:
    """The inputs of the Chat tab's send event, in its API order (see ``view_api``)."""
    # model, backend, compare, model B, chat A, chat B, message, system prompt, temperature,
    # top-p, top-k, max new tokens, repetition penalty, seed, stop strings, then the remote
    # endpoint's base URL, API key, model and "use for Model A", then the tool schemas
    return (
        model,
        "vllm",
        False,
        model,
        [],
        [],
        message,
        "",
        0.0,
        0.9,
        50,
        MAX_NEW_TOKENS,
        1.0,
        0,
        "",
        "",
        "",
        None,
        False,
        "",
    )


def _wait_for_vllm(client: Any, model: str) -> str:
    client.predict(model, "vllm", False, model, api_name="/load")
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        status, _ = client.predict(model, "vllm", False, model, api_name="/poll")
        if "served by **vllm**" in status:
            return status
        assert "❌" not in status, status
        time.sleep(2)
    raise AssertionError(f"vLLM did not load in {LOAD_TIMEOUT_S:.0f} s: {status}")


class Session(threading.Thread):
    """One user: asks, waits for the whole streamed answer, asks again, until the end time."""

    def __init__(self, url: str, model: str, number: int, until: float) -> None:
        super().__init__(name=f"chat-session-{number}", daemon=True)
        self.url, self.model, self.number, self.until = url, model, number, until
        self.ttfts: list[float] = []
        self.answers = 0
        self.failures: list[str] = []

    def run(self) -> None:
        from gradio_client import Client

        try:
            client = Client(self.url, verbose=False)
        except Exception as exc:  # a refused connection is a failed request
            self.failures.append(f"connect: {exc}")
            return
        turn = 0
        while time.monotonic() < self.until:
            question = QUESTIONS[(self.number + turn) % len(QUESTIONS)]
            turn += 1
            self.ask(client, question)

    def ask(self, client: Any, question: str) -> None:
        started = time.monotonic()
        first: float | None = None
        last: tuple[Any, ...] | None = None
        try:
            job = client.submit(*_respond_args(self.model, question), api_name="/respond")
            for output in job:
                last = output
                chat_a = output[0] or []
                if (
                    first is None
                    and chat_a
                    and _text(chat_a[-1])
                    and chat_a[-1]["role"] == "assistant"
                ):
                    first = time.monotonic() - started
            job.result(timeout=ANSWER_TIMEOUT_S)
        except Exception as exc:
            self.failures.append(f"{question!r}: {type(exc).__name__}: {exc}")
            return
        stats = str(last[3]) if last else ""
        answer = _text(last[0][-1]) if last and last[0] else ""
        if first is None or not answer.strip() or "❌" in stats or answer.startswith("⚠️"):
            self.failures.append(f"{question!r}: answer {answer[:80]!r}, stats {stats[:120]!r}")
            return
        self.ttfts.append(first)
        self.answers += 1


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_20_concurrent_chat_sessions_on_vllm(
    app: RunningApp, default_model_path: Path, tmp_path: Path
) -> None:
    """On the session's shared app (and its vLLM engine), carbon metering on, as users run it."""
    from gradio_client import Client

    assert app.url.startswith("http://127.0.0.1:")
    client = Client(app.url, verbose=False)
    model = default_model_path.name
    loaded_at = time.monotonic()
    status = _wait_for_vllm(client, model)
    load_s = time.monotonic() - loaded_at
    until = time.monotonic() + DURATION_S
    sessions = [Session(app.url, model, n, until) for n in range(SESSIONS)]
    for session in sessions:
        session.start()
    for session in sessions:
        session.join(timeout=DURATION_S + ANSWER_TIMEOUT_S + 60)
    assert not any(session.is_alive() for session in sessions), "a session did not stop"
    ttfts = [t for session in sessions for t in session.ttfts]
    failures = [f for session in sessions for f in session.failures]
    figures = {
        "sessions": SESSIONS,
        "duration_s": DURATION_S,
        "max_new_tokens": MAX_NEW_TOKENS,
        "vllm_load_s": round(load_s, 1),
        "answers": len(ttfts),
        "failed_requests": len(failures),
        "ttft_p50_s": round(statistics.median(ttfts), 3) if ttfts else None,
        "ttft_p95_s": round(_percentile(ttfts, 0.95), 3) if ttfts else None,
        "ttft_max_s": round(max(ttfts), 3) if ttfts else None,
        "status": status,
        "failures": failures[:10],
    }
    out = tmp_path / "chat_load.json"
    out.write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"\nchat load ({out}): {json.dumps(figures, ensure_ascii=False)}")
    assert not failures, failures[:5]
    assert len(ttfts) >= SESSIONS  # every session got at least one whole answer
