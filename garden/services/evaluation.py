"""Evaluation of fine-tuned runs: held-out loss and perplexity, ROUGE-L and exact match on
held-out prompts, base versus tuned answers, and an optional LLM judge's win rate.

An evaluation asked for here runs in a separate worker process (the model never loads in the
app's process); the one at the end of every completed run runs in the training worker.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from pydantic import Field

from garden.config import Settings
from garden.engine.carbon.meter import CarbonMeter
from garden.engine.evaluation import EvalRequest, EvaluationResult, JudgeConfig, storage
from garden.engine.evaluation.plan import request_for_job
from garden.engine.training import JobRecord, queries
from garden.errors import DatasetError, GardenError, JobError
from garden.services import visitors
from garden.services.base import View, resolve
from garden.services.endpoints import Endpoint, check_endpoint
from garden.store import Store, get_store

__all__ = [
    "EvalPair",
    "EvaluationView",
    "JudgeEndpoint",
    "evaluate_run",
    "get_evaluation",
    "run_choices",
]


class EvalPair(View):
    """One held-out prompt: the reference answer, the base model's and the tuned model's."""

    prompt: str
    reference: str
    base: str
    tuned: str


class JudgeEndpoint(View):
    """An OpenAI-compatible endpoint to judge with, instead of ``EVAL_JUDGE_URL``."""

    base_url: str
    model: str
    api_key: str | None = None


class EvaluationView(View):
    """The newest evaluation of a run, or why it failed."""

    job_id: str
    model: str | None = Field(None, description="The fine-tuned model's id")
    dataset_id: str | None = None
    status: str = Field(description="completed or failed")
    eval_loss: float | None = None
    perplexity: float | None = None
    loss_rows: int = Field(0, description="Held-out rows the loss was computed on")
    rouge_l: float | None = Field(None, description="Mean ROUGE-L F1 of tuned answers, 0..1")
    exact_match: float | None = Field(None, description="Share of normalised exact matches")
    contains_match: float | None = None
    base_rouge_l: float | None = Field(None, description="ROUGE-L of the base model's answers")
    n: int = Field(0, description="Held-out prompts answered")
    judge_win_rate: float | None = None
    error: str | None = Field(None, description="Why the evaluation (or its judge) failed")
    pairs: list[EvalPair] = Field(default_factory=list)
    seconds: float | None = None
    in_training_run: bool = False
    energy_kwh: float | None = Field(
        None, description="Measured for an evaluation on demand (None at a run's end: inside it)"
    )
    emissions_kg: float | None = None
    created_at: float

    def summary(self) -> dict[str, Any]:
        """``{model, eval_loss, perplexity, rouge_l, exact_match, n, judge_win_rate?}``."""
        out: dict[str, Any] = {
            "model": self.model,
            "eval_loss": self.eval_loss,
            "perplexity": self.perplexity,
            "rouge_l": self.rouge_l,
            "exact_match": self.exact_match,
            "n": self.n,
        }
        if self.judge_win_rate is not None:
            out["judge_win_rate"] = self.judge_win_rate
        return out


def _store(settings: Settings | None) -> Store:
    return get_store(resolve(settings).db_path)


def _view(row: dict[str, Any]) -> EvaluationView:
    result = EvaluationResult.model_validate(row["result_json"]) if row["result_json"] else None
    facts = result.model_dump(exclude={"job_id", "judge_error", "pairs"}) if result else {}
    return EvaluationView(
        **{**facts, "job_id": row["job_id"], "dataset_id": row["dataset_id"]},
        status=row["status"],
        error=row["error"],
        pairs=[EvalPair.model_validate(p.model_dump()) for p in result.pairs] if result else [],
        created_at=row["created_at"],
    )


def find_run(store: Store, run: str) -> JobRecord:
    """A job by id, by name, or by its model's id (``finetuned/NAME``): the newest of a name."""
    name = run.removeprefix("finetuned/")
    if store.get("jobs", run) is not None:
        return queries.get_job(store, run)
    for job in queries.list_jobs(store, limit=500):
        if job.name == name and job.status == "completed":
            return job
    return queries.get_job(store, run)


