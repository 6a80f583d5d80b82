"""The model card (README.md with Hub front matter) that every export carries."""

from __future__ import annotations

from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from garden import units
from garden.config import Settings
from garden.engine.evaluation.storage import latest_completed
from garden.engine.export.source import ExportSource
from garden.engine.training.runfiles import CARD_HYPERPARAMETERS
from garden.store import get_store

LIBRARY_BY_FORMAT = {"adapter": "peft", "merged": "transformers", "gguf": "gguf", "ollama": "gguf"}
EVAL_FACTS = ("dataset_id", "eval_loss", "perplexity", "rouge_l", "exact_match", "n")
# (fact, model-index metric type, shown name)
INDEX_METRICS = (
    ("eval_loss", "loss", "Eval loss"),
    ("perplexity", "perplexity", "Perplexity"),
    ("rouge_l", "rougeL", "ROUGE-L"),
    ("exact_match", "exact_match", "Exact match"),
)


def card_facts(
    source: ExportSource,
    energy_kwh: float | None,
    emissions_kg: float | None,
    settings: Settings | None = None,
) -> dict:
    """The facts a card states, as plain data (also returned to the caller); with ``settings``
    also the run's newest evaluation."""
    meta = source.meta
    spec: dict[str, Any] = meta.get("hyperparameters") or {}
    evaluation = None
    if settings is not None and meta.get("job_id"):
        row = latest_completed(get_store(settings.db_path), [meta["job_id"]]).get(meta["job_id"])
        evaluation = {key: row[key] for key in EVAL_FACTS} if row else None
    return {
        "evaluation": evaluation,
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
    evaluation = facts.get("evaluation")
    if evaluation:
        extra["eval_results"] = _eval_results(evaluation, facts["dataset"])
        extra["model_name"] = source.name
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
| final train loss | {units.number(facts["final_loss"])} |
| final eval loss | {units.number(facts["final_eval_loss"])} |
| energy (training) | {units.energy(facts["energy_kwh"])} |
| CO₂ (training) | {units.co2(facts["emissions_kg"])} |
{_evaluation_rows(evaluation)}
| hyperparameter | value |
|---|---|
{rows or "| none | - |"}

{file_note}
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"


def _eval_results(evaluation: dict[str, Any], dataset: str | None) -> list[EvalResult]:
    """The evaluation as Hub ``model-index`` results (text generation on the held-out split)."""
    return [
        EvalResult(
            task_type="text-generation",
            dataset_type=str(evaluation["dataset_id"]),
            dataset_name=f"{dataset or evaluation['dataset_id']} (held-out split)",
            dataset_split="eval",
            metric_type=metric,
            metric_name=name,
            metric_value=round(float(evaluation[key]), 6),
        )
        for key, metric, name in INDEX_METRICS
        if evaluation.get(key) is not None
    ]


def _evaluation_rows(evaluation: dict[str, Any] | None) -> str:
    if not evaluation:
        return "| evaluation | none |\n"
    return (
        f"| perplexity (held-out) | {units.number(evaluation['perplexity'], '{:.2f}')} |\n"
        f"| ROUGE-L ({evaluation['n']} held-out prompts) | "
        f"{units.number(evaluation['rouge_l'], '{:.3f}')} |\n"
        f"| exact match | {units.number(evaluation['exact_match'], '{:.3f}')} |\n"
    )


def card_front_matter(text: str) -> dict[str, Any]:
    """The metadata of a card's front matter (for checks and tests)."""
    return ModelCard(text).data.to_dict()
