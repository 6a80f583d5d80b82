"""Export: a real short LoRA run exported as adapter, merged safetensors and GGUF."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

from garden.errors import ExportError

FACTS = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_facts.jsonl"
TINY = {"batch_size": 4, "max_seq_len": 128, "lora_r": 8, "lora_alpha": 16, "warmup_ratio": 0.0}
QUESTION = [{"role": "user", "content": "Who founded the Moonwell Garden?"}]


@pytest.fixture(scope="module")
def settings(tmp_path_factory, default_model_path):
    """A private storage whose base models are the session's prepared default model."""
    from garden.config import Settings

    models = tmp_path_factory.mktemp("export") / "models"
    (models / "base").mkdir(parents=True)
    (models / "base" / default_model_path.name).symlink_to(default_model_path)
    settings = Settings(_env_file=None, storage_root=models.parent / "storage", models_dir=models)
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
    inputs = tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = output[0, inputs["input_ids"].shape[1] :].tolist()
    return (
        answer[: answer.index(tokenizer.eos_token_id)]
        if tokenizer.eos_token_id in answer
        else answer
    )


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
def test_merged_answers_like_the_peft_model_and_gguf_round_trips(settings, run):
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
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    gguf_tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    gguf_ids = _greedy_ids(gguf_model, gguf_tokenizer)
    assert tokenizer.decode(gguf_ids).strip() == tokenizer.decode(merged_ids).strip()
    assert _card(gguf_path.parent)[0]["library_name"] == "gguf"


def test_push_offline_fails_fast_before_any_export(settings):
    started = time.monotonic()
    with pytest.raises(ExportError, match="offline mode is on"):
        _export(settings, model="SmolLM2-135M-Instruct", format="merged", push_to="alice/smol")
    assert time.monotonic() - started < 30
    assert not list(settings.exports_root.glob("SmolLM2-135M-Instruct-merged*"))


def test_bad_requests_are_refused_with_one_clear_line(settings):
    with pytest.raises(ExportError, match="has no LoRA adapter"):
        _export(settings, model="SmolLM2-135M-Instruct", format="adapter")
    with pytest.raises(ExportError, match="--quant applies to GGUF exports only"):
        _export(settings, model="SmolLM2-135M-Instruct", format="merged", quant="q8_0")
    with pytest.raises(ExportError, match="not a Hugging Face repository id"):
        _export(settings, model="SmolLM2-135M-Instruct", format="merged", push_to="bad id!")