def run_choices(*, settings: Settings | None = None) -> list[tuple[str, str]]:
    """``(label, job id)`` of the completed runs, newest first."""
    jobs = queries.list_jobs(_store(settings), limit=200, status="completed")
    return [(f"{job.name} ({job.id})", job.id) for job in jobs]


def get_evaluation(run: str, *, settings: Settings | None = None) -> EvaluationView | None:
    """The newest evaluation of a run (id, name or model id); None when it has none."""
    store = _store(settings)
    row = storage.latest_evaluation(store, find_run(store, run).id)
    return _view(row) if row is not None else None


def _judge(
    judge: JudgeEndpoint | None, settings: Settings
) -> tuple[JudgeConfig | None, str | None]:
    if judge is None:
        return None, None
    try:
        check_endpoint(Endpoint(base_url=judge.base_url), settings=settings)
    except GardenError as exc:
        return None, f"Judge not used: {exc.message}"
    return JudgeConfig(base_url=judge.base_url, model=judge.model, api_key=judge.api_key), None


def _evaluate_in_worker(request: dict[str, Any]) -> dict[str, Any]:
    from garden.engine.evaluation.run import evaluate

    return evaluate(EvalRequest.model_validate(request)).model_dump(mode="json")


def _run_in_worker(request: EvalRequest) -> EvaluationResult:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_evaluate_in_worker, request.model_dump(mode="json"))
        return EvaluationResult.model_validate(future.result())


def _metered(request: EvalRequest, job: JobRecord, settings: Settings) -> EvaluationResult:
    """The evaluation with its energy and CO₂ (CodeCarbon around the worker, kept as an
    "other" record on the Carbon tab); figures stay None where the meter is unavailable."""
    meter = CarbonMeter(kind="other", label=f"evaluation of {job.name}", settings=settings).start()
    try:
        result = _run_in_worker(request)
    finally:
        record = meter.stop()
    return result.model_copy(
        update={"energy_kwh": record.energy_kwh, "emissions_kg": record.emissions_kg}
    )


def evaluate_run(
    run: str,
    dataset: str | None = None,
    judge: JudgeEndpoint | None = None,
    *,
    settings: Settings | None = None,
) -> EvaluationView:
    """Evaluate a completed run (id, name or model id) on its held-out split, or on the held-out
    split of ``dataset``; store and return the result. The judge is ``judge`` when given (host
    rules as for remote endpoints), else ``EVAL_JUDGE_URL`` when set."""
    settings = resolve(settings)
    store = _store(settings)
    job = find_run(store, run)
    eval_path = dataset_id = None
    if dataset:
        from garden.data import get_dataset

        record = get_dataset(dataset, settings)
        if not record.eval_path.is_file() or record.eval_rows == 0:
            raise DatasetError(
                f"Dataset {record.name} has no held-out rows.",
                hint="Import it again with an eval fraction above 0.",
            )
        eval_path, dataset_id = str(record.eval_path), record.id
    request = request_for_job(job, settings, eval_path, dataset_id)
    judge_config, judge_error = _judge(judge, settings)
    if judge is not None:
        request = request.model_copy(update={"judge": judge_config})
    try:
        with visitors.in_flight("evaluation", settings=settings):
            result = _metered(request, job, settings)
    except GardenError:
        raise
    except Exception as exc:
        raise JobError(
            f"Evaluating {job.id} failed: {type(exc).__name__}: {str(exc)[:200]}",
            hint="See the app log for details.",
        ) from exc
    if judge_error:
        result = result.model_copy(update={"judge_error": judge_error})
    storage.save_evaluation(store, result)
    latest = storage.latest_evaluation(store, job.id)
    assert latest is not None
    return _view(latest)
