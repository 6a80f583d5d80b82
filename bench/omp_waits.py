"""Two torch processes on the same cores: libgomp's spinning waits against passive ones.

torch's CPU kernels run on libgomp, whose threads spin at a barrier before they sleep. When two
multi-threaded torch processes share the cores, a thread spins while its sibling waits for a core
that the other process holds. This bench trains the default model (forward + backward + AdamW on
random tokens, bf16 autocast where the CPU has bf16) in fresh processes and reports seconds per
step, after one warm-up step, for:

- ``alone``: one process with the CPU's threads, libgomp's default waits;
- ``alone_passive``: the same with ``OMP_WAIT_POLICY=PASSIVE``;
- ``pair``: two such processes at once, default waits;
- ``pair_passive``: two at once, both passive;
- ``pair_one_thread``: two at once, one thread each.

The ratios are each pair's slower process against ``alone``. The test suite's xdist workers wait
passively because of this (tests/conftest.py; docs/benchmarks.md).

    uv run python bench/omp_waits.py [--steps 4] [--batch 4] [--tokens 128]

The last line is one JSON object: seconds per step per setting, the ratios, and the machine's
conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import benchenv

STEP_SCRIPT = """
import sys, time, torch
from transformers import AutoModelForCausalLM
from garden.engine.training.backends import cpu_supports_bf16
threads, path, steps, batch, tokens = int(sys.argv[1]), sys.argv[2], *map(int, sys.argv[3:6])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
ids = torch.randint(0, 1000, (batch, tokens))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
dtype = torch.bfloat16 if cpu_supports_bf16() else torch.float32
def step():
    with torch.autocast("cpu", dtype=dtype, enabled=dtype == torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
step()  # warm-up
start = time.perf_counter()
for _ in range(steps):
    step()
print((time.perf_counter() - start) / steps)
"""


def _run_together(
    count: int, threads: int, extra_env: dict[str, str], args: argparse.Namespace, model: str
) -> list[float]:
    """Seconds per step of ``count`` step processes started together."""
    # libgomp's default waits: the variable unset, whatever the calling shell set.
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env.update(extra_env)
    command = [sys.executable, "-c", STEP_SCRIPT, str(threads), model]
    command += [str(args.steps), str(args.batch), str(args.tokens)]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]
    outputs = [process.communicate()[0] for process in processes]
    for process in processes:
        if process.returncode != 0:
            raise SystemExit(f"a step process failed with exit code {process.returncode}")
    return [round(float(out.decode().strip().splitlines()[-1]), 3) for out in outputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    before = benchenv.load_now()

    from garden.engine.serving.parallel import usable_cpus
    from garden.models import prepare_default_model

    model = str(prepare_default_model())
    cores = usable_cpus()
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}
    settings: dict[str, tuple[int, int, dict[str, str]]] = {
        "alone": (1, cores, {}),
        "alone_passive": (1, cores, passive),
        "pair": (2, cores, {}),
        "pair_passive": (2, cores, passive),
        "pair_one_thread": (2, max(1, cores // 2), {}),
    }
    seconds: dict[str, list[float]] = {}
    for name, (count, threads, env) in settings.items():
        seconds[name] = _run_together(count, threads, env, args, model)
        print(f"{name:16} {threads} threads  s/step {seconds[name]}", flush=True)
    alone = seconds["alone"][0]
    ratios = {
        name: round(max(seconds[name]) / alone, 2) for name in settings if name.startswith("pair")
    }
    for name, ratio in ratios.items():
        print(f"{name:16} slower process {ratio:.2f}x the time of one process alone")
    summary: dict[str, Any] = {
        "bench": "omp_waits",
        "torch_threads": cores,
        "steps": args.steps,
        "batch": [args.batch, args.tokens],
        "seconds_per_step": seconds,
        "ratio_to_alone": ratios,
        **benchenv.conditions(before),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
