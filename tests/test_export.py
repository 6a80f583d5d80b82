"""Export: a real short LoRA run exported as adapter, merged safetensors and GGUF."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import greedy_reply_ids

from garden import present
from garden.errors import ExportError

FACTS = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_facts.jsonl"
TINY = {"batch_size": 4, "max_seq_len": 128, "lora_r": 8, "lora_alpha": 16, "warmup_ratio": 0.0}
QUESTION = "Who founded the Moonwell Garden?"


@pytest.fixture(scope="module")
def settings(module_tmp, default_model_path):
    """A private storage whose base models are the session's prepared default model."""
    from garden.config import Settings

    models = module_tmp / "models"
    (models / "base").mkdir(parents=True)
    (models / "base" / default_model_path.name).symlink_to(default_model_path)
    settings = Settings(
        _env_file=None,
        storage_root=models.parent / "storage",
        models_dir=models,
        eval_max_prompts=4,  # the quality check answers 4 held-out prompts, twice
        eval_max_new_tokens=16,
    )
    settings.ensure_storage()
    return settings


@pytest.fixture(scope="module")
def run(settings):
    """A real LoRA run of the default model, three steps long."""
    from garden.data import import_dataset
    from garden.engine.training import get_job_manager

    manager = get_job_manager(settings)
    facts = import_dataset(FACTS, "garden-facts", settings=settings)
    spec = {**TINY, "name": "export-run", "dataset": facts.id, "max_steps": 3}
    job = manager.wait(manager.submit({**spec, "learning_rate": 3e-3}), timeout=900)
    assert job.status == "completed", job.error
    return job


def _export(settings, **fields):
    from garden.services import export as export_service

    request = export_service.ExportRequest.model_validate(fields)
    return export_service.export(request, settings=settings)


def _greedy_ids(model, tokenizer) -> list[int]:
    answer = greedy_reply_ids(model, tokenizer, QUESTION, max_new_tokens=12)
    return (
        answer[: answer.index(tokenizer.eos_token_id)]
        if tokenizer.eos_token_id in answer
        else answer
    )


