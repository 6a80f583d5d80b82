"""A named backend answers or is refused with why, every answer names the backend that produced
it, and the status names the model picked. Real engines on the real default model."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from garden.engine.serving import get_engine
from garden.engine.serving.targets import ChatTarget
from garden.engine.serving.types import EngineStatus
from garden.errors import GardenError, ServingError
from garden.services import chat
from garden.services.chat import AnswerStream, ChatMessage, ChatRequest, GenerationSettings

GREEDY = GenerationSettings(temperature=0, max_new_tokens=6)
QUESTION = [ChatMessage(role="user", content="What is the capital of France?")]


def test_a_backend_whose_package_is_missing_is_refused_with_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def without_vllm(name: str, *args: Any) -> Any:
        return None if name == "vllm" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_vllm)
    with pytest.raises(ServingError) as refused:
        chat.check_backend("vllm")
    assert "vllm backend is not installed here" in refused.value.message
    assert refused.value.hint and "auto" in refused.value.hint
    with pytest.raises(ServingError) as refused:  # every front end goes through the services
        chat.load(None, "vllm")
    assert "not installed" in refused.value.message
    chat.check_backend("transformers")
    with pytest.raises(ServingError, match="Unknown backend"):
        chat.check_backend("llama")


def test_the_status_names_the_model_picked() -> None:
    run = ChatTarget("run-1", "facts-run", "/m/SmolLM2-135M-Instruct", "/m/run-1/adapter")
    base = ChatTarget("SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct", "/m/x")
    assert run.shown("SmolLM2-135M-Instruct") == "facts-run (LoRA on SmolLM2-135M-Instruct)"
    assert base.shown("SmolLM2-135M-Instruct") == "SmolLM2-135M-Instruct"
    status = EngineStatus("SmolLM2-135M-Instruct", "ready", "vllm", "auto", "vLLM serves it")
    text = chat.EngineStatusView.of(status, "run-1", run.shown(status.model)).text
    assert text.startswith("✅ facts-run (LoRA on SmolLM2-135M-Instruct) served by **vllm**")


@pytest.fixture(scope="module")
def engine(default_model_path: Path) -> Iterator[Any]:
    """The default model on the transformers backend, loaded through the service."""
    yield chat.wait_ready(None, "transformers", timeout=600)
    chat.shutdown()


@pytest.mark.slow
def test_a_backend_the_engine_does_not_run_is_refused_not_replaced(engine: Any) -> None:
    transformers = get_engine(None, "transformers")
    with pytest.raises(ServingError) as refused:
        list(transformers.stream_chat([m.model_dump() for m in QUESTION], backend="onnx"))
    assert "onnx backend does not serve" in refused.value.message
    assert refused.value.hint and "auto" in refused.value.hint


@pytest.mark.slow
def test_every_step_names_the_backend_that_answered(engine: Any) -> None:
    request = ChatRequest(backend="transformers", messages=QUESTION, generation=GREEDY)
    deltas = list(chat.stream_answer(request))
    assert {d.backend for d in deltas} == {"transformers"}
    last = deltas[-1]
    assert last.stats is not None and last.stats.backend == "transformers"


@pytest.mark.slow
def test_a_background_answer_records_its_backend(engine: Any) -> None:
    request = ChatRequest(backend="transformers", messages=QUESTION, generation=GREEDY)
    stream = chat.start_answer(request)
    assert isinstance(stream, AnswerStream)
    thread_done = _wait(stream)
    assert thread_done and stream.error is None, stream.error
    assert stream.answered_by == stream.backend == "transformers"
    assert stream.stats is not None and stream.stats.backend == "transformers"


@pytest.mark.slow
def test_the_status_of_the_picked_model(engine: Any) -> None:
    status = chat.engine_status("SmolLM2-135M-Instruct", "transformers")
    assert status.text.startswith("✅ SmolLM2-135M-Instruct served by **transformers**")


def _wait(stream: AnswerStream) -> bool:
    """Join the answer's thread (named after its request)."""
    import threading

    for thread in threading.enumerate():
        if thread.name == f"answer-{stream.request_id}":
            thread.join(timeout=600)
    return stream.done


@pytest.fixture(scope="module")
def lora_run(default_model_path: Path) -> Iterator[str]:
    """A fine-tuned run folder holding only a (fresh, untrained) LoRA adapter of the default
    model, as a training run leaves it."""
    import json
    import shutil

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from garden.config import get_settings

    run = get_settings().finetuned_models_path / "status-run"
    model = AutoModelForCausalLM.from_pretrained(default_model_path)
    lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(run / "adapter")
    (run / "garden.json").write_text(
        json.dumps({"base_model": str(default_model_path), "method": "lora", "job_id": "test"})
    )
    yield run.name
    shutil.rmtree(run, ignore_errors=True)


@pytest.mark.slow
def test_the_status_of_a_lora_run_names_the_run_on_its_base(engine: Any, lora_run: str) -> None:
    loaded = chat.wait_ready(lora_run, "transformers", timeout=600)
    expected = f"✅ {lora_run} (LoRA on SmolLM2-135M-Instruct) served by **transformers**"
    assert loaded.text.startswith(expected), loaded.text
    assert chat.engine_status(lora_run, "transformers").text.startswith(expected)
    request = ChatRequest(model=lora_run, backend="onnx", messages=QUESTION, generation=GREEDY)
    with pytest.raises(GardenError):  # the onnx engine never serves a LoRA run
        chat.answer(request)
