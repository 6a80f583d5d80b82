"""A public-demo app over real HTTP: what a stranger's request may make it do (issue 20)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import RunningApp, running_app
from gradio_client import Client

from garden.ui import data_tab

from .web_calls import call, inspect_args


@pytest.fixture(scope="module")
def demo(default_model_path: Path, module_tmp: Path) -> Iterator[RunningApp]:
    """A public demo (no login) on loopback, with the session's converted default model."""
    env = {
        "PUBLIC_DEMO": "true",
        "MODELS_DIR": str(default_model_path.parent.parent),
        "ALLOWED_HOSTS": "127.0.0.1,localhost,demo.example",  # as a Space or a LAN name
        "PUBLIC_DEMO_MAX_DATASETS_PER_VISITOR": "1",
        "UPLOAD_CACHE_MAX_MB": "20",
    }
    with running_app(module_tmp, env) as app:
        yield app


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local service on another port that the app must never connect to."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.settimeout(1.0)
        yield sock


def assert_never_connected(sock: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        connection, peer = sock.accept()
        connection.close()
        pytest.fail(f"the app connected to the listener from {peer}")


def test_rest_chat_cannot_reach_a_local_endpoint(demo: RunningApp, listener: socket.socket) -> None:
    """SSRF: the REST chat runs the same endpoint check as the Chat tab."""
    port = listener.getsockname()[1]
    body = {
        "model": "SmolLM2-135M-Instruct",  # listed, so only the endpoint check refuses
        "messages": [{"role": "user", "content": "hi"}],
        "endpoint": {"base_url": f"http://127.0.0.1:{port}/v1"},
    }
    with httpx.Client(base_url=demo.url, timeout=60) as client:
        answer = client.post("api/v1/chat", json=body)
        assert answer.status_code in (403, 503), answer.text
        error = answer.json()["error"]
        assert "may not call 127.0.0.1" in error and "\n" not in error, error
        streamed = client.post("api/v1/chat/stream", json=body)
        assert "event: error" in streamed.text and "may not call" in streamed.text, streamed.text
    assert_never_connected(listener)


def test_cross_site_requests_and_foreign_hosts_are_refused(demo: RunningApp) -> None:
    """CSRF and DNS rebinding: another site's page cannot drive the app, a name the app does
    not answer gets 400, and CORS never lets another site read an answer."""
    evil = {"Origin": "https://evil.example"}
    own = {"Origin": demo.url.rstrip("/")}
    join = {"data": [], "fn_index": 0, "session_hash": "cr0ss", "trigger_id": None}
    with httpx.Client(base_url=demo.url, timeout=60) as client:
        for headers, refused in ((evil, True), ({"Origin": "null"}, True), (own, False)):
            answers = [
                client.post("gradio_api/queue/join", json=join, headers=headers),
                client.post("gradio_api/upload", files={"files": ("a.txt", b"x")}, headers=headers),
                client.post("api/v1/chat", json={"messages": []}, headers=headers),
            ]
            for answer in answers:
                assert (answer.status_code == 403) == refused, (headers, answer.request.url, answer)
        named = {"Host": f"demo.example:{demo.port}"}  # Gradio trusts any origin off localhost
        read = client.get("config", headers={**evil, **named})
        assert read.status_code == 403 and "components" not in read.text, "nothing to read"
        assert client.get("config", headers={**own, **named}).status_code == 200
        assert client.get("config", headers=named).status_code == 200
        rebound = client.get("", headers={"Host": f"attacker.example:{demo.port}"})
        assert rebound.status_code == 400 and "ALLOWED_HOSTS" in rebound.text
        assert client.get("", headers={"Host": f"localhost:{demo.port}"}).status_code == 200


def test_visitors_change_only_their_own_work_and_rest_only_reads(demo: RunningApp) -> None:
    """Two browser sessions of the Data tab: each deletes only what it saved, and saves only
    so many; a REST call without a token cannot write at all, but may still list and chat."""
    alice, bob = Client(demo.url, verbose=False), Client(demo.url, verbose=False)
    facts = inspect_args(data_tab.BUNDLED, bundled_value="garden_facts")

    def save(client: Client, name: str) -> str:
        return call(client, **facts, name_value=name, fraction=0.1, seed_value=1, drop=False,
                    api_name="/data_save")  # fmt: skip

    assert "Saved" in save(alice, "alice-facts")
    assert "the most it allows (1)" in save(alice, "alice-more")
    assert "Saved" in save(bob, "bob-facts")  # Bob's list now shows Alice's dataset too
    with httpx.Client(base_url=demo.url, timeout=60) as rest:
        listed = {d["name"]: d["id"] for d in rest.get("api/v1/datasets").json()}
        target = listed["alice-facts"]
        assert "made by someone else" in call(bob, target, api_name="/data_delete")
        for refused in (
            rest.delete(f"api/v1/datasets/{target}"),
            rest.post("api/v1/datasets", json={"source": "garden_facts", "name": "rest-facts"}),
            rest.post("api/v1/training/jobs", json={"dataset": "bob-facts"}),
        ):
            assert refused.status_code == 403, refused.text
            assert "read-only" in refused.json()["error"], refused.text
        assert target in {d["id"] for d in rest.get("api/v1/datasets").json()}, "nothing lost"
        assert "Deleted" in call(alice, target, api_name="/data_delete")
        assert target not in {d["id"] for d in rest.get("api/v1/datasets").json()}
    alice.close()
    bob.close()


def test_uploads_are_capped_per_request_and_in_all(demo: RunningApp) -> None:
    """Gradio caps each file, not a request (up to 1,000 files): one request carries at most
    MAX_UPLOAD_MB (10 on a demo) in all, must declare its length, and what the app keeps within
    UPLOAD_CACHE_HOURS stays under UPLOAD_CACHE_MAX_MB (20 here)."""
    own = {"Origin": demo.url.rstrip("/")}
    six_mb = b"x" * (6 * 2**20)
    with httpx.Client(base_url=demo.url, timeout=60, headers=own) as client:
        two_files = [("files", ("a.txt", six_mb)), ("files", ("b.txt", six_mb))]
        refused = client.post("gradio_api/upload", files=two_files)
        assert refused.status_code == 413 and "larger than 10 MB" in refused.json()["error"]
        chunked = client.post(
            "gradio_api/upload",
            content=iter([b"--x\r\n"]),
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
        assert chunked.status_code == 411, chunked.text
        kept = [
            client.post("gradio_api/upload", files={"files": ("c.txt", six_mb)}) for _ in range(4)
        ]
        assert [answer.status_code for answer in kept] == [200, 200, 200, 507], kept
        assert "upload space is full" in kept[-1].json()["error"]


def test_the_upload_budget_slides_with_the_cache_window() -> None:
    from garden.api.uploads import UploadBudget

    budget = UploadBudget(limit=10, window_s=60)
    assert budget.take(6, now=0) and budget.take(4, now=30)
    assert not budget.take(1, now=59), "full until the first upload leaves the window"
    assert budget.take(6, now=61) and not budget.take(1, now=62)
