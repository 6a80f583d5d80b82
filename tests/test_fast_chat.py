"""The fast single-stream chat backend (int4 ONNX copy on onnxruntime-genai) and the ``auto``
choice between it, transformers and vLLM. Real model, real runtime; no time assertions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from garden.config import get_settings
from garden.engine.serving import ChatEngine, GenerationConfig, get_engine, unload_engine
from garden.engine.serving.auto import (
    MANY_STREAMS,
    Situation,
    choose_backend,
    lacks_lora,
    route,
)
from garden.engine.serving.onnx_backend import OnnxBackend
from garden.engine.serving.targets import VLLM_LORA_RANKS, fitting_lora_rank
from garden.engine.serving.types import Adapter, EngineStatus, GenerationRequest
from garden.errors import ServingError

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
MANY = MANY_STREAMS - 1  # answers already running when one more makes "many"


@pytest.mark.parametrize(
    ("requested", "onnx_ready", "vllm_state", "adapter", "streams", "expected"),
    [
        # a named backend is always kept
        ("transformers", True, "ready", False, 0, "transformers"),
        ("vllm", True, "ready", False, 0, "vllm"),
        ("onnx", True, None, False, 0, "onnx"),
        # auto, one user on a base model: the int4 copy, whatever vLLM is doing
        ("auto", True, "starting", False, 0, "onnx"),
        ("auto", True, "ready", False, 0, "onnx"),
        ("auto", True, None, False, 0, "onnx"),
        ("auto", True, "failed", False, 0, "onnx"),
        # auto, many users: vLLM batches them once it is ready
        ("auto", True, "ready", False, MANY, "vllm"),
        ("auto", True, "starting", False, MANY, "onnx"),
        ("auto", True, None, False, MANY, "onnx"),
        # auto, a LoRA adapter: only transformers and vLLM apply one
        ("auto", True, "ready", True, 0, "vllm"),
        ("auto", True, "starting", True, 0, "transformers"),
        ("auto", True, "failed", True, 0, "transformers"),
        # auto, no ONNX copy (not installed, off, or not buildable for this model)
        ("auto", False, "ready", False, 0, "vllm"),
        ("auto", False, "starting", False, 0, "transformers"),
        ("auto", False, None, False, MANY, "transformers"),
    ],
)
def test_auto_chooses_the_fastest_backend_for_the_situation(
    requested: str,
    onnx_ready: bool,
    vllm_state: str | None,
    adapter: bool,
    streams: int,
    expected: str,
) -> None:
    situation = Situation(requested, onnx_ready, vllm_state, adapter, streams)
    assert choose_backend(situation) == expected


@pytest.mark.parametrize(
    ("vllm_state", "streams", "expected"),
    [("starting", 0, "onnx"), ("ready", 0, "onnx"), ("failed", 0, "onnx"), ("ready", MANY, "vllm")],
)
def test_auto_answers_a_lora_run_from_its_own_int4_copy_once_loaded(
    vllm_state: str, streams: int, expected: str
) -> None:
    situation = Situation("auto", False, vllm_state, True, streams, run_copy_ready=True)
    assert choose_backend(situation) == expected


def test_each_answer_goes_to_the_int4_copy_of_the_model_it_asks_for() -> None:
    """The base's copy never answers for a LoRA run, nor a run's copy for the base."""
    base_copy, run_copy, main = object(), object(), object()
    status = EngineStatus("m", "ready", "vllm", "auto", "", vllm_state="ready")
    adapter = Adapter(name="a-1", path="/x", lora_id=1, rank=16, base_model=None)
    assert route("auto", base_copy, main, status, None, {}, run_copy) is base_copy
    assert route("auto", base_copy, main, status, adapter, {}, None) is main
    assert route("auto", base_copy, main, status, adapter, {}, run_copy) is run_copy
    assert route("vllm", base_copy, main, status, adapter, {}, run_copy) is main


def test_a_run_s_int4_copy_is_kept_apart_from_its_base_s(tmp_path: Path) -> None:
    """Named after the run, keyed by the adapter's weights too; the base's key is unchanged."""
    from garden.config import Settings
    from garden.engine.serving.onnx_build import onnx_copy_path

    settings = Settings(_env_file=None, storage_root=tmp_path)
    base, adapter = tmp_path / "base", tmp_path / "my-run" / "adapter"
    for folder in (base, adapter):
        folder.mkdir(parents=True)
    (base / "model.safetensors").write_bytes(b"w")
    (adapter / "adapter_model.safetensors").write_bytes(b"a")
    base_copy = onnx_copy_path(base, settings)
    run_copy = onnx_copy_path(base, settings, adapter)
    assert base_copy.name.startswith("base-") and run_copy.name.startswith("my-run-")
    assert base_copy.parent == run_copy.parent
    (adapter / "adapter_model.safetensors").write_bytes(b"a resumed run")
    assert onnx_copy_path(base, settings, adapter) != run_copy
    assert onnx_copy_path(base, settings) == base_copy


@dataclass
class FakeVllm:
    """Only the two attributes ``lacks_lora`` reads off a vLLM backend."""

    enable_lora: bool
    max_lora_rank: int = 16


def test_an_adapter_needs_a_vllm_with_lora_layers_of_its_rank() -> None:
    adapter = Adapter(name="a-1", path="/x", lora_id=1, rank=16, base_model=None)
    assert lacks_lora(FakeVllm(enable_lora=False), adapter)
    assert not lacks_lora(FakeVllm(enable_lora=True, max_lora_rank=16), adapter)
    assert lacks_lora(FakeVllm(enable_lora=True, max_lora_rank=8), adapter)
    assert not lacks_lora(object(), adapter)  # transformers
    assert [fitting_lora_rank(r) for r in (4, 8, 16, 17, 64, 600)] == [8, 8, 16, 32, 64, 512]


def test_the_lora_ranks_are_those_vllm_accepts() -> None:
    """The app keeps vLLM's rank list as a constant so that it need not import vLLM."""
    from typing import get_args

    from vllm.config.lora import MaxLoRARanks

    assert sorted(r for r in get_args(MaxLoRARanks) if r > 1) == list(VLLM_LORA_RANKS)


