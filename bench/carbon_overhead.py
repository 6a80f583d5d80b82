"""Carbon meter overhead: the same short CPU LoRA training run with and without a CarbonMeter.

Runs are interleaved (without, with, without, with, …) in one process on the real default
model, so both sides see the same machine load. The meter is used as the training engine
uses it: started before the first step, ``snapshot()`` after every step, stopped at the end,
with the configured tracking interval (CARBON_TRACKING_INTERVAL, default 15 s) and records
persisted to a throw-away store. Reported: wall time and process CPU time (which includes the
meter's own threads) per run, medians, and the overhead ratio ``with / without - 1``.

Run: `uv run python bench/carbon_overhead.py [--rounds 3] [--steps 6]`. The last line is JSON:
{"with_meter_s": …, "without_meter_s": …, "overhead": …, …}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchenv

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "assets" / "datasets" / "garden_facts.jsonl"


def meter_own_cost(settings: object, seconds: float) -> float:
    """CPU seconds per wall second that a running meter costs this process, measured while
    the process is otherwise idle (process CPU with a meter minus without, same duration)."""
    from garden.engine.carbon import CarbonMeter

    def idle(metered: bool) -> float:
        meter = CarbonMeter(kind="training", ref_id="bench-idle", settings=settings)
        if metered:
            meter.start()
        cpu0 = time.process_time()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            time.sleep(1.0)
            if metered:
                meter.snapshot()
        cpu = time.process_time() - cpu0
        if metered:
            meter.stop()
        return cpu

    base = idle(False)
    return max(idle(True) - base, 0.0) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    load_before = benchenv.load_now()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("STORAGE_ROOT", tempfile.mkdtemp(prefix="carbon-bench-"))
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from garden.config import get_settings
    from garden.engine.carbon import CarbonMeter
    from garden.models import prepare_default_model

    settings = get_settings()
    model_path = prepare_default_model()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0)
    )
    texts = []
    for line in FACTS.read_text(encoding="utf-8").splitlines()[: args.batch]:
        messages = json.loads(line)["messages"]
        texts.append(f"Q: {messages[0]['content']}\nA: {messages[1]['content']}")
    batch = tokenizer(
        texts, return_tensors="pt", padding=True, truncation=True, max_length=args.max_length
    )
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def run(metered: bool) -> tuple[float, float, float]:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        meter = CarbonMeter(kind="training", ref_id="bench", label="bench", settings=settings)
        if metered:
            meter.start()
        for _ in range(args.steps):
            loss = model(**batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if metered:
                meter.snapshot()
        energy = 0.0
        if metered:
            energy = meter.stop().energy_kwh or 0.0
        return time.perf_counter() - wall0, time.process_time() - cpu0, energy

    run(False)  # warm-up: first-step allocations and kernels
    CarbonMeter(kind="other", settings=settings, persist=False).start().stop()  # warm caches
    with_wall, without_wall, with_cpu, without_cpu, energies = [], [], [], [], []
    for round_index in range(args.rounds):
        order = (False, True) if round_index % 2 == 0 else (True, False)
        for metered in order:
            wall, cpu, energy = run(metered)
            (with_wall if metered else without_wall).append(wall)
            (with_cpu if metered else without_cpu).append(cpu)
            if metered:
                energies.append(energy)
            print(
                f"round {round_index + 1} {'with   ' if metered else 'without'} meter: "
                f"{wall:6.2f} s wall, {cpu:6.2f} s CPU"
                + (f", {energy * 1000:.4f} Wh attributed" if metered else ""),
                flush=True,
            )
    start = time.perf_counter()
    probe = CarbonMeter(kind="other", settings=settings, persist=False).start()
    start_s = time.perf_counter() - start
    probe.stop()
    meter_cpu_per_s = meter_own_cost(settings, seconds=args.idle_seconds)
    paired = [w / wo - 1 for w, wo in zip(with_wall, without_wall, strict=True)]

    w, wo = statistics.median(with_wall), statistics.median(without_wall)
    wc, woc = statistics.median(with_cpu), statistics.median(without_cpu)
    overhead = w / wo - 1
    cpu_overhead = wc / woc - 1
    print(f"median wall: with {w:.2f} s, without {wo:.2f} s -> overhead {overhead:+.2%}")
    print(f"median CPU:  with {wc:.2f} s, without {woc:.2f} s -> overhead {cpu_overhead:+.2%}")
    train_cpu_per_s = statistics.median(
        c / w for c, w in zip(without_cpu, without_wall, strict=True)
    )
    direct = meter_cpu_per_s / train_cpu_per_s
    print(f"paired per-round wall overheads: {', '.join(f'{p:+.2%}' for p in paired)}")
    print(
        f"meter's own CPU while idle (one snapshot per second): {meter_cpu_per_s * 1000:.2f} ms "
        f"per second = {direct:.3%} of the training's {train_cpu_per_s:.2f} CPU-s per second"
    )
    print(f"meter start (warm caches): {start_s:.2f} s; target overhead <= 2 %")
    print(
        json.dumps(
            {
                "with_meter_s": round(w, 3),
                "without_meter_s": round(wo, 3),
                "overhead": round(overhead, 4),
                "cpu_overhead": round(cpu_overhead, 4),
                "paired_overhead_median": round(statistics.median(paired), 4),
                "meter_cpu_share": round(direct, 5),
                "meter_start_s": round(start_s, 3),
                "rounds": args.rounds,
                "steps": args.steps,
                "tracking_interval_s": settings.carbon_tracking_interval,
                "energy_wh_per_run": round(statistics.median(energies) * 1000, 6),
                **benchenv.conditions(load_before),
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
