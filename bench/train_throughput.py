"""Training throughput on the CPU: our engine's path vs a plain TRL SFTTrainer, side by side.

Same model (the embedded default), same data (garden_facts), same LoRA rank, same number of
optimizer steps and batch size, same max sequence length. Both count trained (non-padding)
tokens and time the steps after the first (warm-up). The ceiling is a matmul measured in this
run, before and after training (the better of the two), in the precision our trainer uses on
this machine (``precision=auto``: bf16 where the CPU has AVX-512 BF16 or AMX, fp32 elsewhere;
``ceiling_precision`` in the JSON), divided by ~6 FLOPs per parameter per trained token. A bf16
matmul on a CPU without bf16 is emulated and slower than fp32, so a bf16 ceiling there is
meaningless. 6 per parameter counts a weight gradient for every weight; a LoRA step skips
the frozen weights' and our LM head skips unlabelled positions, so the bench also counts the
matmul FLOPs one step of each side really does (``bench/flop_count.py``, a short extra run of
each after the timed ones) and prints the matmul GFLOP/s each side sustained while training as a
fraction of the machine's (``ours_matmul_fraction``, ``baseline_matmul_fraction``): the share of
the machine's matmul speed that is turned into work, which 6 per parameter overstates.

    uv run python bench/train_throughput.py [--steps 5] [--batch-size 8] [--max-seq-len 256]
                                            [--lora-dropout P] [--profile] [--ceiling-only]
                                            [--compile] [--rounds N]
                                            [--int8-matmuls auto|on|off]

Both sides train the same LoRA, dropout included: by default the dropout a job gets (0.05, what
every preset trains with); ``--lora-dropout`` sets another for both, e.g. 0, PEFT's own default.
Until 2026-12-06 the bench used 0 on both sides; then, in JSON lines without
``baseline_lora_dropout``, ours used 0.05 and the baseline 0: those compare different recipes.
``--rounds N`` runs the baseline and ours alternately N times and takes each side's median, so
a host that slows for a minute moves both sides (the rounds are in the JSON). Every run, timed
or counted, is a fresh process (``in_fresh_process``): our engine patches TRL and PEFT for
the whole process (the fused LoRA forward and dropout, the CPU LM head), and until 2026-12-07
the baseline's rounds after the first ran in the process ours had patched, so they timed TRL
with our LoRA layers and LM head; only round 1's baseline was plain TRL.
Where our side trains in fp32 it multiplies the frozen weights in int8 (``int8_matmuls``, the
job default since 2026-12-07; ``ours_int8_matmuls`` in the JSON); ``--int8-matmuls off`` times
it in fp32 throughout.
``--ceiling-only`` measures only the matmul ceiling (seconds, no training: a smoke check).
``--compile`` also runs our path with ``torch_compile`` (the decoder layers compiled; its first
step, which compiles, is the untimed warm-up like every run's) and reports its ratio too.
``--profile`` prints the top operators (self CPU time) of two steps of our path (torch.profiler);
its own overhead then lowers our tok/s, so take throughput from a run without it.

The last line is one JSON object with the figures.
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
import flop_count

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "assets" / "datasets" / "garden_facts.jsonl"


def make_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Tokens and seconds of every step after the first."""

        def __init__(self) -> None:
            self.t0 = 0.0
            self.tokens0 = 0
            self.t_end = 0.0
            self.tokens_end = 0

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            if state.global_step == 1:
                self.t0, self.tokens0 = now, int(state.num_input_tokens_seen)
            self.t_end, self.tokens_end = now, int(state.num_input_tokens_seen)

        @property
        def tokens_per_second(self) -> float:
            seconds = self.t_end - self.t0
            return (self.tokens_end - self.tokens0) / seconds if seconds > 0 else 0.0

    return StepTimer()


def make_profiler(rows: int = 12):
    from transformers import TrainerCallback

    class StepProfiler(TrainerCallback):
        """torch.profiler over optimizer steps 2 and 3; prints the top operators by self CPU time."""

        def __init__(self) -> None:
            self.profiler: Any = None

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:
                from torch.profiler import ProfilerActivity, profile

                self.profiler = profile(activities=[ProfilerActivity.CPU])
                self.profiler.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if self.profiler is not None and state.global_step == 3:
                self.profiler.__exit__(None, None, None)
                table = self.profiler.key_averages().table(
                    sort_by="self_cpu_time_total", row_limit=rows
                )
                print(table, flush=True)
                self.profiler = None

    return StepProfiler()


def matmul_gflops(dtype_name: str = "bfloat16", size: int = 2048, seconds: float = 3.0) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - start) / 1e9


MATMUL_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def trainer_precision() -> tuple[str, str]:
    """The precision our trainer picks with ``precision=auto`` on this CPU, and why (its own
    decision, not a copy of it)."""
    from garden.engine.training.backends import choose_precision

    return choose_precision("auto", "cpu")


