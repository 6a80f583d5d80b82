"""The files a run leaves next to its weights: ``garden.json``, ``training_config.json``, the card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from garden import units
from garden.engine.training.records import JobResult, PlannedRun
from garden.engine.training.spec import JobSpec
from garden.store import now

CARD_HYPERPARAMETERS = (
    "method",
    "epochs",
    "max_steps",
    "learning_rate",
    "lr_scheduler",
    "batch_size",
    "gradient_accumulation",
    "max_seq_len",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "seed",
)


def write_run_files(
    job_id: str,
    spec: JobSpec,
    plan: PlannedRun,
    result: JobResult,
    status: str,
    folder: Path | None = None,
) -> None:
    """Describe a finished (or stopped) run in ``folder`` (default ``result.output_dir``)."""
    out = folder or Path(result.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    hyperparameters = spec.model_dump(mode="json")
    meta = {
        "base_model": plan.model_path,
        "base_model_id": plan.model_id,
        "job_id": job_id,
        "dataset_id": plan.dataset_id,
        "dataset_name": plan.dataset_name,
        "method": spec.method,
        "hyperparameters": hyperparameters,
        "final_loss": result.final_loss,
        "final_eval_loss": result.final_eval_loss,
        "first_loss": result.first_loss,
        "steps": result.steps,
        "energy_kwh": result.energy_kwh,
        "emissions_kg": result.emissions_kg,
        "backend": result.backend,
        "precision": result.precision,
        "status": status,
        "created_at": now(),
    }
    (out / "garden.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    config = {
        "spec": hyperparameters,
        "backend": result.backend,
        "device": result.device,
        "precision": result.precision,
    }
    (out / "training_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (out / "README.md").write_text(model_card(meta), encoding="utf-8")


def model_card(meta: dict[str, Any]) -> str:
    """The model card (``README.md``) for the ``garden.json`` contents ``meta``."""
    spec = meta["hyperparameters"]
    rows = "\n".join(f"| {key} | {spec[key]} |" for key in CARD_HYPERPARAMETERS)
    return f"""---
base_model: {meta["base_model_id"]}
library_name: peft
tags: [model-garden, {spec["method"]}, sft]
---
# {spec["name"]}

Fine-tuned with Model Garden from **{meta["base_model_id"]}** on dataset
**{meta["dataset_name"]}** (`{meta["dataset_id"]}`), job `{meta["job_id"]}`
({meta["status"]}, {meta["steps"]} steps, backend {meta["backend"]}, {meta["precision"]}).

| result | value |
|---|---|
| first train loss | {units.number(meta["first_loss"])} |
| final train loss | {units.number(meta["final_loss"])} |
| final eval loss | {units.number(meta["final_eval_loss"])} |
| energy | {units.energy(meta["energy_kwh"])} |
| CO₂ | {units.co2(meta["emissions_kg"])} |

| hyperparameter | value |
|---|---|
{rows}

Files: `adapter/` (LoRA adapter), merged weights (`model.safetensors`), `training_config.json`,
`metrics.jsonl`.
"""