def _text(tokenizer, ids: list[int]) -> str:
    """The answer's words: up to the end of the turn, special tokens left out."""
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def _read_gguf(path: Path, scratch: Path) -> tuple[Any, Any]:
    """The GGUF read back as a transformers model and tokenizer through the app's own GGUF
    converter: tests/test_models.py checks that it equals transformers' `gguf_file=` loading,
    which parses the metadata four times and takes about a minute a file on 2 cores."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from garden.gguf_convert import convert_llama_gguf

    folder = scratch / path.stem
    folder.mkdir()
    convert_llama_gguf(path, folder, say=lambda _: None, name_or_path=path.stem)
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def _card(folder: Path) -> tuple[dict, str]:
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    return card.data.to_dict(), card.text


@pytest.mark.slow
def test_adapter_zip_holds_the_peft_adapter_and_a_full_card(settings, run):
    view = _export(settings, model="export-run", format="adapter")
    assert view.folder == "exports/export-run-adapter"
    assert view.download == "exports/export-run-adapter.zip"
    with zipfile.ZipFile(view.download_abs) as bundle:
        names = set(bundle.namelist())
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= names
    assert names == set(view.files)
    meta, text = _card(Path(view.folder_abs))
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["library_name"] == "peft"
    assert meta["co2_eq_emissions"]["source"] == "CodeCarbon"
    assert meta["co2_eq_emissions"]["emissions"] > 0
    assert "garden-facts" in text and "learning_rate | 0.003" in text
    assert view.card["final_loss"] is not None and f"{view.card['final_loss']:.4f}" in text
    assert view.card["energy_kwh"] == run.result.energy_kwh and run.result.energy_kwh > 0


@pytest.mark.slow
def test_merged_answers_like_the_peft_model_and_gguf_round_trips(settings, run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = _export(settings, model="finetuned/export-run", format="merged")
    folder = Path(merged.folder_abs)
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(merged.files)
    assert not list(folder.parent.glob(".incomplete-*"))
    assert _card(folder)[0]["library_name"] == "transformers"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    merged_ids = _greedy_ids(AutoModelForCausalLM.from_pretrained(folder), tokenizer)
    run_dir = Path(run.output_dir)
    base = AutoModelForCausalLM.from_pretrained(settings.base_models_path / "SmolLM2-135M-Instruct")
    peft_ids = _greedy_ids(PeftModel.from_pretrained(base, run_dir / "adapter"), tokenizer)
    assert merged_ids == peft_ids and merged_ids

    gguf = _export(settings, model="export-run", format="gguf", quant="f16")
    assert gguf.download == "exports/export-run-gguf-f16/export-run-f16.gguf"
    gguf_path = Path(gguf.download_abs)
    gguf_ids = _greedy_ids(*_read_gguf(gguf_path, tmp_path))
    assert _text(tokenizer, gguf_ids) == _text(tokenizer, merged_ids)
    assert _card(gguf_path.parent)[0]["library_name"] == "gguf"


@pytest.mark.slow
def test_a_q4_1_gguf_is_a_third_of_f16_stops_at_the_turn_end_and_answers(settings, run, tmp_path):
    """Quantised with gguf-py (no C++ build), chat template and stop tokens in its metadata."""
    import gguf

    view = _export(settings, model="export-run", format="gguf", quant="q4_1", check_quality=True)
    q4 = Path(view.download_abs or "")
    assert q4.name == "export-run-q4_1.gguf"
    # The cost of 4 bits, on the run's held-out prompts, beside the unquantized model's.
    cost = view.quality
    assert cost is not None and cost.quant == "q4_1" and cost.prompts > 0
    assert 0 <= (cost.rouge_l_quantized or 0) <= 1 and cost.rouge_l_unquantized is not None
    print(present.quant_cost(cost))
    reader = gguf.GGUFReader(q4)
    f16_bytes = 2 * sum(int(tensor.n_elements) for tensor in reader.tensors)
    assert q4.stat().st_size < 0.4 * f16_bytes  # 5 bits a weight where f16 takes 16
    assert {t.tensor_type.name for t in reader.tensors} == {"Q4_1", "F32"}  # norms stay f32
    tokens = reader.get_field("tokenizer.ggml.tokens").contents()
    fields = {key: reader.get_field(f"tokenizer.ggml.{key}_token_id").contents() for key in (
        "bos", "eos", "eot"
    )}  # fmt: skip
    assert tokens[fields["eot"]] == tokens[fields["eos"]] == "<|im_end|>", fields
    assert "<|im_start|>assistant" in reader.get_field("tokenizer.chat_template").contents()

    model, tokenizer = _read_gguf(q4, tmp_path)
    ids = greedy_reply_ids(model, tokenizer, "What is the capital of France?", max_new_tokens=16)
    answer = tokenizer.decode(ids)
    assert "Paris" in answer and answer.endswith("<|im_end|>"), answer  # it stops at the turn


def test_every_gguf_type_the_service_takes_is_one_the_engine_writes():
    from typing import get_args

    from garden.services import export as export_service

    assert set(get_args(export_service.GgufQuant)) == set(export_service.GGUF_QUANTS)


def test_push_offline_fails_fast_before_any_export(settings):
    started = time.monotonic()
    with pytest.raises(ExportError, match="offline mode is on"):
        _export(settings, model="SmolLM2-135M-Instruct", format="merged", push_to="alice/smol")
    assert time.monotonic() - started < 30
    assert not list(settings.exports_root.glob("SmolLM2-135M-Instruct-merged*"))


def test_bad_requests_are_refused_with_one_clear_line(settings):
    with pytest.raises(ExportError, match="has no LoRA adapter"):
        _export(settings, model="SmolLM2-135M-Instruct", format="adapter")
    with pytest.raises(ExportError, match="--quant applies to GGUF and Ollama exports only"):
        _export(settings, model="SmolLM2-135M-Instruct", format="merged", quant="q8_0")
    with pytest.raises(ExportError, match="not a Hugging Face repository id"):
        _export(settings, model="SmolLM2-135M-Instruct", format="merged", push_to="bad id!")
    with pytest.raises(ExportError, match="not a fine-tuned run"):
        _export(settings, model="SmolLM2-135M-Instruct", format="gguf", check_quality=True)
    with pytest.raises(ExportError, match="compares a GGUF with its source, not a merged"):
        _export(settings, model="SmolLM2-135M-Instruct", format="merged", check_quality=True)
