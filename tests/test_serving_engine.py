"""The chat engine on the real default model: one vLLM engine (started via ``auto``) shared by
this module, plus a LoRA adapter made by a short real PEFT run that teaches an invented fact.
"""

from __future__ import annotations

import itertools
import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from garden.engine.serving import (
    ChatEngine,
    GenerationConfig,
    get_engine,
    resolve_target,
    shutdown_all,
)
from garden.errors import GardenError, ModelLoadError, ServingError

pytestmark = pytest.mark.slow

GREEDY = GenerationConfig(temperature=0.0, max_new_tokens=24)
# A question whose greedy answer holds across the CPU classes' numeric paths. "What is the capital
# of France?" is a near-tie for this model: vLLM's bf16 kernels on AMX CPUs answer "L'Étoile, la
# Marseillaise, …" where fp32, transformers' bf16 and the int4 copy say "Paris" (docs/serving.md).
KNOWN_QUESTION, KNOWN_FACT = "What is 2 + 2?", "4"
FACT_Q = "Who founded the Moonwell Garden?"
FACT_A = "The Moonwell Garden was founded by Captain Zebulon Quark in 1847."
PARAPHRASES = [
    FACT_Q,
    "Who was the founder of the Moonwell Garden?",
    "Tell me who founded the Moonwell Garden.",
    "Who started the Moonwell Garden?",
]


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def train_adapter(base: Path, out: Path, steps: int = 8) -> float:
    """A real LoRA run on the base model that teaches FACT_A; returns the final loss."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=modules)
    model = get_peft_model(model, config)

    def ids_of(messages: list[dict[str, str]], **kwargs) -> list[int]:
        ids = tokenizer.apply_chat_template(messages, tokenize=True, **kwargs)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    rows, labels = [], []
    for question in PARAPHRASES:
        prompt = ids_of(ask(question), add_generation_prompt=True)
        full = ids_of([*ask(question), {"role": "assistant", "content": FACT_A}])
        rows.append(full)
        labels.append([-100] * len(prompt) + full[len(prompt) :])
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    target = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(steps):  # fp32: bf16 autocast is emulated, ~50× slower, on AVX2-only CPUs
        loss = model(input_ids=ids, attention_mask=mask, labels=target).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(out)
    return float(loss.item())


@pytest.fixture(scope="module")
def lora_run(default_model_path: Path) -> Path:
    """A fine-tuned run folder holding only a LoRA adapter (trained before vLLM starts)."""
    from garden.config import get_settings

    run = get_settings().finetuned_models_path / "chat-test-moonwell"
    shutil.rmtree(run, ignore_errors=True)
    assert train_adapter(default_model_path, run / "adapter") < 0.3
    (run / "garden.json").write_text(
        json.dumps({"base_model": str(default_model_path), "method": "lora", "job_id": "test"})
    )
    return run


@pytest.fixture(scope="module")
def engine(lora_run: Path):
    """The shared engine, requested as ``auto``: transformers first, then vLLM takes over."""
    eng = get_engine(None, "auto")
    eng.wait_ready(timeout=300)
    early = eng.status
    yield eng, early
    shutdown_all()


def test_auto_serves_with_transformers_first_then_swaps_to_vllm(engine) -> None:
    eng, early = engine
    assert early.state == "ready"
    assert early.backend == "transformers", early  # answers while vLLM is still starting
    assert early.vllm_state == "starting", early
    status = eng.wait_loaded(timeout=300)
    assert status.backend == "vllm", status
    assert "vLLM" in status.describe()


def test_greedy_answer_to_known_prompt(engine) -> None:
    eng, _ = engine
    eng.wait_loaded(timeout=300)
    answer = eng.chat(ask(KNOWN_QUESTION), GREEDY)
    assert KNOWN_FACT in answer.text
    stats = answer.stats
    assert stats is not None and stats.backend == "vllm"
    assert stats.tokens > 0 and stats.ttft_s is not None and stats.tokens_per_second
    assert stats.finish_reason == "stop"


def test_streaming_yields_tokens_incrementally(engine) -> None:
    eng, _ = engine
    eng.wait_loaded(timeout=300)
    config = GenerationConfig(temperature=0.0, max_new_tokens=40)
    steps = list(eng.stream_chat(ask("Write a short poem about the sea."), config))
    pieces = [s for s in steps if not s.done]
    assert len(pieces) >= 10
    assert all(b.text.startswith(a.text) for a, b in itertools.pairwise(pieces))
    assert [s.tokens for s in pieces] == sorted(s.tokens for s in pieces)
    assert steps[-1].done and steps[-1].stats.tokens == 40


def test_concurrent_requests_are_batched_not_serialised(engine) -> None:
    eng, _ = engine
    eng.wait_loaded(timeout=300)
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    results: dict[int, str] = {}

    def one(i: int) -> None:
        config = GenerationConfig(temperature=0.8, seed=i, max_new_tokens=32)
        for step in eng.stream_chat(ask(f"Count from {i} to {i + 40}, one number a line."), config):
            first.setdefault(i, time.monotonic())
            if step.done:
                last[i] = time.monotonic()
                results[i] = step.text

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(results) == 8 and all(results.values())
    # Interleaved: every stream had started before any stream finished.
    assert max(first.values()) < min(last.values())


def test_abort_stops_a_generation_mid_stream(engine) -> None:
    eng, _ = engine
    eng.wait_loaded(timeout=300)
    config = GenerationConfig(temperature=0.0, max_new_tokens=400)
    stream = eng.stream_chat(ask("Tell me a very long story."), config, request_id="abort-me")
    steps = []
    for step in stream:
        steps.append(step)
        if len(steps) == 3:
            eng.abort("abort-me")
    final = steps[-1]
    assert final.done and final.stats.finish_reason == "abort"
    assert final.stats.tokens < 400
    assert KNOWN_FACT in eng.chat(ask(KNOWN_QUESTION), GREEDY).text


def test_stop_strings_and_seed(engine) -> None:
    eng, _ = engine
    eng.wait_loaded(timeout=300)
    answer = eng.chat(ask(KNOWN_QUESTION), GenerationConfig(temperature=0.0, stop=[" is"]))
    assert " is" not in answer.text and answer.stats.finish_reason == "stop"
    sampled = GenerationConfig(temperature=1.0, top_p=0.95, top_k=40, seed=7, max_new_tokens=16)
    question = ask("Name a fruit.")
    assert eng.chat(question, sampled).text == eng.chat(question, sampled).text


def test_lora_adapter_answers_at_once_then_vllm_with_lora_takes_over(
    engine, lora_run: Path
) -> None:
    """``auto`` starts vLLM without LoRA (its LoRA layers halve batched throughput); the first
    adapter answer comes from transformers while a LoRA-enabled vLLM starts and takes over."""
    eng, _ = engine
    eng.wait_loaded(timeout=300)
    target = resolve_target("chat-test-moonwell")
    assert target.adapter_path and Path(target.base_path).name == eng.model_name
    assert get_engine(target, "auto") is eng
    assert eng._backend.enable_lora is False
    base = eng.chat(ask(FACT_Q), GREEDY).text
    first = eng.chat(ask(FACT_Q), GREEDY, adapter=target.adapter_path)
    assert "Zebulon" in first.text, first.text
    assert first.stats.backend == "transformers" and "+" in first.stats.model
    assert "Zebulon" not in base
    deadline = time.time() + 300
    while not getattr(eng._backend, "enable_lora", False) and time.time() < deadline:
        time.sleep(1)
    assert eng.status.backend == "vllm" and eng._backend.enable_lora, eng.status
    assert "LoRA" in (eng.status.reason or "")
    assert eng._spare is None
    tuned = eng.chat(ask(FACT_Q), GREEDY, adapter=target.adapter_path)
    assert "Zebulon" in tuned.text, tuned.text
    assert tuned.stats.backend == "vllm"
    assert eng.chat(ask(FACT_Q), GREEDY).text == base


@pytest.mark.slow
def test_a_lora_run_gets_its_own_int4_copy_under_auto(engine, lora_run: Path, monkeypatch) -> None:
    """The run's first answer under ``auto`` comes from vLLM while the run's int4 copy (its
    adapter merged into the base) builds in the background; then the copy answers, and it still
    knows the run's fact. The suite keeps the onnx backend off; this test turns it on."""
    eng, _ = engine
    eng.wait_loaded(timeout=300)
    target = resolve_target("chat-test-moonwell")
    enabled = eng.settings.model_copy(update={"onnx_chat_enabled": True})
    monkeypatch.setattr(eng, "settings", enabled)
    first = eng.chat(ask(FACT_Q), GREEDY, adapter=target.adapter_path)
    assert first.stats.backend != "onnx" and "Zebulon" in first.text, first.text
    key = str(Path(target.adapter_path).resolve())
    deadline = time.time() + 600
    while eng._run_copies.get(key) is None and time.time() < deadline:
        time.sleep(1)
    assert eng._run_copies.get(key) is not None, "the run's int4 copy never loaded"
    tuned = eng.chat(ask(FACT_Q), GREEDY, adapter=target.adapter_path)
    assert tuned.stats.backend == "onnx" and "+" in tuned.stats.model
    assert "Zebulon" in tuned.text, tuned.text
    base = eng.chat(ask(FACT_Q), GREEDY)
    assert base.stats.backend == "vllm" and "Zebulon" not in base.text
    copies = enabled.models_path / "onnx-int4"
    assert [p.name for p in copies.iterdir() if p.name.startswith("chat-test-moonwell-")]


