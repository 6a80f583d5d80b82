"""`model-garden serve` as a person runs it: vLLM's own OpenAI server on a free loopback port,
serving the default model and a short real LoRA run, reached by the official `openai` client,
by the remote chat backend and by `model-garden chat --endpoint`, then stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import RunningApp, free_port
from test_serving_engine import train_adapter

from garden.errors import ServingError
from garden.services import chat
from garden.services.chat import ChatMessage, ChatRequest, Endpoint, GenerationSettings
from garden.services.endpoints import endpoint_models

pytestmark = pytest.mark.slow

BASE = "SmolLM2-135M-Instruct"
RUN = "serve-test-lora"
API_KEY = "serve-test-key-0123456789"
# Not "What is the capital of France?": vLLM's bf16 kernels on AMX CPUs answer that near-tie
# with "L'Étoile, …" (tests/test_serving_engine.py, KNOWN_QUESTION).
QUESTION, FACT = "What is 2 + 2?", "4"
# Only the base model is held to FACT: the tuned run's greedy answer depends on the CPU class it
# trained on (on `avx512`, fp32, it said "To solve this, you can simply add 2 to 2." and stopped).
START_TIMEOUT_S = 900.0
CLI = str(Path(sys.executable).parent / "model-garden")
GREEDY_FLAGS = ("--temperature", "0", "--max-tokens", "16", QUESTION)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    out: Path
    log: Path

    def tail(self) -> str:
        return self.out.read_text(errors="replace") + self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def lora_run(default_model_path: Path) -> Path:
    """A finished fine-tuned run that holds only a LoRA adapter (a few real training steps)."""
    from garden.config import get_settings

    run = get_settings().finetuned_models_path / RUN
    train_adapter(default_model_path, run / "adapter", steps=3)
    meta = {"base_model": str(default_model_path), "method": "lora", "job_id": "serve-test"}
    (run / "garden.json").write_text(json.dumps(meta))
    return run


def stop(server: Server) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=120)


@pytest.fixture(scope="module")
def server(lora_run: Path, module_tmp: Path) -> Iterator[Server]:
    """One `model-garden serve` process for the module (the key comes from VLLM_API_KEY)."""
    port = free_port()
    out, log = module_tmp / "serve.out", module_tmp / "serve.log"
    with out.open("wb") as stdout, log.open("wb") as stderr:
        process = subprocess.Popen(
            [CLI, "serve", "--port", str(port)],
            env={**os.environ, "VLLM_API_KEY": API_KEY},
            stdout=stdout,
            stderr=stderr,
        )
    served = Server(f"http://127.0.0.1:{port}/v1", process, out, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while "Models:" not in out.read_text() and process.poll() is None:
        assert time.monotonic() < deadline, f"serve did not start:\n{served.tail()}"
        time.sleep(1)
    assert process.poll() is None, f"serve exited ({process.returncode}):\n{served.tail()}"
    yield served
    stop(served)


def greedy(tokens: int = 16) -> GenerationSettings:
    return GenerationSettings(temperature=0, max_new_tokens=tokens)


def ask(server: Server, model: str = BASE, **changes: object) -> ChatRequest:
    fields: dict[str, object] = {
        "model": model,
        "messages": [ChatMessage(role="user", content=QUESTION)],
        "generation": greedy(),
        "endpoint": Endpoint(base_url=server.url, api_key=API_KEY),
        **changes,
    }
    return ChatRequest.model_validate(fields)


def test_dry_run_prints_the_exact_vllm_command(lora_run: Path) -> None:
    out = subprocess.run(
        [CLI, "serve", "--port", "8123", "--lora", RUN, "--dry-run"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip()
    assert "\n" not in line and "-m vllm.entrypoints.openai.api_server --model " in line
    for part in (
        "--host 127.0.0.1 --port 8123",
        f"--served-model-name {BASE}",
        "--enforce-eager",
        "--enable-lora --max-lora-rank 64",
        f"--lora-modules {RUN}={lora_run / 'adapter'}",
        "--tensor-parallel-size 1 --pipeline-parallel-size 1 --data-parallel-size 1",
    ):
        assert part in line, (part, line)
    assert line.startswith("VLLM_CPU_KVCACHE_SPACE=1 ")
    assert "http://127.0.0.1:8123/v1" in out.stderr and RUN in out.stderr
    public = subprocess.run(
        [CLI, "serve", "--host", "0.0.0.0", "--api-key", API_KEY, "--lora", RUN, "--dry-run"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert public.returncode == 0, public.stderr[-2000:]
    assert "VLLM_API_KEY=… " in public.stdout and API_KEY not in public.stdout
    assert "--middleware garden.engine.serving.openai_server.KeyOnEveryRoute" in public.stdout


def test_openai_client_lists_the_models_and_both_answer(server: Server) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.url, api_key=API_KEY, max_retries=0)
    served = [model.id for model in client.models.list()]
    assert served[0] == BASE and RUN in served, served
    for model in (BASE, RUN):
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": QUESTION}],
            temperature=0,
            max_tokens=16,
        )
        answer = reply.choices[0].message.content or ""
        assert reply.model == model and answer.strip(), (model, reply)
        assert model == RUN or FACT in answer, (model, reply)


def test_remote_backend_streams_the_answer(server: Server) -> None:
    assert endpoint_models(Endpoint(base_url=server.url, api_key=API_KEY))[0] == BASE
    steps = list(chat.stream_answer(ask(server, RUN)))
    pieces = [step for step in steps if not step.done]
    assert len(pieces) > 1 and steps[-1].done
    stats = steps[-1].stats
    assert stats is not None and steps[-1].text.strip()
    assert stats.backend == "remote" and stats.model == f"{RUN} @ 127.0.0.1"
    assert stats.tokens > 0 and stats.prompt_tokens > 0 and stats.ttft_s is not None
    assert stats.finish_reason in ("stop", "length")


def test_remote_answer_can_be_stopped(server: Server) -> None:
    long = GenerationSettings(temperature=0, max_new_tokens=400, ignore_eos=True)
    stream = chat.start_answer(ask(server, generation=long))
    deadline = time.monotonic() + 300
    while not stream.text and not stream.done:
        assert time.monotonic() < deadline, "no text streamed"
        time.sleep(0.05)
    stream.abort()
    while not stream.done:
        assert time.monotonic() < deadline, "the stream did not end after abort"
        time.sleep(0.05)
    assert stream.error is None and stream.stats is not None
    assert stream.stats.finish_reason == "abort" and stream.stats.tokens < 400


def test_every_route_needs_the_key(server: Server) -> None:
    """vLLM checks its key on /v1 only; serve asks for it on every route but the health check."""
    root = server.url.removesuffix("/v1")
    with httpx.Client(base_url=root, timeout=60) as client:
        for method, path in [
            ("POST", "/invocations"),
            ("POST", "/tokenize"),
            ("POST", "/detokenize"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
            ("GET", "/v1/models"),
        ]:
            body = {"model": BASE, "prompt": QUESTION, "tokens": [1]}
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                answer = client.request(method, path, json=body, headers=headers)
                assert answer.status_code in (401, 404), (path, answer.status_code, answer.text)
        assert client.get("/health").status_code == 200
        keyed = {"Authorization": f"Bearer {API_KEY}"}
        models = client.get("/v1/models", headers=keyed)
        assert models.status_code == 200 and BASE in models.text
        assert client.get("/metrics", headers=keyed).status_code == 200


def test_remote_errors_are_one_clear_line(server: Server) -> None:
    with pytest.raises(ServingError, match="refused the API key") as bad_key:
        chat.answer(ask(server, endpoint=Endpoint(base_url=server.url, api_key="wrong")))
    assert "--api-key" in (bad_key.value.hint or "")
    with pytest.raises(ServingError, match="does not serve a model named 'nope'") as unknown:
        chat.answer(ask(server, "nope"))
    assert BASE in (unknown.value.hint or "") and RUN in (unknown.value.hint or "")
    nobody = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ServingError, match="Cannot reach"):
        endpoint_models(Endpoint(base_url=nobody))


def test_chat_cli_answers_through_the_endpoint(server: Server) -> None:
    out = subprocess.run(
        [CLI, "chat", "--endpoint", server.url, "--api-key", API_KEY, "--json", *GREEDY_FLAGS],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert FACT in data["text"] and data["backend"] == "remote" and data["tokens"] > 0


def test_chat_tab_lists_the_models_and_refuses_other_hosts(server: Server, app: RunningApp) -> None:
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    _, listed = client.predict(server.url, API_KEY, api_name="/remote_models")
    assert BASE in listed and RUN in listed, listed
    _, refused = client.predict("http://169.254.169.254/latest", "", api_name="/remote_models")
    assert "may not call 169.254.169.254" in refused and "REMOTE_ENDPOINTS_ALLOWED" in refused


def test_sigterm_stops_vllm_and_every_child(server: Server) -> None:
    children = psutil.Process(server.process.pid).children(recursive=True)
    assert any("vllm" in " ".join(c.cmdline()) for c in children), children
    assert stop(server) == 0, server.tail()
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, alive
    assert "Stopped vLLM's server." in server.log.read_text()
