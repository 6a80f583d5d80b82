"""`model-garden eval RUN [--dataset ID] [--json]`: evaluate a fine-tuned run."""

from __future__ import annotations

import click
from rich.table import Table

from garden import present
from garden.cli.output import add_row, console, print_json
from garden.services import evaluation
from garden.services.training import JobView


def metrics_line(
    eval_loss: float | None, perplexity: float | None, rouge_l: float | None, n: int
) -> str:
    """``eval loss 1.2345 · perplexity 3.44 · ROUGE-L 0.412 (16 prompts)``."""
    return (
        f"eval loss {present.number(eval_loss)} · perplexity {present.number(perplexity, '{:.2f}')}"
        f" · ROUGE-L {present.number(rouge_l, '{:.3f}')} ({n} prompts)"
    )


def evaluation_line(job: JobView) -> str:
    """A run's newest evaluation, as ``jobs show`` prints it."""
    judged = job.eval_judge_win_rate
    return (
        f"perplexity {present.number(job.eval_perplexity, '{:.2f}')} · ROUGE-L "
        f"{present.number(job.eval_rouge_l, '{:.3f}')} · exact match "
        f"{present.number(job.eval_exact_match, '{:.3f}')}"
        + (f" · judge win rate {judged:.2f}" if judged is not None else "")
    )


@click.command("eval")
@click.argument("run")
@click.option("--dataset", default=None, help="Evaluate on this dataset's held-out split.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_command(run: str, dataset: str | None, as_json: bool) -> None:
    """Evaluate RUN (a job id, run name or finetuned/NAME): held-out loss and perplexity,
    ROUGE-L and exact match, base versus tuned answers, and a judge when one is configured."""
    if as_json:
        print_json(evaluation.evaluate_run(run, dataset).summary())
        return
    with console.status(f"Evaluating {run}…"):
        view = evaluation.evaluate_run(run, dataset)
    console.print(metrics_line(view.eval_loss, view.perplexity, view.rouge_l, view.n))
    console.print(
        f"exact match {present.number(view.exact_match, '{:.3f}')} · contains "
        f"{present.number(view.contains_match, '{:.3f}')} · base ROUGE-L "
        f"{present.number(view.base_rouge_l, '{:.3f}')}"
        + (
            f" · judge win rate {view.judge_win_rate:.2f}"
            if view.judge_win_rate is not None
            else ""
        )
    )
    if view.error:
        console.print(view.error, style="yellow", highlight=False, markup=False)
    table = Table(title="Base vs tuned")
    for column in ("prompt", "reference", "base", "tuned"):
        table.add_column(column, overflow="fold")
    for pair in view.pairs:
        add_row(table, pair.prompt, pair.reference, pair.base, pair.tuned)
    console.print(table)
