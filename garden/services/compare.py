"""Compare runs: did fine-tuning help, and at what cost?

Two or more runs side by side, read from the store only (nothing is loaded or evaluated here):
what each run trained (base model, dataset, objective, steps), its losses, its newest completed
evaluation (perplexity, ROUGE-L, exact match, judge win rate), its training energy and CO₂, and
the answers its evaluation stored for the held-out prompts the runs share, beside the base
model's. The runs that no other run beats on both ROUGE-L and CO₂ form the Pareto front.

Every limit (how many runs, duplicates, unknown runs) is checked here, so the tab, the CLI and
REST get the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import Field

from garden import units
from garden.config import Settings
from garden.engine.evaluation import EvaluationResult
from garden.engine.evaluation.storage import latest_completed, latest_evaluation
from garden.engine.training import JobRecord
from garden.errors import ConfigError, JobError
from garden.services.base import View, resolve
from garden.services.evaluation import find_run
from garden.services.training import JobView, get
from garden.store import Store, get_store

__all__ = [
    "MAX_RUNS",
    "MIN_RUNS",
    "AnswerRow",
    "ComparedRun",
    "ComparisonView",
    "UnknownRunError",
    "answer_table",
    "compare_runs",
    "fact_table",
    "pareto_front",
]

MIN_RUNS = 2
MAX_RUNS = 8
NOT_EVALUATED = "not evaluated"
EVALUATE_HINT = (
    "Evaluate it: `model-garden eval {run}`, Evaluate in the Fine-tune tab, or "
    "POST /api/v1/training/jobs/{run}/evaluate."
)
NO_ANSWER_ENERGY = (
    "Energy per 1,000 answers comes from an evaluation on demand, which is metered (the one at "
    "a run's end is inside the run's training energy): evaluate the runs to see it."
)


class UnknownRunError(JobError):
    """A run that is not in the store (REST answers 404)."""


class ComparedRun(View):
    """One run in a comparison; a fact the store does not hold is None."""

    job_id: str
    name: str
    status: str
    model: str = Field(description="The fine-tuned model's id, finetuned/NAME")
    base_model: str | None = None
    dataset: str | None = Field(None, description="The dataset it trained on (name)")
    objective: str = "sft"
    steps: int = 0
    final_loss: float | None = Field(None, description="Final train loss")
    final_eval_loss: float | None = Field(None, description="Final eval loss during training")
    evaluation: str = Field(NOT_EVALUATED, description="completed, failed or not evaluated")
    evaluated_on: str | None = Field(None, description="Dataset id of the evaluation")
    eval_loss: float | None = Field(None, description="The evaluation's held-out loss")
    perplexity: float | None = None
    rouge_l: float | None = Field(None, description="Mean ROUGE-L F1 of the tuned answers")
    base_rouge_l: float | None = Field(None, description="ROUGE-L of the base model's answers")
    exact_match: float | None = None
    judge_win_rate: float | None = None
    answered: int = Field(0, description="Held-out prompts the evaluation answered")
    energy_kwh: float | None = Field(None, description="Training energy")
    emissions_kg: float | None = Field(None, description="Training kg CO₂-equivalent")
    kwh_per_1000_answers: float | None = Field(
        None, description="Measured evaluation energy per 1,000 answers (when measured)"
    )
    pareto: bool = Field(False, description="No other run has higher ROUGE-L and lower CO₂")
    note: str | None = Field(None, description="What is missing and how to get it")


class AnswerRow(View):
    """One held-out prompt every evaluated run answered: the reference, the base models'
    answers (by base model) and each run's answer (by job id)."""

    prompt: str
    reference: str
    base: dict[str, str] = Field(default_factory=dict)
    tuned: dict[str, str] = Field(default_factory=dict)


class ComparisonView(View):
    """Runs side by side, their shared held-out answers and their Pareto front."""

    runs: list[ComparedRun]
    answers: list[AnswerRow] = Field(default_factory=list)
    pareto: list[str] = Field(default_factory=list, description="Job ids on the Pareto front")
    status: str = Field(description="One line for people: what was compared")
    notes: list[str] = Field(default_factory=list)


# The Pareto front ---------------------------------------------------------------------------


def pareto_front(points: Mapping[str, tuple[float | None, float | None]]) -> list[str]:
    """The keys of ``{key: (quality, cost)}`` that no other point beats: none has quality at
    least as high and cost at least as low, one of them strictly. Points missing either figure
    are left out; the order of ``points`` is kept."""
    known = {
        key: (quality, cost)
        for key, (quality, cost) in points.items()
        if quality is not None and cost is not None
    }

    def beaten(quality: float, cost: float) -> bool:
        return any(
            q >= quality and c <= cost and (q > quality or c < cost) for q, c in known.values()
        )

    return [key for key, (quality, cost) in known.items() if not beaten(quality, cost)]