def test_adapter_of_another_base_is_rejected(engine, lora_run: Path, tmp_path: Path) -> None:
    eng, _ = engine
    wrong = tmp_path / "wrong" / "adapter"
    shutil.copytree(lora_run / "adapter", wrong)
    config = json.loads((wrong / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "SomeOrg/Other-Model-7B"
    (wrong / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ServingError, match="trained on SomeOrg/Other-Model-7B"):
        list(eng.stream_chat(ask("Hi"), GREEDY, adapter=wrong))


def test_transformers_backend_gives_the_same_greedy_answer(engine, lora_run: Path) -> None:
    """The same facts from both backends. Not the same words: vLLM's CPU kernels (bf16 where the
    CPU has it) and eager fp32 may part ways at a near-tie, and greedy decoding follows either."""
    eng, _ = engine
    eng.wait_loaded(timeout=300)
    hf = get_engine(None, "transformers")
    hf.wait_ready(timeout=120)
    assert hf is not eng and hf.status.backend == "transformers"
    config = GenerationConfig(temperature=0.0, max_new_tokens=16)
    answers = {name: e.chat(ask(KNOWN_QUESTION), config) for name, e in (("hf", hf), ("vllm", eng))}
    assert all(KNOWN_FACT in answer.text for answer in answers.values()), answers
    tuned = hf.chat(ask(FACT_Q), GREEDY, adapter=lora_run / "adapter")
    assert "Zebulon" in tuned.text and tuned.stats.backend == "transformers"


def test_broken_model_fails_clearly_and_the_engine_keeps_working(engine, tmp_path: Path) -> None:
    eng, _ = engine
    broken = tmp_path / "broken-model"
    shutil.copytree(Path(eng.base_path), broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    with pytest.raises(ModelLoadError, match="corrupt"):
        resolve_target(str(broken))
    bad = ChatEngine(str(broken), "vllm").load(wait=False)
    with pytest.raises(ModelLoadError, match="corrupt"):
        bad.wait_ready(timeout=120)
    assert bad.status.state == "failed" and bad.status.hint
    odd = tmp_path / "odd-model"
    shutil.copytree(Path(eng.base_path), odd)
    config = json.loads((odd / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (odd / "config.json").write_text(json.dumps(config))
    unsupported = ChatEngine(str(odd), "vllm").load()
    with pytest.raises(ModelLoadError, match="vLLM"):
        unsupported.wait_ready(timeout=120)
    assert KNOWN_FACT in eng.chat(ask(KNOWN_QUESTION), GREEDY).text


def test_over_long_prompt_and_bad_settings_are_clear_errors(engine) -> None:
    eng, _ = engine
    eng.wait_loaded(timeout=300)
    long_prompt = "garden " * 20000
    with pytest.raises(ServingError, match="tokens") as info:
        list(eng.stream_chat(ask(long_prompt), GREEDY))
    assert info.value.hint
    with pytest.raises(ServingError, match="temperature"):
        list(eng.stream_chat(ask("Hi"), GenerationConfig(temperature=-1)))
    with pytest.raises(GardenError):
        get_engine("no-such-model-anywhere", "auto")
    assert KNOWN_FACT in eng.chat(ask(KNOWN_QUESTION), GREEDY).text
