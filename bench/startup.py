"""Startup benchmark: seconds from launching app.py to the first HTTP 200, `import garden.ui`,
the cold start of the vLLM chat backend in a fresh process, phase by phase, and CLI commands
that need no model (`data inspect` of a one-row file, `jobs list`) beside `python -c pass`.

Run: `uv run python bench/startup.py [--skip-vllm] [--cli-only] [--storage DIR]`. The last line
is JSON: {"ui_http_ready_s": …, "import_ui_s": …, "torch_imported_by_ui": false,
"vllm_cold_start_s": …, "cli_s": {"python -c pass": …, "data inspect (1 row)": …, …}}
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchenv
import httpx

ROOT = Path(__file__).resolve().parent.parent
RUNS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_import_ui() -> tuple[float, bool]:
    code = (
        "import sys, time, json; t = time.perf_counter(); import garden.ui; "
        "print(json.dumps([time.perf_counter() - t, 'torch' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, torch_loaded = json.loads(out.stdout.strip().splitlines()[-1])
    return float(seconds), bool(torch_loaded)


def time_http_ready(storage: Path) -> float:
    port = free_port()
    env = {**os.environ, "API_PORT": str(port), "STORAGE_ROOT": str(storage)}
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"app.py exited with {process.returncode} before answering")
    finally:
        process.terminate()
        process.wait(timeout=30)


def time_cli(storage: Path, scratch: Path) -> dict[str, float]:
    """Median wall seconds of CLI commands in fresh processes, beside a bare interpreter's start.

    The default model is prepared first (untimed: a first start only) so that `data inspect`
    measures reading, validating and counting tokens, not the conversion."""
    env = {**os.environ, "STORAGE_ROOT": str(storage), "HF_HUB_OFFLINE": "1"}
    prepare = "from garden.models import prepare_default_model; prepare_default_model()"
    subprocess.run([sys.executable, "-c", prepare], env=env, check=True, capture_output=True)
    one_row = scratch / "one_row.jsonl"
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    one_row.write_text(json.dumps({"messages": turns}) + "\n", encoding="utf-8")
    cli = [sys.executable, "-m", "garden.cli"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "model-garden --version": [*cli, "--version"],
        "data inspect (1 row)": [*cli, "data", "inspect", str(one_row)],
        "jobs list": [*cli, "jobs", "list"],
    }
    medians: dict[str, float] = {}
    for name, command in commands.items():
        runs = []
        for _ in range(RUNS):
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            runs.append(time.perf_counter() - started)
        medians[name] = round(sorted(runs)[RUNS // 2], 2)
    return medians


# Run in a fresh interpreter: vLLM's cold start as the Chat tab pays it, imports included. The
# app imports torch (not vLLM); the host process imports both and builds the engine.
VLLM_COLD_START = """
import json, os, sys, time
t0 = time.perf_counter()
import torch
t_torch = time.perf_counter()
from garden.engine.serving.vllm import VllmBackend
from garden.models import prepare_default_model
if __name__ == "__main__":
    path = prepare_default_model()
    t_model = time.perf_counter()
    backend = VllmBackend(str(path), enable_lora=False, architectures=["LlamaForCausalLM"])
    backend.start()
    t_ready = time.perf_counter()
    backend.shutdown()
    print(json.dumps({
        "import_torch_s": round(t_torch - t0, 2),
        "host_start_s": round(t_ready - t_model, 2),
        "total_s": round(t_ready - t0 - (t_model - t_torch), 2),
    }))
"""


def time_vllm_cold_start(storage: Path) -> dict[str, float]:
    """Seconds to a served vLLM engine in a fresh process (the model preparation excluded)."""
    script = storage.parent / "vllm_cold_start.py"
    script.write_text(VLLM_COLD_START, encoding="utf-8")
    env = {
        **os.environ,
        "STORAGE_ROOT": str(storage),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=900
    )
    if out.returncode != 0:
        raise RuntimeError(f"vLLM cold start failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-vllm", action="store_true", help="skip the vLLM cold start")
    parser.add_argument("--cli-only", action="store_true", help="time the CLI commands only")
    parser.add_argument("--storage", type=Path, help="a storage root whose default model is ready")
    args = parser.parse_args()
    load_before = benchenv.load_now()
    with tempfile.TemporaryDirectory(prefix="garden-bench-") as tmp:
        storage = args.storage or Path(tmp) / "storage"
        cli = time_cli(storage, Path(tmp))
        for name, seconds in cli.items():
            print(f"{name:<26} median of {RUNS}: {seconds:.2f} s")
        if args.cli_only:
            print(json.dumps({"cli_s": cli, **benchenv.conditions(load_before)}))
            return
        imports = [time_import_ui() for _ in range(RUNS)]
        ready = [time_http_ready(storage) for _ in range(RUNS)]
        vllm = {} if args.skip_vllm else time_vllm_cold_start(storage)
    import_s = sorted(s for s, _ in imports)[RUNS // 2]
    ready_s = sorted(ready)[RUNS // 2]
    torch_loaded = any(flag for _, flag in imports)
    print(
        f"import garden.ui      median of {RUNS}: {import_s:.2f} s (torch imported: {torch_loaded})"
    )
    print(
        f"app.py to HTTP 200    median of {RUNS}: {ready_s:.2f} s  (runs: {', '.join(f'{r:.2f}' for r in ready)})"
    )
    if vllm:
        print(
            f"vLLM cold start        {vllm['total_s']:.2f} s (target ≤30 s): import torch "
            f"{vllm['import_torch_s']} s, host start {vllm['host_start_s']} s (the spawned host "
            "imports torch and vLLM, loads weights, allocates the KV cache, warms up)"
        )
    print(
        json.dumps(
            {
                "ui_http_ready_s": round(ready_s, 2),
                "import_ui_s": round(import_s, 2),
                "torch_imported_by_ui": torch_loaded,
                "vllm_cold_start_s": vllm.get("total_s"),
                "vllm_phases": vllm or None,
                "cli_s": cli,
                **benchenv.conditions(load_before),
            }
        )
    )


if __name__ == "__main__":
    main()
