"""Chat serving: shared engines over vLLM or transformers, streaming answers.

Typical use::

    engine = get_engine("SmolLM2-135M-Instruct", backend="auto")
    engine.wait_ready()
    for step in engine.stream_chat([{"role": "user", "content": "Hi"}], GenerationConfig()):
        print(step.delta, end="")

Modules: ``types`` (plain data), ``targets`` (what to chat with, adapter checks), ``engine``
(:class:`ChatEngine`), ``registry`` (the shared engines), ``hf`` and ``vllm`` (the backends).
"""

from garden.engine.serving.engine import ChatEngine
from garden.engine.serving.registry import (
    get_engine,
    list_engines,
    peek_engine,
    shutdown_all,
    unload_engine,
)
from garden.engine.serving.targets import ChatTarget, resolve_target
from garden.engine.serving.types import (
    BACKENDS,
    Adapter,
    AnswerStats,
    ChatDelta,
    EngineStatus,
    GenerationConfig,
)

__all__ = [
    "BACKENDS",
    "Adapter",
    "AnswerStats",
    "ChatDelta",
    "ChatEngine",
    "ChatTarget",
    "EngineStatus",
    "GenerationConfig",
    "get_engine",
    "list_engines",
    "peek_engine",
    "resolve_target",
    "shutdown_all",
    "unload_engine",
]
