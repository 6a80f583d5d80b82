"""Startup benchmark: seconds from launching app.py to the first HTTP 200, and `import garden.ui`.

Run: `uv run python bench/startup.py`. The last line is JSON:
{"ui_http_ready_s": …, "import_ui_s": …, "torch_imported_by_ui": false}
"""

from __future__ import annotations

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


def main() -> None:
    load_before = benchenv.load_now()
    with tempfile.TemporaryDirectory(prefix="garden-bench-") as tmp:
        imports = [time_import_ui() for _ in range(RUNS)]
        ready = [time_http_ready(Path(tmp) / "storage") for _ in range(RUNS)]
    import_s = sorted(s for s, _ in imports)[RUNS // 2]
    ready_s = sorted(ready)[RUNS // 2]
    torch_loaded = any(flag for _, flag in imports)
    print(
        f"import garden.ui      median of {RUNS}: {import_s:.2f} s (torch imported: {torch_loaded})"
    )
    print(
        f"app.py to HTTP 200    median of {RUNS}: {ready_s:.2f} s  (runs: {', '.join(f'{r:.2f}' for r in ready)})"
    )
    print(
        json.dumps(
            {
                "ui_http_ready_s": round(ready_s, 2),
                "import_ui_s": round(import_s, 2),
                "torch_imported_by_ui": torch_loaded,
                **benchenv.conditions(load_before),
            }
        )
    )


if __name__ == "__main__":
    main()