@pytest.mark.parametrize("bits", [4, 8])
def test_the_parallel_k_quant_gives_the_library_s_bytes(bits: int) -> None:
    """The builder's k-quant, sliced over threads, equals onnxruntime's own single pass: a
    weight whose block count is no multiple of a slice, one constant block included."""
    import numpy as np
    from onnxruntime.quantization.neural_compressor import weight_only

    from garden.engine.serving.onnx_kquant import BLOCKS_PER_SLICE, parallel_k_quant

    weight = np.random.default_rng(bits).standard_normal((160, 2 * BLOCKS_PER_SLICE + 96)) * 0.05
    weight[:32, 0] = 0.25  # a block whose values are all equal (rmin == rmax)
    expected = weight_only.quant_tensor_k_quant_cpu(weight.T, bits, 32)
    got = parallel_k_quant(weight.T, bits, 32)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)


@pytest.fixture(scope="module")
def onnx_engine(default_model_path: Path) -> Iterator[ChatEngine]:
    engine = get_engine(str(default_model_path), "onnx", settings=get_settings())
    engine.wait_ready(timeout=900)
    yield engine
    unload_engine(engine)


@pytest.mark.slow
def test_onnx_backend_answers_paris_greedily_and_streams(onnx_engine: ChatEngine) -> None:
    config = GenerationConfig(temperature=0.0, max_new_tokens=24)
    steps = list(onnx_engine.stream_chat(QUESTION, config))
    pieces = [step for step in steps if not step.done]
    assert len(pieces) > 1 and steps[-1].done
    assert "Paris" in steps[-1].text and "capital of France" in steps[-1].text  # real spaces
    stats = steps[-1].stats
    assert stats is not None and stats.backend == "onnx" and stats.tokens == len(pieces)
    again = onnx_engine.chat(QUESTION, config)
    assert again.text == steps[-1].text  # greedy is deterministic


@pytest.mark.slow
def test_onnx_backend_stops_when_aborted(onnx_engine: ChatEngine) -> None:
    config = GenerationConfig(temperature=0.0, max_new_tokens=200, ignore_eos=True)
    stream = onnx_engine.stream_chat(QUESTION, config, request_id="abort-me")
    first = next(stream)
    threading.Thread(target=onnx_engine.abort, args=("abort-me",)).start()
    last = list(stream)[-1]
    assert first.tokens >= 1 and last.stats is not None
    assert last.stats.finish_reason == "abort" and last.tokens < 200


@pytest.mark.slow
def test_onnx_backend_samples_with_a_seed(onnx_engine: ChatEngine) -> None:
    config = GenerationConfig(temperature=0.8, max_new_tokens=12, seed=7)
    first, second = (onnx_engine.chat(QUESTION, config) for _ in range(2))
    assert first.text and first.text == second.text


def test_onnx_backend_refuses_a_lora_adapter_clearly(default_model_path: Path) -> None:
    backend = OnnxBackend(str(default_model_path), get_settings())
    adapter = Adapter("my-run", "/nowhere/adapter", 1, 8, str(default_model_path))
    request = GenerationRequest([1, 2, 3], GenerationConfig(), "r1", adapter)
    with pytest.raises(ServingError, match="cannot apply the LoRA adapter my-run") as error:
        next(iter(backend.stream(request)))
    assert "auto or transformers" in (error.value.hint or "")
