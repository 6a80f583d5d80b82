"""vLLM's own OpenAI-compatible server (``vllm serve``) as a child process: start it, wait until
it lists its models, stop it and every process it started.

The server runs in a session of its own so that it and its engine-core processes can be
stopped as one group; ``PR_SET_PDEATHSIG`` stops it should this process die without cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

from garden.engine.serving.remote import RemoteEndpoint, list_models
from garden.engine.training.procs import die_with_parent, kill_tree
from garden.errors import ServingError

STOP_GRACE_S = 30.0
POLL_S = 1.0
STDERR_FD = 2


def start_server(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[Any]:
    """Start ``argv`` (a ``vllm serve`` command) with ``env`` added to this environment; its
    log goes to this process's stderr, so stdout keeps only what the caller prints."""
    try:
        return subprocess.Popen(
            list(argv),
            env={**os.environ, **env},
            stdout=STDERR_FD,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    except OSError as exc:
        raise ServingError(
            f"Could not start vLLM's server ({argv[0]}): {exc}.",
            hint="Check that vLLM is installed in this environment (uv sync).",
        ) from exc


def wait_until_serving(
    process: subprocess.Popen[Any], endpoint: RemoteEndpoint, timeout: float
) -> list[str]:
    """The served model names, once ``GET /v1/models`` answers; ``ServingError`` when the
    server exits first or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise ServingError(
                f"vLLM's server exited with code {code} before it served.",
                hint="Its log above says why (a port in use, a bad flag, too little memory).",
            )
        try:
            return list_models(endpoint)
        except ServingError:
            if time.monotonic() > deadline:
                raise ServingError(
                    f"vLLM's server did not answer at {endpoint.base_url} within {timeout:.0f} s.",
                    hint="Its log above says where it stopped; a loaded machine needs longer.",
                ) from None
        time.sleep(POLL_S)


def stop_server(process: subprocess.Popen[Any], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM to the server's process group, then SIGKILL to whatever is left of it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    if process.poll() is None:
        kill_tree(process.pid, timeout=2.0, include_self=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