# Reading runs -------------------------------------------------------------------------------


def _resolve_runs(store: Store, runs: Sequence[str]) -> list[JobRecord]:
    names = [str(run).strip() for run in runs if str(run).strip()]
    if len(names) < MIN_RUNS:
        raise ConfigError(
            f"Pick at least {MIN_RUNS} runs to compare ({len(names)} given).",
            hint="Name two or more runs: ids or names from `model-garden jobs list`.",
        )
    if len(names) > MAX_RUNS:
        raise ConfigError(
            f"At most {MAX_RUNS} runs can be compared at once ({len(names)} given).",
            hint="Compare fewer runs, e.g. the best few of `model-garden jobs list`.",
        )
    jobs: list[JobRecord] = []
    for name in names:
        try:
            job = find_run(store, name)
        except JobError as exc:
            raise UnknownRunError(
                f"Unknown run {name[:80]!r}.", hint="`model-garden jobs list` shows the runs."
            ) from exc
        if any(seen.id == job.id for seen in jobs):
            raise ConfigError(
                f"Run {job.id} ({job.name}) is listed twice.",
                hint="Name each run once.",
            )
        jobs.append(job)
    return jobs


def _answer_energy(result: Mapping[str, Any]) -> float | None:
    """kWh per 1,000 answers, where an evaluation on demand measured its energy: all of it
    (model loading and the held-out loss too) over the answers it generated, the tuned model's
    and the base model's, so an upper bound for one answer of the run's model."""
    energy, prompts = result.get("energy_kwh"), result.get("n") or 0
    if not isinstance(energy, (int, float)) or not prompts:
        return None
    return float(energy) / (2 * prompts) * 1000


def _row(job: JobRecord, view: JobView, evaluation: Mapping[str, Any] | None) -> ComparedRun:
    facts: dict[str, Any] = {
        "job_id": job.id,
        "name": job.name,
        "status": job.status,
        "model": f"finetuned/{job.name}",
        "base_model": (job.plan.model_id if job.plan else None)
        or (job.spec.base_model if job.spec else None),
        "dataset": job.plan.dataset_name if job.plan else None,
        "objective": view.objective,
        "steps": view.step,
        "final_loss": view.loss,
        "final_eval_loss": view.eval_loss,
        "energy_kwh": view.energy_kwh,
        "emissions_kg": view.emissions_kg,
    }
    if evaluation is None:
        note = EVALUATE_HINT.format(run=job.id)
        if job.status != "completed":
            note = f"Run is {job.status}: only a completed run has a model to evaluate."
        return ComparedRun(**facts, note=note)
    result = EvaluationResult.model_validate(evaluation["result_json"])
    return ComparedRun(
        **facts,
        evaluation="completed",
        evaluated_on=evaluation["dataset_id"],
        eval_loss=result.eval_loss,
        perplexity=result.perplexity,
        rouge_l=result.rouge_l,
        base_rouge_l=result.base_rouge_l,
        exact_match=result.exact_match,
        judge_win_rate=result.judge_win_rate,
        answered=result.n,
        kwh_per_1000_answers=_answer_energy(evaluation["result_json"]),
    )


def _failed_note(store: Store, job: JobRecord) -> str | None:
    """Why a run's newest evaluation failed, if it did."""
    newest = latest_evaluation(store, job.id)
    if newest is None or newest["status"] != "failed":
        return None
    return f"Its evaluation failed: {newest['error'] or 'unknown error'}. " + (
        EVALUATE_HINT.format(run=job.id)
    )


def _answers(
    rows: list[ComparedRun], evaluations: Mapping[str, Mapping[str, Any]]
) -> list[AnswerRow]:
    """The held-out prompts every evaluated run answered, in the first run's order."""
    evaluated = [row for row in rows if row.job_id in evaluations]
    if not evaluated:
        return []
    pairs = {
        row.job_id: {
            pair.prompt: pair
            for pair in EvaluationResult.model_validate(
                evaluations[row.job_id]["result_json"]
            ).pairs
        }
        for row in evaluated
    }
    first = pairs[evaluated[0].job_id]
    shared = [prompt for prompt in first if all(prompt in found for found in pairs.values())]
    answers: list[AnswerRow] = []
    for prompt in shared:
        base: dict[str, str] = {}
        for row in evaluated:
            base.setdefault(row.base_model or "base", pairs[row.job_id][prompt].base)
        answers.append(
            AnswerRow(
                prompt=prompt,
                reference=first[prompt].reference,
                base=base,
                tuned={row.job_id: pairs[row.job_id][prompt].tuned for row in evaluated},
            )
        )
    return answers


