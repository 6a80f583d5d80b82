"""The model card (README.md with Hub front matter) that every export carries."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from garden import present
from garden.engine.export.source import ExportSource
from garden.engine.training.runfiles import CARD_HYPERPARAMETERS

LIBRARY_BY_FORMAT = {"adapter": "peft", "merged": "transformers", "gguf": "gguf"}


def card_facts(source: ExportSource, energy_kwh: float | None, emissions_kg: float | None) -> dict:
    """The facts a card states, as plain data (also returned to the caller)."""
    meta = source.meta
    spec: dict[str, Any] = meta.get("hyperparameters") or {}
    return {
        "base_model": source.base_model_id,
        "dataset": meta.get("dataset_name") or meta.get("dataset_id"),
        "dataset_id": meta.get("dataset_id"),
        "job_id": meta.get("job_id"),
        "hyperparameters": {key: spec[key] for key in CARD_HYPERPARAMETERS if key in spec},
        "final_loss": meta.get("final_loss"),
        "final_eval_loss": meta.get("final_eval_loss"),
        "energy_kwh": energy_kwh,
        "emissions_kg": emissions_kg,
    }


def model_card(source: ExportSource, export_format: str, facts: dict, file_note: str) -> str:
    """README.md text: Hub metadata front matter, then what the model is and what it cost."""
    extra: dict[str, Any] = {}
    if facts["emissions_kg"] is not None:
        extra["co2_eq_emissions"] = {
            "emissions": round(facts["emissions_kg"] * 1000.0, 6),
            "source": "CodeCarbon",
            "training_type": "fine-tuning",
        }
    data = ModelCardData(
        base_model=facts["base_model"],
        library_name=LIBRARY_BY_FORMAT[export_format],
        tags=["model-garden", export_format, *(["lora"] if source.adapter_dir else [])],
        pipeline_tag="text-generation",
        **extra,
    )
    rows = "\n".join(f"| {key} | {value} |" for key, value in facts["hyperparameters"].items())
    trained = (
        f"Fine-tuned with Model Garden from **{facts['base_model']}** on dataset "
        f"**{facts['dataset']}** (job `{facts['job_id']}`)."
        if facts["job_id"]
        else f"**{facts['base_model']}** exported by Model Garden (not fine-tuned: no dataset)."
    )
    body = f"""
# {source.name} ({export_format})

{trained}

| fact | value |
|---|---|
| base model | {facts["base_model"]} |
| dataset | {facts["dataset"] or "none"} |
| final train loss | {present.number(facts["final_loss"])} |
| final eval loss | {present.number(facts["final_eval_loss"])} |
| energy (training) | {present.energy(facts["energy_kwh"])} |
| CO₂ (training) | {present.co2(facts["emissions_kg"])} |

| hyperparameter | value |
|---|---|
{rows or "| none | - |"}

{file_note}
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"


def card_front_matter(text: str) -> dict[str, Any]:
    """The metadata of a card's front matter (for checks and tests)."""
    return ModelCard(text).data.to_dict()
