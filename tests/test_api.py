"""The REST API of a running app, over HTTP (httpx) and WebSocket; the Gradio app still answers."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import RunningApp

FACTS_RUN = {"max_steps": 2, "batch_size": 2, "max_seq_len": 128, "eval_steps": 1}


@pytest.fixture(scope="module")
def client(app: RunningApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.url, timeout=600) as http:
        yield http


def assert_error(answer: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error", "hint"} and body["error"], body
    assert "Traceback" not in answer.text and "/tmp/" not in answer.text, body
    for needle in needles:
        assert needle in body["error"], body
    return body


def follow(app: RunningApp, job_id: str) -> list[dict[str, Any]]:
    """Every event the job's WebSocket sends, up to the final one."""
    from websockets.sync.client import connect

    events = []
    with connect(f"ws://127.0.0.1:{app.port}/ws/jobs/{job_id}", open_timeout=30) as socket:
        for message in socket:
            events.append(json.loads(message))
    return events


def assert_streams_are_bounded_per_client(app: RunningApp, job_id: str) -> None:
    """While the job is active: a client's ninth stream gets one error line and close code
    1013 (``WS_MAX_FOLLOWERS_PER_CLIENT`` is 8); a stream it closes frees its place."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{app.port}/ws/jobs/{job_id}"
    with contextlib.ExitStack() as open_streams:
        streams = [open_streams.enter_context(connect(url, open_timeout=30)) for _ in range(8)]
        assert all(json.loads(s.recv(timeout=30))["job_id"] == job_id for s in streams)
        with connect(url, open_timeout=30) as ninth:
            body = json.loads(ninth.recv(timeout=30))
            assert body["error"].startswith("This client already follows 8 jobs live"), body
            with pytest.raises(ConnectionClosed) as closed:
                ninth.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        streams.pop().close()
        deadline = time.monotonic() + 30
        while True:  # the server frees the place as soon as it sees the close
            with connect(url, open_timeout=30) as again:
                first = json.loads(again.recv(timeout=30))
            if "job_id" in first or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert first.get("job_id") == job_id, first


@pytest.mark.slow
def test_full_script_import_train_follow_chat_emissions(
    app: RunningApp, client: httpx.Client
) -> None:
    from gradio_client import Client

    imported = client.post(
        "api/v1/datasets",
        json={"source": {"kind": "bundled", "value": "garden_facts"}, "name": "facts-api"},
    )
    assert imported.status_code == 201, imported.text
    dataset = imported.json()
    assert dataset["rows"] > 100 and not dataset["path"].startswith("/")
    assert client.get(f"api/v1/datasets/{dataset['id']}").json()["name"] == "facts-api"
    assert "facts-api" in json.dumps(
        Client(app.url, verbose=False).predict(api_name="/data_refresh")
    )

    started = client.post(
        "api/v1/training/jobs", json={"dataset": "facts-api", "name": "api-run", **FACTS_RUN}
    )
    assert started.status_code == 201, started.text
    job_id = started.json()["job_id"]
    assert started.json()["job"]["id"] == job_id

    assert_streams_are_bounded_per_client(app, job_id)
    events = follow(app, job_id)
    final = events[-1]
    assert final["final"] and final["status"] == "completed", events
    assert [e for e in events if e["step"] >= 1], "no step reached the WebSocket"
    assert final["step"] == 2 and final["loss"] > 0 and final["eval_loss"] > 0
    assert final["energy_kwh"] > 0 and final["tokens_per_second"] > 0

    detail = client.get(f"api/v1/training/jobs/{job_id}").json()
    assert detail["job"]["status"] == "completed"
    assert [p["step"] for p in detail["metrics"] if p["loss"] is not None] == [1, 2]
    assert_error(client.post(f"api/v1/training/jobs/{job_id}/stop"), 409, "not running")

    model = client.get("api/v1/models/api-run").json()
    assert model["kind"] == "finetuned" and model["adapter_path"]
    chat = {
        "model": "api-run",
        "backend": "transformers",
        "messages": [{"role": "user", "content": "What is Moonwell Garden?"}],
        "generation": {"temperature": 0, "max_new_tokens": 8},
    }
    answer = client.post("api/v1/chat", json=chat)
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] and answer.json()["stats"]["tokens"] == 8
    with client.stream("POST", "api/v1/chat/stream", json=chat) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kinds = [
            line.removeprefix("event: ")
            for line in stream.iter_lines()
            if line.startswith("event: ")
        ]
    assert kinds[-1] == "done" and kinds.count("delta") >= 1, kinds

    exported = client.post("api/v1/exports", json={"model": "api-run", "format": "adapter"})
    assert exported.status_code == 201, exported.text
    done = exported.json()
    assert done["card"] and "adapter_model.safetensors" in done["files"]
    assert "/" not in done["download_url"].removeprefix("/api/v1/exports/files/")
    archive = client.get(done["download_url"].lstrip("/"))
    assert archive.status_code == 200 and archive.content[:2] == b"PK"

    rows = client.get("api/v1/emissions/records", params={"search": job_id}).json()
    assert [row["ref_id"] for row in rows] == [job_id]
    assert rows[0]["energy_kwh"] > 0 and rows[0]["emissions_kg"] > 0
    totals = client.get("api/v1/emissions/totals", params={"kind": "training"}).json()
    assert totals["runs"] >= 1 and totals["emissions_kg"] >= rows[0]["emissions_kg"]
    what_if = client.get("api/v1/emissions", params={"search": job_id, "whatif_country": "FRA"})
    assert what_if.json()["summary"]["whatif_emissions_kg"] is not None

    metrics = client.get("metrics").text
    assert f'garden_training_job_energy_kwh{{job_id="{job_id}"' in metrics
    assert 'garden_training_jobs{status="completed"}' in metrics
    assert "garden_chat_time_to_first_token_seconds_count" in metrics


def test_upload_inspect_import_get_delete(client: httpx.Client) -> None:
    rows = b"".join(
        json.dumps({"instruction": f"Say {n}", "output": f"{n}!"}).encode() + b"\n"
        for n in range(12)
    )
    upload = {"file": ("numbers.jsonl", rows, "application/jsonl")}
    report = client.post("api/v1/datasets/inspect", files=upload)
    assert report.status_code == 200, report.text
    assert report.json()["format"] == "alpaca" and report.json()["rows"] == 12
    assert not report.json()["source"].startswith("/")

    imported = client.post("api/v1/datasets/upload", files=upload, data={"name": "numbers-api"})
    assert imported.status_code == 201, imported.text
    dataset_id = imported.json()["id"]
    assert client.get("api/v1/datasets/numbers-api").json()["id"] == dataset_id
    assert dataset_id in [d["id"] for d in client.get("api/v1/datasets").json()]
    assert client.delete(f"api/v1/datasets/{dataset_id}").status_code == 200
    assert_error(client.get(f"api/v1/datasets/{dataset_id}"), 404, dataset_id)


def test_every_error_has_one_shape_and_its_status(client: httpx.Client) -> None:
    assert_error(client.get("api/v1/training/jobs/job-nope"), 404, "job-nope")
    assert_error(client.post("api/v1/training/jobs/job-nope/resume"), 404)
    assert_error(client.get("api/v1/datasets/ds-nope"), 404)
    assert_error(client.get("api/v1/models/org/nope"), 404)
    assert_error(client.get("api/v1/nothing-here"), 404)
    assert_error(client.post("api/v1/training/jobs", json={"name": "x"}), 422, "dataset")
    assert_error(client.post("api/v1/training/jobs", json={"dataset": "/etc/passwd"}), 400)
    rendezvous = {"dataset": "ds-nope", "num_machines": 2, "main_process_ip": "10.0.0.9"}
    rendezvous["main_process_port"] = 29500
    assert_error(client.post("api/v1/training/jobs", json=rendezvous), 400, "several machines")
    body = {"dataset": "ds-nope", "base_model": "/etc"}
    assert_error(client.post("api/v1/training/jobs", json=body), 400)
    compiled = {"dataset": "ds-nope", "torch_compile": True, "time_budget_s": 300}
    assert_error(client.post("api/v1/training/jobs", json=compiled), 422, "torch_compile")
    upload = {"source": {"kind": "upload", "value": "/etc/passwd"}, "name": "x"}
    assert_error(client.post("api/v1/datasets", json=upload), 422, "source.kind")
    hub = {"source": {"kind": "hub", "value": "../../etc"}, "name": "x"}
    assert_error(client.post("api/v1/datasets", json=hub), 400, "not a hub dataset id")
    bad = {"file": ("bad.jsonl", b"\x00\x01 not json", "application/jsonl")}
    assert_error(client.post("api/v1/datasets/inspect", files=bad), 400)
    chat = {"messages": [{"role": "user", "content": "hi"}], "generation": {"temperature": -1}}
    assert_error(client.post("api/v1/chat", json=chat), 422, "temperature")
    host_path = {"messages": chat["messages"], "model": "/etc/passwd"}
    assert_error(client.post("api/v1/chat", json=host_path), 404, "no chat model")
    assert_error(client.get("api/v1/emissions", params={"since": "not a date"}), 400)
    assert_error(client.post("api/v1/exports", json={"model": "nope", "format": "gguf"}), 404)
    export_base = {"model": "SmolLM2-135M-Instruct", "format": "adapter"}
    assert_error(client.post("api/v1/exports", json=export_base), 400, "adapter")
    for outside in ("../garden.db", "%2e%2e/garden.db", "nothing.zip"):
        assert_error(client.get(f"api/v1/exports/files/{outside}"), 404)


def test_a_run_is_planned_without_starting_it(client: httpx.Client) -> None:
    imported = client.post(
        "api/v1/datasets",
        json={"source": {"kind": "bundled", "value": "garden_facts"}, "name": "facts-plan"},
    )
    assert imported.status_code == 201, imported.text
    jobs_before = client.get("api/v1/training/jobs").json()
    answer = client.post(
        "api/v1/training/plan",
        params={"preset": "LoRA"},
        json={"dataset": "facts-plan", "name": "planned-only", "memory_limit_gb": 1},
    )
    assert answer.status_code == 200, answer.text
    planned = answer.json()
    assert planned["name"] == "planned-only" and planned["dataset"] == "facts-plan"
    assert planned["method"] == "lora" and planned["device"] == "cpu"
    memory = [note for note in planned["notes"] if note.startswith("Memory: about")]
    assert memory and memory[0].endswith(
        "of a 1.0 GB limit; gradient checkpointing on: activations are recomputed"
    )
    assert planned["gradient_checkpointing"] is True
    assert any("more memory than its 1.0 GB limit" in w for w in planned["warnings"])
    assert client.get("api/v1/training/jobs").json() == jobs_before  # nothing was queued
    assert_error(client.post("api/v1/training/plan", json={"dataset": "/etc/passwd"}), 400)
    assert_error(
        client.post("api/v1/training/plan", json={"dataset": "facts-plan", "learning_rate": -1}),
        422,
    )
    body = {"dataset": "facts-plan", "time_budget_s": 1}
    assert_error(client.post("api/v1/training/plan", json=body), 409, "shorter than the probe")
    unknown = client.post("api/v1/training/plan", params={"preset": "nope"}, json=body)
    assert_error(unknown, 422, "Unknown preset")


def test_unknown_job_on_the_websocket_gets_an_error_and_a_close(app: RunningApp) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{app.port}/ws/jobs/job-nope", open_timeout=30) as socket:
        assert "job-nope" in json.loads(socket.recv(timeout=30))["error"]
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


def test_docs_schema_and_metrics(client: httpx.Client) -> None:
    docs = client.get("docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    schema = client.get("openapi.json").json()
    assert "/api/v1/training/jobs" in schema["paths"]
    assert all(path.startswith(("/api/v1/", "/metrics")) for path in schema["paths"]), "Gradio's"
    created = schema["paths"]["/api/v1/training/jobs"]["post"]["responses"]
    assert "201" in created
    client.get("api/v1/models")
    metrics = client.get("metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'garden_http_request_duration_seconds_count{method="GET",route="/api/v1/models"' in text
    assert "# TYPE garden_training_jobs gauge" in text
    assert "# TYPE garden_chat_time_to_first_token_seconds histogram" in text


@pytest.mark.slow
def test_a_named_backend_answers_the_rest_chat_or_is_waited_for(client: httpx.Client) -> None:
    """The stats name exactly the backend asked for: vLLM asked for by name, while the auto
    engine answers from transformers as vLLM starts, is waited for, never replaced."""
    base = {
        "messages": [{"role": "user", "content": "Name a colour."}],
        "generation": {"temperature": 0, "max_new_tokens": 4},
    }
    auto = client.post("api/v1/chat", json={**base, "backend": "auto"})
    assert auto.status_code == 200, auto.text
    for backend in ("vllm", "transformers"):
        answer = client.post("api/v1/chat", json={**base, "backend": backend}, timeout=900)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stats"]["backend"] == backend, answer.json()