def ceiling(
    gflop_per_token: float, seconds: float = 3.0, samples: list[float] | None = None
) -> dict[str, Any]:
    """Tokens/s a matmul in the trainer's precision would allow, with the precision named.

    ``samples`` are earlier timings of the same matmul in this run (GFLOP/s): the ceiling is the
    best of them and this one, since a ceiling is what the machine could do, and a shared host
    sometimes runs a 3-second sample at half speed."""
    precision, reason = trainer_precision()
    gflops = [*(samples or []), matmul_gflops(MATMUL_DTYPES[precision], seconds=seconds)]
    best = max(gflops)
    return {
        "ceiling_precision": precision,
        "ceiling_precision_reason": reason,
        "ceiling_matmul_gflops": round(best, 1),
        "ceiling_matmul_gflops_samples": [round(g, 1) for g in gflops],
        "ceiling_tok_s": round(best / gflop_per_token, 1),
    }


def rows(n: int) -> list[dict]:
    base = [json.loads(line) for line in FACTS.read_text().splitlines() if line.strip()]
    return [base[i % len(base)] for i in range(n)]


def bench_context(
    spec: Any,
    model_path: str,
    out: Path,
    precision: str,
    device: str = "cpu",
    emit: Any = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A ``TrainContext`` for ``spec`` that writes no outputs (checkpoints under ``out``)."""
    from garden.engine.training.backends import TrainContext

    return TrainContext(
        job_id="bench",
        spec=spec,
        model_path=model_path,
        train_path=Path(spec.dataset),
        eval_path=None,
        data_format="openai",
        output_dir=out / "out",
        checkpoint_dir=out / "ckpt",
        resume_from=None,
        device=device,
        precision=precision,
        emit=emit or (lambda event: None),
        should_stop=lambda: False,
        extra={"callbacks": callbacks or [], "skip_outputs": True},
    )


def run_ours(
    model_path: str,
    data: Path,
    args: argparse.Namespace,
    work: Path,
    backend: str = "trl_peft",
    device: str = "cpu",
    torch_compile: bool = False,
    lora_dropout: float | None = None,
    extra_callbacks: list[Any] | None = None,
) -> dict:
    """Our engine's tok/s; ``lora_dropout`` None is the job default every preset trains with."""
    from garden.engine.training import JobSpec
    from garden.engine.training.backends import choose_precision, run_backend

    precision, _ = choose_precision("auto", device)
    timer = make_timer()
    spec = JobSpec(
        name="bench",
        dataset=str(data),
        backend=backend,
        max_steps=args.steps,
        epochs=1,
        batch_size=args.batch_size,
        learning_rate=2e-4,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        max_seq_len=args.max_seq_len,
        lora_dropout=job_lora_dropout(lora_dropout),
        torch_compile=torch_compile,
        int8_matmuls={"auto": None, "on": True, "off": False}[
            getattr(args, "int8_matmuls", "auto")
        ],
        assistant_only_loss=True,
        checkpoint_interval=10_000,
        save_total_limit=1,
    )
    callbacks = [timer, make_profiler()] if args.profile else [timer]
    callbacks += extra_callbacks or []
    ctx = bench_context(spec, model_path, work / "ours", precision, device, callbacks=callbacks)
    started = time.perf_counter()
    outcome = run_backend(backend, ctx)
    from garden.engine.training import int8_frozen

    return {
        "tok_s": timer.tokens_per_second,
        "precision": precision,
        "int8_matmuls": int8_frozen.chosen(spec, device, precision),
        "lora_dropout": spec.lora_dropout,
        "steps": outcome.steps,
        "first_step_s": round(timer.t0 - started, 1),
    }


def _fresh_child(function: Any, *args: Any, **kwargs: Any) -> Any:
    import psutil
    import torch

    torch.set_num_threads(psutil.cpu_count(logical=False) or 1)
    return function(*args, **kwargs)


def in_fresh_process(function: Any, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` in a new interpreter (spawned, with this one's environment):
    nothing one side patches reaches the other."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_fresh_child, function, *args, **kwargs).result()


def counted_side(
    side: str, model_path: str, data: Path, args: argparse.Namespace, work: Path, dropout: float
) -> dict[str, Any]:
    """One side's counted matmul work (``flop_count``) from a short run of it."""
    counter = flop_count.make_flop_counter()
    run = run_ours if side == "ours" else run_baseline
    run(model_path, data, args, work, lora_dropout=dropout, extra_callbacks=[counter])
    return {"gflop_per_token": counter.gflop_per_token, "by_operator": counter.by_operator}


def median_run(runs: list[dict]) -> dict:
    """The first run's figures with the rounds' median tok/s (the mean of the middle two of an
    even count)."""
    return {**runs[0], "tok_s": statistics.median(run["tok_s"] for run in runs)}


def count_flops(
    model_path: str, data: Path, args: argparse.Namespace, work: Path, lora_dropout: float
) -> dict[str, Any]:
    """Each side's counted matmul work per trained token, from one short extra run of each
    (``flop_count.COUNTED_STEP`` steps; its step is slowed by the counting, so never timed)."""
    short = argparse.Namespace(**{**vars(args), "steps": flop_count.COUNTED_STEP, "profile": False})
    return {
        side: in_fresh_process(counted_side, side, model_path, data, short, work, lora_dropout)
        for side in ("ours", "baseline")
    }


def matmul_work(counted: dict[str, Any], tok_s: dict[str, float], gflops: float) -> dict:
    """The JSON's counted-work figures: GFLOP per token, the matmul GFLOP/s each side sustained
    while training, and that as a fraction of the machine's matmul speed."""
    figures: dict[str, Any] = {}
    for side in ("ours", "baseline"):
        per_token = counted[side]["gflop_per_token"]
        if per_token is None:
            continue
        figures[f"{side}_gflop_per_token_counted"] = round(per_token, 4)
        figures[f"{side}_matmul_gflops_sustained"] = round(per_token * tok_s[side], 1)
        figures[f"{side}_matmul_fraction"] = round(per_token * tok_s[side] / gflops, 3)
        figures[f"{side}_gflop_per_token_by_operator"] = counted[side]["by_operator"]
    return figures


def job_lora_dropout(requested: float | None) -> float:
    """``requested``, or the job default every preset trains with."""
    from garden.engine.training import JobSpec

    default: float = JobSpec.model_fields["lora_dropout"].default
    return default if requested is None else requested


def run_baseline(
    model_path: str,
    data: Path,
    args: argparse.Namespace,
    work: Path,
    lora_dropout: float,
    extra_callbacks: list[Any] | None = None,
) -> dict:
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    timer = make_timer()
    config = SFTConfig(
        output_dir=str(work / "baseline"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        max_length=args.max_seq_len,
        bf16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model_path,
        args=config,
        train_dataset=load_dataset("json", data_files=str(data), split="train"),
        peft_config=LoraConfig(
            r=16, lora_alpha=32, lora_dropout=lora_dropout, target_modules="all-linear"
        ),
        callbacks=[timer, *(extra_callbacks or [])],
    )
    trainer.train()
    return {"tok_s": timer.tokens_per_second}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=256)
    parser.add_argument(
        "--lora-dropout",
        type=float,
        default=None,
        help="both sides' LoRA dropout (default: the job default every preset trains with)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the baseline and ours alternately this many times; each side's median counts",
    )
    parser.add_argument(
        "--int8-matmuls",
        choices=["auto", "on", "off"],
        default="auto",
        help="our side's int8_matmuls (auto: the job default, int8 frozen weights in fp32 runs)",
    )
    parser.add_argument("--profile", action="store_true", help="print our path's top operators")
    parser.add_argument("--compile", action="store_true", help="also run ours with torch_compile")
    parser.add_argument(
        "--ceiling-only", action="store_true", help="measure only the matmul ceiling (smoke check)"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    load_before = benchenv.load_now()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import psutil
    import torch

    from garden.models import prepare_default_model

    torch.set_num_threads(psutil.cpu_count(logical=False) or 1)
    model_path = str(prepare_default_model())
    from transformers import AutoModelForCausalLM

    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_path).parameters())
    gflop_per_token = 6 * n_params / 1e9
    if args.ceiling_only:
        top = ceiling(gflop_per_token, seconds=1.0)
        print(
            f"ceiling: {top['ceiling_precision']} matmul {top['ceiling_matmul_gflops']} GFLOP/s "
            f"-> {top['ceiling_tok_s']} tok/s ({top['ceiling_precision_reason']})"
        )
        figures = {**top, "gflop_per_token": round(gflop_per_token, 3)}
        print(json.dumps({**figures, **benchenv.conditions(load_before)}))
        return

    with tempfile.TemporaryDirectory(prefix="garden-bench-") as tmp:
        work = Path(tmp)
        data = work / "train.jsonl"
        data.write_text(
            "".join(json.dumps(r) + "\n" for r in rows(args.steps * args.batch_size * 8))
        )
        top = ceiling(gflop_per_token)
        timed = {MATMUL_DTYPES[top["ceiling_precision"]]: top["ceiling_matmul_gflops"]}
        bf16 = timed.get("bfloat16") or matmul_gflops("bfloat16")
        fp32 = timed.get("float32") or matmul_gflops("float32")
        print(
            f"matmul: bf16 {bf16:.0f} GFLOP/s, fp32 {fp32:.0f} GFLOP/s; the trainer uses "
            f"{top['ceiling_precision']} here ({top['ceiling_precision_reason']})",
            flush=True,
        )
        lora_dropout = job_lora_dropout(args.lora_dropout)
        baselines, ours_runs = [], []
        for round_no in range(1, args.rounds + 1):
            baselines.append(
                in_fresh_process(run_baseline, model_path, data, args, work, lora_dropout)
            )
            print(
                f"round {round_no}: baseline (TRL defaults, fp32, no packing): "
                f"{baselines[-1]['tok_s']:.1f} tok/s",
                flush=True,
            )
            ours_runs.append(
                in_fresh_process(run_ours, model_path, data, args, work, lora_dropout=lora_dropout)
            )
            print(
                f"round {round_no}: ours ({ours_runs[-1]['precision']}"
                f"{', int8 frozen weights' if ours_runs[-1]['int8_matmuls'] else ''}, "
                "packed, padding-free): "
                f"{ours_runs[-1]['tok_s']:.1f} tok/s",
                flush=True,
            )
        baseline = median_run(baselines)
        ours = median_run(ours_runs)
        compiled = None
        if args.compile:
            compiled = in_fresh_process(
                run_ours,
                model_path,
                data,
                args,
                work,
                torch_compile=True,
                lora_dropout=lora_dropout,
            )
            print(
                f"ours with torch_compile: {compiled['tok_s']:.1f} tok/s after a first step of "
                f"{compiled['first_step_s']} s (uncompiled: {ours['first_step_s']} s)",
                flush=True,
            )
        top = ceiling(gflop_per_token, samples=top["ceiling_matmul_gflops_samples"])
        print(
            f"ceiling: {top['ceiling_precision']} matmul, best of "
            f"{top['ceiling_matmul_gflops_samples']} GFLOP/s (before and after training)",
            flush=True,
        )
        work_done = matmul_work(
            count_flops(model_path, data, args, work, lora_dropout),
            {"ours": ours["tok_s"], "baseline": baseline["tok_s"]},
            top["ceiling_matmul_gflops"],
        )
        for side in ("ours", "baseline"):
            if f"{side}_gflop_per_token_counted" in work_done:
                print(
                    f"counted matmul work, {side}: "
                    f"{work_done[f'{side}_gflop_per_token_counted']} GFLOP per trained token "
                    f"(6 per parameter: {gflop_per_token:.3f}), "
                    f"{work_done[f'{side}_matmul_gflops_sustained']} GFLOP/s = "
                    f"{work_done[f'{side}_matmul_fraction']:.0%} of the matmul",
                    flush=True,
                )

    figures = {
        "ours_tok_s": round(ours["tok_s"], 1),
        "ours_precision": ours["precision"],
        "ours_int8_matmuls": ours["int8_matmuls"],
        "baseline_tok_s": round(baseline["tok_s"], 1),
        "ratio": round(ours["tok_s"] / baseline["tok_s"], 2) if baseline["tok_s"] else None,
        **top,
        "ceiling_fraction": round(ours["tok_s"] / top["ceiling_tok_s"], 3)
        if top["ceiling_tok_s"]
        else None,
        **(
            {
                "compiled_tok_s": round(compiled["tok_s"], 1),
                "compiled_ratio": round(compiled["tok_s"] / baseline["tok_s"], 2),
                "compiled_ceiling_fraction": round(compiled["tok_s"] / top["ceiling_tok_s"], 3),
                "compiled_first_step_s": compiled["first_step_s"],
                "first_step_s": ours["first_step_s"],
            }
            if compiled and baseline["tok_s"] and top["ceiling_tok_s"]
            else {}
        ),
        **work_done,
        "rounds": args.rounds,
        "baseline_tok_s_rounds": [round(r["tok_s"], 1) for r in baselines],
        "ours_tok_s_rounds": [round(r["tok_s"], 1) for r in ours_runs],
        "bf16_matmul_gflops": round(bf16, 1),
        "fp32_matmul_gflops": round(fp32, 1),
        "gflop_per_token": round(gflop_per_token, 3),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "max_seq_len": args.max_seq_len,
        "lora_dropout": lora_dropout,
        "baseline_lora_dropout": lora_dropout,
        "threads": torch.get_num_threads(),
    }
    print(
        f"ratio ours/baseline: {figures['ratio']}x; ours = {figures['ceiling_fraction']:.0%} "
        f"of the {top['ceiling_precision']} ceiling ({figures['ceiling_tok_s']} tok/s, "
        f"CPU class {benchenv.cpu_description()['cpu_class']})"
    )
    llama = {"llama_cpp": "not measured (no llama.cpp fine-tuning comparison in this script)"}
    print(json.dumps({**figures, **llama, **benchenv.conditions(load_before)}))


if __name__ == "__main__":
    main()
