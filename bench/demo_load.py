"""A public demo under many REST clients (loopback only, bounded in count and time): what it
serves, what it refuses, what it holds meanwhile, and whether the owner's tab still answers.

It starts ``app.py`` as a public demo on a private storage, then ``--clients`` clients loop for
``--seconds``, each on one kind of request: a short chat, a job submit (a stranger may not
write), a 256 KB upload to Gradio, a ``/ws/jobs`` follow held 5 s, and the read routes. Beside
them the owner's Fine-tune tab refreshes through Gradio's queue every 2 s. The app's process
tree is sampled every 0.5 s (RSS, open fds, threads). The last line is one JSON object.

    uv run python bench/demo_load.py [--clients 50] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import benchenv
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

KINDS = ("chat", "submit", "upload", "follow", "read")
JOB_ID = "job-followed"
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "generation": {"max_new_tokens": 8}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_demo(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    settings = benchenv.private_storage(root)
    running_job(settings)
    port = free_port()
    env = {
        **os.environ,
        "PUBLIC_DEMO": "true",
        "STORAGE_ROOT": str(settings.storage_root),
        "MODELS_DIR": str(settings.models_path),
        "WARM_WORKERS": "false",
    }
    log = (root / "app.log").open("wb")
    app = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port)],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and app.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return app, url
        except httpx.TransportError:
            time.sleep(0.5)
    app.kill()
    raise SystemExit(f"the demo did not come up; see {root / 'app.log'}")


def running_job(settings: Any) -> None:
    """A run the app sees as owned by this live process, so its stream stays open."""
    from garden.engine.training.procs import process_started
    from garden.store import get_store, now

    get_store(settings.db_path).insert(
        "jobs",
        {
            "id": JOB_ID, "name": JOB_ID, "status": "running", "spec_json": {"dataset": "x"},
            "checkpoint_dir": str(settings.checkpoints_path / JOB_ID), "created_at": now(),
            "owner_pid": os.getpid(), "owner_started": process_started(os.getpid()),
        },
    )  # fmt: skip


async def one_request(kind: str, client: httpx.AsyncClient, ws_url: str) -> str:
    if kind == "chat":
        return str((await client.post("api/v1/chat", json=CHAT)).status_code)
    if kind == "submit":
        return str((await client.post("api/v1/training/jobs", json={"dataset": "x"})).status_code)
    if kind == "upload":
        files = {"files": ("rows.jsonl", b"x" * 256 * 1024)}
        return str((await client.post("gradio_api/upload", files=files)).status_code)
    if kind == "read":
        return str((await client.get("api/v1/training/jobs")).status_code)
    import websockets

    async with websockets.connect(f"{ws_url}ws/jobs/{JOB_ID}", open_timeout=10) as socket_:
        first = json.loads(await asyncio.wait_for(socket_.recv(), 10))
        if "job_id" not in first:  # the bound's one error line, then close code 1013
            return "refused"
        if first.get("final"):
            return f"ended {first.get('status')}"
        await asyncio.sleep(5)
    return "held"


async def visitor(kind: str, url: str, until: float, tally: Counter[tuple[str, str]]) -> None:
    ws_url = url.replace("http://", "ws://")
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        while time.monotonic() < until:
            try:
                outcome = await one_request(kind, client, ws_url)
            except Exception as exc:  # a failure to connect or read is an outcome too
                outcome = type(exc).__name__
            tally[(kind, outcome)] += 1


def sample_tree(pid: int, stop: threading.Event, peaks: dict[str, float]) -> None:
    import psutil

    root = psutil.Process(pid)
    while not stop.wait(0.5):
        try:
            tree = [root, *root.children(recursive=True)]
            rss = sum(p.memory_info().rss for p in tree)
            peaks["rss_gb"] = max(peaks.get("rss_gb", 0.0), rss / 2**30)
            peaks["app_fds"] = max(peaks.get("app_fds", 0), root.num_fds())
            peaks["app_threads"] = max(peaks.get("app_threads", 0), root.num_threads())
            peaks["processes"] = max(peaks.get("processes", 0), len(tree))
        except psutil.Error:
            continue


def owner_tab(url: str, stop: threading.Event, latencies: list[float], errors: list[str]) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    while not stop.wait(2.0):
        started = time.monotonic()
        try:
            client.predict("", api_name="/refresh_training")
            latencies.append(time.monotonic() - started)
        except Exception as exc:  # the figure is whether it answers
            errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    before = benchenv.load_now()
    with tempfile.TemporaryDirectory(prefix="demo-load-") as tmp:
        app, url = start_demo(Path(tmp))
        stop, peaks = threading.Event(), {}
        latencies: list[float] = []
        errors: list[str] = []
        watchers = [
            threading.Thread(target=sample_tree, args=(app.pid, stop, peaks)),
            threading.Thread(target=owner_tab, args=(url, stop, latencies, errors)),
        ]
        for watcher in watchers:
            watcher.start()
        tally: Counter[tuple[str, str]] = Counter()
        until = time.monotonic() + args.seconds

        async def crowd() -> None:
            kinds = [KINDS[i % len(KINDS)] for i in range(args.clients)]
            await asyncio.gather(*(visitor(kind, url, until, tally) for kind in kinds))

        asyncio.run(crowd())
        stop.set()
        for watcher in watchers:
            watcher.join()
        alive = app.poll() is None
        app.terminate()
        app.wait(60)
    outcomes = {kind: {k[1]: n for k, n in tally.items() if k[0] == kind} for kind in KINDS}
    print(
        json.dumps(
            {
                "clients": args.clients,
                "seconds": args.seconds,
                "outcomes": outcomes,
                "app_alive_after": alive,
                "peak_rss_gb": round(peaks.get("rss_gb", 0.0), 2),
                "peak_app_fds": peaks.get("app_fds"),
                "peak_app_threads": peaks.get("app_threads"),
                "peak_processes": peaks.get("processes"),
                "owner_tab_answers": len(latencies),
                "owner_tab_errors": errors[:3],
                "owner_tab_p50_s": round(statistics.median(latencies), 2) if latencies else None,
                "owner_tab_max_s": round(max(latencies), 2) if latencies else None,
                **benchenv.conditions(before),
            }
        )
    )


if __name__ == "__main__":
    main()
