"""A hub base model is sized from the hub's metadata before any download (issue 20, item 4).

The hub here is a small HTTP server on loopback that answers the model-info route as the hub
does (``HF_ENDPOINT`` points ``huggingface_hub`` at it); nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

GB = 1024**3
MODELS = {
    "org/small": [("model.safetensors", GB // 2), ("pytorch_model.bin", GB // 2)],
    "org/mid": [("model-00001.safetensors", GB), ("model-00002.safetensors", GB // 2)],
    "org/huge": [("model-00001.safetensors", 15 * GB), ("model-00002.safetensors", 15 * GB)],
}


class FakeHubHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0].removeprefix("/api/models/")
        repo = "/".join(path.split("/")[:2])
        if repo not in MODELS:
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "Repository not found"}')
            return
        body = {
            "id": repo,
            "sha": "0" * 40,
            "siblings": [{"rfilename": name, "size": size} for name, size in MODELS[repo]]
            + [{"rfilename": "config.json", "size": 700}],
        }
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


CHECK = """
import sys
from garden.config import Settings
from garden.errors import GardenError
from garden.hub_weights import check_download

settings = Settings(_env_file=None, public_demo=sys.argv[2] == "demo")
try:
    check_download(sys.argv[1], settings)
    print("ok")
except GardenError as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


def check(hub: str, tmp_path: Path, hub_id: str, mode: str = "local") -> str:
    env = {
        **os.environ,
        "HF_ENDPOINT": hub,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache: every model needs a download
    }
    done = subprocess.run(
        [sys.executable, "-c", CHECK, hub_id, mode], env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_a_hub_model_is_sized_before_its_download(hub: str, tmp_path: Path) -> None:
    assert check(hub, tmp_path, "org/small") == "ok"  # 0.5 GB of safetensors; the .bin is skipped
    assert check(hub, tmp_path, "org/mid") == "ok"
    refused = check(hub, tmp_path, "org/huge")
    assert refused.startswith("ModelLoadError: org/huge has 30.0 GB of weights, over the 20 GB")
    assert "MAX_BASE_MODEL_GB" in refused and "\n" not in refused
    demo = check(hub, tmp_path, "org/mid", "demo")  # a public demo allows 1 GB
    assert demo.startswith("ModelLoadError: org/mid has 1.5 GB of weights, over the 1 GB"), demo
    missing = check(hub, tmp_path, "org/missing")
    assert missing.startswith("ModelLoadError: Cannot read the size of org/missing"), missing
