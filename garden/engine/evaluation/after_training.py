"""The evaluation at the end of a completed run, inside the training worker (and so inside the
run's energy metering). It never fails the run: a failure is logged and stored as one line."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

from garden.config import Settings
from garden.engine.evaluation.plan import request_for_outputs
from garden.engine.evaluation.records import EvaluationResult
from garden.engine.evaluation.run import evaluate
from garden.engine.evaluation.storage import save_evaluation, save_failure
from garden.engine.training.records import PlannedRun
from garden.engine.training.spec import JobSpec
from garden.errors import GardenError
from garden.store import get_store

Log = Callable[[str, str], None]


def evaluate_after_training(
    job_id: str, spec: JobSpec, plan: PlannedRun, model_dir: Path, settings: Settings, log: Log
) -> EvaluationResult | None:
    """Evaluate the model just saved in ``model_dir`` and store the result with the job; the
    result (None when off or failed)."""
    if not settings.eval_after_training:
        return None
    store = get_store(settings.db_path)
    try:
        log("INFO", "Evaluating the fine-tuned model on the held-out split")
        result = evaluate(request_for_outputs(job_id, spec, plan, model_dir, settings))
        save_evaluation(store, result.model_copy(update={"in_training_run": True}))
        log("INFO", f"Evaluation: {summary_line(result.eval_loss, result.rouge_l, result.n)}")
        return result
    except Exception as exc:
        reason = exc.message if isinstance(exc, GardenError) else f"{type(exc).__name__}: {exc}"
        reason = " ".join(reason.split())[:300]
        log("DEBUG", traceback.format_exc()[-3000:])
        log("WARNING", f"Evaluation failed (the run is kept): {reason}")
        try:
            save_failure(store, job_id, plan.dataset_id, reason)
        except Exception as store_exc:
            log("WARNING", f"Could not store the evaluation failure: {store_exc}")
        return None


def summary_line(eval_loss: float | None, rouge_l: float | None, n: int) -> str:
    loss = "n/a" if eval_loss is None else f"{eval_loss:.4f}"
    rouge = "n/a" if rouge_l is None else f"{rouge_l:.3f}"
    return f"eval loss {loss}, ROUGE-L {rouge} on {n} prompts"
