"""Plain data shared by the chat engine and its backends (no heavy imports)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from garden.engine.training.tool_template import ToolCall

BackendName = Literal["auto", "onnx", "vllm", "transformers"]
BACKENDS: tuple[str, ...] = ("auto", "onnx", "vllm", "transformers")
EngineState = Literal["loading", "ready", "failed", "unloaded"]
LOAD_WAIT_S = 900.0  # the longest an answer waits for its model to load before it is refused


@dataclass
class GenerationConfig:
    """Sampling settings of one answer. ``temperature == 0`` means greedy."""

    system_prompt: str = ""
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    ignore_eos: bool = False  # generate exactly max_new_tokens (benchmarks)

    def validate(self) -> None:
        from garden.errors import ServingError

        problems = []
        if self.temperature < 0:
            problems.append("temperature must be ≥ 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            problems.append("top-p must be in (0, 1]")
        if self.top_k < 0:
            problems.append("top-k must be ≥ 0 (0 = off)")
        if self.max_new_tokens < 1:
            problems.append("max new tokens must be ≥ 1")
        if self.repetition_penalty <= 0:
            problems.append("repetition penalty must be > 0 (1 = off)")
        if problems:
            raise ServingError(
                "Invalid generation settings: " + "; ".join(problems) + ".",
                hint="Fix the values under Generation settings (or the CLI options) and retry.",
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Adapter:
    """A LoRA adapter served on top of its base model."""

    name: str
    path: str
    lora_id: int
    rank: int
    base_model: str | None


@dataclass
class AnswerStats:
    """Per-answer figures shown next to every reply."""

    backend: str
    model: str
    tokens: int = 0
    prompt_tokens: int = 0
    ttft_s: float | None = None
    duration_s: float = 0.0
    tokens_per_second: float | None = None
    energy_kwh: float | None = None
    finish_reason: str | None = None


@dataclass
class ChatDelta:
    """One streamed step: the new text, the answer so far, and the final stats when done.

    When the request offered tools, ``text`` leaves out the answer's ``<tool_call>`` blocks
    and the last step carries the calls read from them (``tool_problems``: those unreadable).
    """

    delta: str
    text: str
    tokens: int
    done: bool = False
    stats: AnswerStats | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_problems: list[str] = field(default_factory=list)
    backend: str | None = None  # the backend generating this answer (not the engine's current)


@dataclass
class BackendChunk:
    """What a backend yields: new text and the total number of generated tokens."""

    delta: str
    tokens: int
    finish_reason: str | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """One answer for a backend to generate: the prompt's token ids and how to sample."""

    prompt_ids: list[int]
    config: GenerationConfig
    request_id: str
    adapter: Adapter | None = None


class Backend(Protocol):
    name: str
    max_model_len: int

    def start(self) -> None: ...

    def stream(self, request: GenerationRequest) -> Iterator[BackendChunk]: ...

    def abort(self, request_id: str) -> None: ...

    def shutdown(self) -> None: ...


@dataclass
class EngineStatus:
    """What a front end shows about an engine: state, serving backend and why."""

    model: str
    state: EngineState
    backend: str | None
    requested: str
    reason: str
    error: str | None = None
    hint: str | None = None
    vllm_state: str | None = None  # starting | ready | failed | None when not used
    load_seconds: float | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def describe(self, label: str | None = None) -> str:
        """A line for people; ``label`` names the model picked (e.g. a fine-tuned run served
        as a LoRA adapter on this engine's base model), else the base model is named."""
        name = label or self.model
        if self.state == "failed":
            return f"❌ {name}: {self.error}" + (f" {self.hint}" if self.hint else "")
        if self.state == "loading":
            return (
                f"⏳ Loading {name}… ({self.reason}; a question waits for it at most "
                f"{LOAD_WAIT_S / 60:.0f} min, then asks you to retry)"
            )
        if self.state == "unloaded":
            return f"{name} is not loaded."
        text = f"✅ {name} served by **{self.backend}** — {self.reason}"
        if self.vllm_state == "starting":
            text += " · vLLM is starting and takes over when ready"
        return text


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or (as Gradio hands it) a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return "" if content is None else str(content)
