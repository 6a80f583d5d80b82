"""A chat answer while a training run trains: alone, beside the run, and with the run paused.

Starts a real run of the default model on the bundled garden_facts (through the training service,
in a throwaway storage) and answers one greedy question (EOS ignored, so every answer makes the
same tokens) through the chat service: once before the run starts, then, while it trains, in
turns with ``chat_pauses_training`` off and on. For each answer it records TTFT, tok/s and the
run's steps during the answer; between answers it records the run's own pace (steps/s with no
answer streaming). It also meters the whole window with one more carbon meter (not stored) and
sets the machine's energy over it beside the energy the app credited to the run and to the chat
answers: what the run and the chat get must add up to no more than the machine spent, paused or
not. The last line is one JSON object with the figures side by side and the load.

    uv run python bench/chat_beside_training.py [--backend transformers] [--tokens 96] [--turns 2]

Run it on an idle machine: with two cores, the answer and the run are all the load there is.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import benchenv

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "assets" / "datasets" / "garden_facts.jsonl"
QUESTION = "Describe a vegetable garden in spring."


def _step(job_id: str, settings: Any) -> int:
    from garden.services import training

    return training.get(job_id, settings=settings).step


def _answer(job_id: str | None, settings: Any, backend: str, tokens: int) -> dict[str, Any]:
    """One answer through the chat service, with the run's steps over its window."""
    from garden.services import chat
    from garden.services.chat import ChatMessage, ChatRequest, GenerationSettings

    request = ChatRequest(
        backend=backend,
        messages=[ChatMessage(role="user", content=QUESTION)],
        generation=GenerationSettings(temperature=0, max_new_tokens=tokens, ignore_eos=True),
    )
    step_before = _step(job_id, settings) if job_id else None
    started = time.monotonic()
    stats = chat.answer(request, settings=settings).stats
    window_s = time.monotonic() - started
    figures: dict[str, Any] = {
        "backend": stats.backend,
        "tokens": stats.tokens,
        "ttft_s": stats.ttft_s,
        "tok_s": stats.tokens_per_second,
        "window_s": round(window_s, 2),
        "load": benchenv.load_now(),
    }
    if job_id is not None and step_before is not None:
        figures["run_steps_during"] = _step(job_id, settings) - step_before
    return figures


def _run_pace(job_id: str, settings: Any, seconds: float) -> float:
    """The run's steps per second over ``seconds`` with no answer streaming."""
    step_before = _step(job_id, settings)
    time.sleep(seconds)
    return round((_step(job_id, settings) - step_before) / seconds, 3)


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return round(statistics.fmean(values), 3) if values else None


def _ratio(part: float | None, whole: float | None) -> float | None:
    return round(part / whole, 2) if part is not None and whole else None


def _energy(rows: list[Any], machine: Any, started: float) -> dict[str, Any]:
    """The energy credited to the run and to the chat, against the machine's over the window."""
    machine_kwh = ((machine.data or {}).get("machine") or {}).get("energy_kwh")
    by_kind: dict[str, float] = {}
    for row in rows:
        if row.started_at >= started - 1 and row.energy_kwh is not None:
            by_kind[row.kind] = by_kind.get(row.kind, 0.0) + row.energy_kwh
    credited = sum(by_kind.values())
    return {
        "machine_wh": None if machine_kwh is None else round(machine_kwh * 1000, 4),
        "credited_wh": {kind: round(kwh * 1000, 4) for kind, kwh in by_kind.items()},
        "credited_share_of_machine": _ratio(credited, machine_kwh),
        "window_s": round(machine.duration_s or 0.0, 1),
        "power_source": machine.power_source,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="transformers", help="the chat backend to ask")
    parser.add_argument("--tokens", type=int, default=96, help="tokens in each answer")
    parser.add_argument("--turns", type=int, default=2, help="answers with the pause off, and on")
    parser.add_argument("--gap", type=float, default=12.0, help="seconds of training between")
    args = parser.parse_args()
    load_before = benchenv.load_now()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from garden.engine.carbon import CarbonMeter
    from garden.services import carbon, chat, training

    with tempfile.TemporaryDirectory(prefix="garden-chat-beside-") as tmp:
        settings = benchenv.private_storage(Path(tmp))
        window = CarbonMeter("other", label="bench window", settings=settings, persist=False)
        started = time.time()
        window.start()
        pausing = settings.model_copy(update={"chat_pauses_training": True})
        sharing = settings.model_copy(update={"chat_pauses_training": False})
        chat.wait_ready(None, args.backend, timeout=900, settings=settings)
        _answer(None, sharing, args.backend, 8)  # the engine's first-call costs, paid up front
        alone = _answer(None, sharing, args.backend, args.tokens)
        spec = training.build_spec(
            {"dataset": str(FACTS), "name": "beside-chat", "max_steps": 100_000, "batch_size": 2}
        )
        job = training.submit(spec, settings=settings)
        shared: list[dict[str, Any]] = []
        paused: list[dict[str, Any]] = []
        paces: list[float] = []
        try:
            while _step(job.id, settings) < 3:
                view = training.get(job.id, settings=settings)
                if view.status not in ("queued", "running"):
                    raise SystemExit(f"The run ended before the answers: {view.status}")
                time.sleep(0.5)
            for _ in range(args.turns):
                paces.append(_run_pace(job.id, settings, args.gap))
                shared.append(_answer(job.id, sharing, args.backend, args.tokens))
                paces.append(_run_pace(job.id, settings, args.gap))
                paused.append(_answer(job.id, pausing, args.backend, args.tokens))
        finally:
            training.cancel(job.id, settings=settings)
            ended = training.wait(job.id, timeout=120, settings=settings).status
            chat.shutdown()
            machine = window.stop()
        energy = _energy(carbon.report(since=started - 1, settings=settings).rows, machine, started)
        pauses = [
            line.message
            for line in training.logs(job.id, limit=1000, settings=settings)
            if line.message.startswith("Paused ")
        ]
    figures = {
        "bench": "chat_beside_training",
        "backend": args.backend,
        "tokens": args.tokens,
        "alone": alone,
        "beside_run": shared,
        "run_paused": paused,
        "run_steps_per_s_between_answers": paces,
        "tok_s_ratio_beside_run": _ratio(_mean(shared, "tok_s"), alone["tok_s"]),
        "tok_s_ratio_run_paused": _ratio(_mean(paused, "tok_s"), alone["tok_s"]),
        "ttft_s_beside_run": _mean(shared, "ttft_s"),
        "ttft_s_run_paused": _mean(paused, "ttft_s"),
        "run_log_pauses": pauses,
        "run_ended": ended,
        "energy": energy,
        **benchenv.conditions(load_before),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