def _status(rows: list[ComparedRun], answers: list[AnswerRow], front: list[str]) -> str:
    evaluated = sum(1 for row in rows if row.evaluation == "completed")
    names = {row.job_id: row.name for row in rows}
    line = f"Compared {len(rows)} runs ({evaluated} evaluated) on {len(answers)} shared prompts"
    if front:
        return f"{line}; Pareto front (ROUGE-L vs CO₂): {', '.join(names[j] for j in front)}."
    return f"{line}; no Pareto front: no run has both a ROUGE-L and a CO₂ figure."


def compare_runs(runs: list[str], *, settings: Settings | None = None) -> ComparisonView:
    """Compare ``runs`` (ids, names or ``finetuned/NAME``; 2 to ``MAX_RUNS``, each once).

    Raises ``ConfigError`` for too few, too many or repeated runs and ``UnknownRunError`` for a
    run that does not exist; missing facts of a run are None, never an error."""
    settings = resolve(settings)
    store = get_store(settings.db_path)
    jobs = _resolve_runs(store, runs)
    evaluations = latest_completed(store, [job.id for job in jobs])
    evaluations = {k: v for k, v in evaluations.items() if v.get("result_json")}
    rows = [_row(job, get(job.id, settings=settings), evaluations.get(job.id)) for job in jobs]
    rows = [
        row.model_copy(update={"note": _failed_note(store, job) or row.note})
        if row.evaluation != "completed"
        else row
        for row, job in zip(rows, jobs, strict=True)
    ]
    front = pareto_front({row.job_id: (row.rouge_l, row.emissions_kg) for row in rows})
    rows = [row.model_copy(update={"pareto": row.job_id in front}) for row in rows]
    answers = _answers(rows, evaluations)
    notes = [f"{row.name}: {row.note}" for row in rows if row.note]
    if sum(1 for row in rows if row.evaluation == "completed") > 1 and not answers:
        notes.append(
            "The runs' evaluations share no held-out prompt (evaluated on different data): "
            "evaluate them on one dataset, e.g. `model-garden eval RUN --dataset ID`."
        )
    if all(row.kwh_per_1000_answers is None for row in rows):
        notes.append(NO_ANSWER_ENERGY)
    return ComparisonView(
        runs=rows, answers=answers, pareto=front, status=_status(rows, answers, front), notes=notes
    )


# The table every front end shows ------------------------------------------------------------


def _score(value: float | None, pattern: str = "{:.3f}") -> str:
    return units.number(value, pattern)


FACTS: list[tuple[str, Callable[[ComparedRun], str]]] = [
    ("run", lambda r: r.name),
    ("job id", lambda r: r.job_id),
    ("status", lambda r: r.status),
    ("base model", lambda r: r.base_model or units.MISSING),
    ("dataset", lambda r: r.dataset or units.MISSING),
    ("objective", lambda r: r.objective),
    ("steps", lambda r: str(r.steps)),
    ("final loss", lambda r: units.number(r.final_loss)),
    ("final eval loss", lambda r: units.number(r.final_eval_loss)),
    ("evaluation", lambda r: r.evaluation),
    ("held-out loss", lambda r: units.number(r.eval_loss)),
    ("perplexity", lambda r: _score(r.perplexity, "{:.2f}")),
    ("ROUGE-L", lambda r: _score(r.rouge_l)),
    ("base ROUGE-L", lambda r: _score(r.base_rouge_l)),
    ("exact match", lambda r: _score(r.exact_match)),
    ("judge win rate", lambda r: _score(r.judge_win_rate, "{:.2f}")),
    ("prompts answered", lambda r: str(r.answered) if r.answered else units.MISSING),
    ("training energy", lambda r: units.energy(r.energy_kwh)),
    ("training CO₂e", lambda r: units.co2(r.emissions_kg)),
    ("energy / 1,000 answers", lambda r: units.energy(r.kwh_per_1000_answers)),
    ("Pareto front", lambda r: "yes" if r.pareto else "no"),
]


def fact_table(view: ComparisonView) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)``: one row per fact, one column per run, figures in their units."""
    headers = ["", *(row.name for row in view.runs)]
    return headers, [[label, *(show(row) for row in view.runs)] for label, show in FACTS]


def answer_table(view: ComparisonView) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)``: prompt, reference, each base model's answer, each run's answer."""
    bases = list(dict.fromkeys(base for answer in view.answers for base in answer.base))
    runs = [row for row in view.runs if view.answers and row.job_id in view.answers[0].tuned]
    headers = [
        "prompt",
        "reference",
        *(f"base: {base}" for base in bases),
        *(row.name for row in runs),
    ]
    rows = [
        [
            answer.prompt,
            answer.reference,
            *(answer.base.get(base, "") for base in bases),
            *(answer.tuned.get(row.job_id, "") for row in runs),
        ]
        for answer in view.answers
    ]
    return headers, rows
