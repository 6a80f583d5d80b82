"""The vLLM host: a spawned process that steps one in-process ``LLMEngine``, driven over a pipe.

vLLM's ``AsyncLLM`` always runs its engine core in a second process, and vLLM's CPU platform
spawns it, so torch and vLLM were imported twice (≈ 17 s each on two cores) before the first
answer. The app spawns this host instead: it imports vLLM once and steps the engine itself
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so neither the app nor a second process import vLLM
(``bench/vllm_variants.py``: cold start 35 s → 19 s). The engine's process-wide state (its torch
thread settings, ``torch.distributed``) stays out of the app, and stopping the engine ends the
process, which returns all of its memory.

The protocol, one tuple per message:

- app → host: ``("add", request_id, prompt_ids, sampling, lora)``, ``("abort", request_id)``,
  ``("stop",)``; ``sampling`` holds ``SamplingParams`` keywords, ``lora`` is
  ``(name, lora_id, path)`` or ``None``;
- host → app: ``("ready", max_model_len)`` or ``("failed", text)`` once, then
  ``("out", [(request_id, delta_text, new_tokens, finish_reason), ...])`` per engine step,
  ``("error", request_id, text)`` for a request vLLM refused, and ``("dead", text)`` before
  it exits on an engine failure.
"""

from __future__ import annotations

import contextlib
import os
from multiprocessing.connection import Connection
from typing import Any

IDLE_POLL_S = 1.0
PROCESS_TITLE = "garden-vllm-host"
# The niceness of a host that warms up behind a backend already answering (``auto``): on two
# cores its start-up (imports, weights, warm-up) would otherwise take half of the CPU from the
# live answers. An unprivileged process cannot lower it again, so once vLLM has taken over it
# keeps serving at this niceness, which costs nothing unless other processes want the cores.
WARM_UP_NICE = 10
# vLLM's own log level in the host unless VLLM_LOGGING_LEVEL is set (e.g. to INFO to debug it).
QUIET_LOGGING_LEVEL = "ERROR"


def serve(
    conn: Connection, engine_kwargs: dict[str, Any], architectures: list[str], nice: int = 0
) -> None:
    """The host's entry point: build the engine, report, then serve until told to stop;
    ``nice``: lower the host's CPU priority by that much first."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    # vLLM's INFO lines and one warning a weight for the fp32 models it serves in bf16 (122 lines
    # for the default model) flooded the app's terminal at the first chat; its errors still show.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", QUIET_LOGGING_LEVEL)
    if nice > 0:
        with contextlib.suppress(OSError):
            os.nice(nice)
    _name_process()
    try:
        _check_architectures(architectures)
        engine = _build(engine_kwargs)
    except BaseException as exc:
        _send(conn, ("failed", _text(exc)))
        return
    try:
        _send(conn, ("ready", int(engine.model_config.max_model_len)))
        _serve(conn, engine)
    finally:
        with contextlib.suppress(Exception):  # the process ends either way
            engine.engine_core.shutdown()


def _name_process() -> None:
    """``garden-vllm-host`` in ps, top and psutil (setproctitle comes with vLLM)."""
    with contextlib.suppress(ImportError):
        import setproctitle

        setproctitle.setproctitle(PROCESS_TITLE)


def _check_architectures(architectures: list[str]) -> None:
    if not architectures:
        return
    from vllm.model_executor.models import ModelRegistry

    supported = set(ModelRegistry.get_supported_archs())
    missing = [arch for arch in architectures if arch not in supported]
    if missing:
        raise ValueError(f"vLLM does not support {', '.join(missing)}")


def _build(engine_kwargs: dict[str, Any]) -> Any:
    from vllm import SamplingParams
    from vllm.engine.arg_utils import EngineArgs
    from vllm.v1.engine.llm_engine import LLMEngine

    engine = LLMEngine.from_engine_args(EngineArgs(**engine_kwargs))
    # One tiny request, so the first real answer does not pay for lazy initialisation.
    engine.add_request("warm-up", {"prompt_token_ids": [1, 2, 3]}, SamplingParams(max_tokens=2))
    while engine.has_unfinished_requests():
        engine.step()
    return engine


def _serve(conn: Connection, engine: Any) -> None:
    while True:
        if not engine.has_unfinished_requests() and not conn.poll(IDLE_POLL_S):
            continue
        try:
            while conn.poll():
                if not _handle(conn, engine, conn.recv()):
                    return
        except (EOFError, OSError):  # the app is gone
            return
        if not engine.has_unfinished_requests():
            continue
        try:
            results = engine.step()
        except BaseException as exc:
            _send(conn, ("dead", _text(exc)))
            return
        pieces = [
            (
                result.request_id,
                result.outputs[0].text,
                len(result.outputs[0].token_ids),
                result.outputs[0].finish_reason,
            )
            for result in results
            if result.outputs
        ]
        if pieces and not _send(conn, ("out", pieces)):
            return


def _handle(conn: Connection, engine: Any, message: tuple[Any, ...]) -> bool:
    """Carry out one message from the app; False when the host should stop."""
    if message[0] == "stop":
        return False
    if message[0] == "abort":
        engine.abort_request([message[1]])
        return True
    _, request_id, prompt_ids, sampling, lora = message
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest
    from vllm.sampling_params import RequestOutputKind

    try:
        params = SamplingParams(**sampling, output_kind=RequestOutputKind.DELTA)
        engine.add_request(
            request_id,
            {"prompt_token_ids": prompt_ids},
            params,
            lora_request=LoRARequest(*lora) if lora else None,
        )
    except Exception as exc:  # reported to the request; the engine goes on
        _send(conn, ("error", request_id, _text(exc)))
    return True


def _send(conn: Connection, message: tuple[Any, ...]) -> bool:
    try:
        conn.send(message)
        return True
    except (OSError, EOFError, BrokenPipeError):
        return False


def _text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    return f"{text} ({cause})" if cause is not None and str(cause) not in text else text
