"""What `model-garden serve` and the remote endpoints refuse, before anything is served:
parallel sizes that do not fit the devices, a public host without a key, and outbound URLs the
web may not call (SSRF)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from garden.config import Settings
from garden.engine.serving.parallel import ParallelSizes, check_parallel, visible_devices
from garden.errors import ConfigError, ServingError
from garden.services.endpoints import Endpoint, check_endpoint
from garden.ui.chat_remote import checked

PASSWORD = SecretStr("a long enough password")


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "model-garden"), "serve", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.stderr[-2000:]
    return lines[0]


def test_parallel_sizes_must_fit_the_visible_devices() -> None:
    with pytest.raises(ConfigError) as gpus:
        check_parallel(ParallelSizes(tensor=2, pipeline=2), "cuda", 2)
    text = str(gpus.value)
    assert "VLLM_TENSOR_PARALLEL_SIZE=2 × VLLM_PIPELINE_PARALLEL_SIZE=2" in text
    assert "needs 4 GPUs" in text and "2 CUDA device" in text and "Ray" in text
    with pytest.raises(ConfigError, match="VLLM_DATA_PARALLEL_SIZE=3 needs 3 vLLM ranks"):
        check_parallel(ParallelSizes(data=3), "cpu", 2)
    check_parallel(ParallelSizes(tensor=2, data=2), "cuda", 4)
    assert ParallelSizes(2, 3, 1).engine_kwargs() == {
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 3,
        "data_parallel_size": 1,
    }


def test_in_app_engine_refuses_parallel_sizes_beyond_the_devices() -> None:
    from garden.engine.serving.vllm import VllmBackend

    _, count = visible_devices()
    backend = VllmBackend("unused", parallel=ParallelSizes(tensor=count + 1))
    with pytest.raises(ConfigError, match=f"VLLM_TENSOR_PARALLEL_SIZE={count + 1}"):
        backend.start()
    assert backend._process is None  # refused before the vLLM host was spawned


def test_serve_names_the_parallel_setting_on_one_line() -> None:
    too_many = one_line_error(run_serve("--dry-run", env={"VLLM_DATA_PARALLEL_SIZE": "512"}))
    assert "VLLM_DATA_PARALLEL_SIZE=512" in too_many
    zero = one_line_error(run_serve("--dry-run", env={"VLLM_PIPELINE_PARALLEL_SIZE": "0"}))
    assert "VLLM_PIPELINE_PARALLEL_SIZE" in zero


def test_serve_on_a_public_host_needs_an_api_key() -> None:
    refused = one_line_error(run_serve("--host", "0.0.0.0", "--dry-run"))
    assert "0.0.0.0" in refused and "--api-key" in refused


def test_endpoint_urls_are_normalised_or_refused() -> None:
    assert (
        Endpoint(base_url="http://127.0.0.1:8000").remote().base_url == "http://127.0.0.1:8000/v1"
    )
    assert Endpoint(base_url=" https://h.example/v1/ ").remote().base_url == "https://h.example/v1"
    for bad in ("ftp://h/v1", "127.0.0.1:8000", "http:///v1", "http://user:pw@h.example/v1"):
        with pytest.raises(ServingError):
            Endpoint(base_url=bad).remote()


def test_a_local_app_may_call_loopback_only_by_default() -> None:
    local = Settings(_env_file=None)
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:8000", "http://[::1]:8000/v1"):
        assert check_endpoint(Endpoint(base_url=url), settings=local)
    for url in ("http://169.254.169.254/latest", "http://10.0.0.5:8000/v1", "http://a.example"):
        with pytest.raises(ServingError, match="only loopback hosts"):
            check_endpoint(Endpoint(base_url=url), settings=local)


def test_a_public_app_calls_only_the_allowed_hosts() -> None:
    public = Settings(_env_file=None, enable_auth=True, auth_password=PASSWORD)
    with pytest.raises(ServingError, match="public and REMOTE_ENDPOINTS_ALLOWED is empty"):
        check_endpoint(Endpoint(base_url="http://127.0.0.1:8000/v1"), settings=public)
    demo = Settings(
        _env_file=None, public_demo=True, remote_endpoints_allowed="vllm.internal, X.io"
    )
    assert check_endpoint(Endpoint(base_url="http://vllm.internal:8000/v1"), settings=demo)
    assert check_endpoint(Endpoint(base_url="https://x.io/v1"), settings=demo)
    for url in ("http://127.0.0.1:8000/v1", "http://169.254.169.254/", "http://vllm.internal.evil"):
        with pytest.raises(ServingError, match="not in REMOTE_ENDPOINTS_ALLOWED") as refused:
            check_endpoint(Endpoint(base_url=url), settings=demo)
        assert refused.value.hint and "REMOTE_ENDPOINTS_ALLOWED" in refused.value.hint
    anything = Settings(_env_file=None, public_demo=True, remote_endpoints_allowed="*")
    assert check_endpoint(Endpoint(base_url="http://a.example/v1"), settings=anything)


def test_the_chat_tab_checks_the_typed_url_before_any_request() -> None:
    public = Settings(_env_file=None, public_demo=True)
    with pytest.raises(ServingError, match=r"may not call 169\.254\.169\.254"):
        checked("http://169.254.169.254/latest/meta-data", "", public)
    with pytest.raises(ServingError, match="No endpoint URL"):
        checked("  ", "", public)


def test_parallel_settings_reach_vllms_own_flags(default_model_path: Path) -> None:
    ray = run_serve(
        "--ray",
        "--dry-run",
        env={"VLLM_TENSOR_PARALLEL_SIZE": "8", "VLLM_PIPELINE_PARALLEL_SIZE": "2"},
    )
    assert ray.returncode == 0, ray.stderr[-2000:]
    assert (
        "--tensor-parallel-size 8 --pipeline-parallel-size 2 --data-parallel-size 1" in ray.stdout
    )
    assert "--distributed-executor-backend ray" in ray.stdout
    _, cores = visible_devices()
    if cores < 2:
        return
    two = run_serve("--dry-run", env={"VLLM_DATA_PARALLEL_SIZE": "2"})
    assert two.returncode == 0, two.stderr[-2000:]
    assert "--data-parallel-size 2" in two.stdout and "UniProcExecutor" not in two.stdout
