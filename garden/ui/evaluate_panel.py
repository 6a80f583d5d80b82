"""The Evaluate section of the Fine-tune tab: pick a completed run, evaluate it, read its
metrics and its base-versus-tuned answers side by side."""

from __future__ import annotations

from typing import Any

import gradio as gr

from garden import present
from garden.config import Settings
from garden.services import evaluation
from garden.ui.boundary import code, guard, plain

PAIR_COLUMNS = ["prompt", "reference", "base", "tuned"]
INTRO = (
    "#### Evaluate\nHeld-out loss and perplexity, ROUGE-L and exact match on held-out prompts, "
    "and the base model's answers beside the tuned model's. Every completed run is evaluated "
    "when it ends; press **Evaluate** to run it again (a judge is used when `EVAL_JUDGE_URL` "
    "is set)."
)
NOT_EVALUATED = "_This run has no evaluation yet: press **Evaluate**._"


def metrics_markdown(view: evaluation.EvaluationView | None) -> str:
    if view is None:
        return NOT_EVALUATED
    if view.status != "completed":
        return f"> **Evaluation failed**: {plain(view.error or 'unknown error')}"
    lines = [
        f"**{code(view.model)}** on {code(view.dataset_id)} ({view.n} prompts): "
        f"eval loss **{present.number(view.eval_loss)}** · perplexity "
        f"**{present.number(view.perplexity, '{:.2f}')}** · ROUGE-L "
        f"**{present.number(view.rouge_l, '{:.3f}')}** (base "
        f"{present.number(view.base_rouge_l, '{:.3f}')}) · exact match "
        f"**{present.number(view.exact_match, '{:.3f}')}** · contains "
        f"{present.number(view.contains_match, '{:.3f}')}"
    ]
    if view.judge_win_rate is not None:
        lines.append(f"Judge win rate of the tuned model: **{view.judge_win_rate:.2f}**")
    if view.error:
        lines.append(f"> {plain(view.error)}")
    where = "in the training run (metered with it)" if view.in_training_run else "on demand"
    lines.append(f"<small>evaluated {where}, {present.local_time(view.created_at)}</small>")
    return "\n\n".join(lines)


def pair_rows(view: evaluation.EvaluationView | None) -> list[list[str]]:
    if view is None:
        return []
    return [[p.prompt, p.reference, p.base, p.tuned] for p in view.pairs]


class EvaluatePanel:
    """Layout and bindings of the Evaluate section."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        with gr.Accordion("Evaluate", open=False, elem_id="evaluate-panel"):
            gr.Markdown(INTRO)
            with gr.Row(equal_height=True):
                self.run = gr.Dropdown(
                    choices=self.choices(), label="Completed run", elem_id="evaluate-run", scale=4
                )
                self.button = gr.Button("Evaluate", elem_id="evaluate-btn", variant="primary")
                self.refresh = gr.Button("↻ Refresh list")
            self.status = gr.Markdown(elem_id="evaluate-status")
            self.pairs = gr.Dataframe(
                headers=PAIR_COLUMNS,
                label="Base vs tuned",
                interactive=False,
                wrap=True,
                elem_id="evaluate-pairs",
            )
        shown = [self.status, self.pairs]
        failed = guard("evaluating", self._failed, settings)
        self.button.click(failed(self.evaluate), self.run, shown, api_name="evaluate_run")
        self.run.change(failed(self.show), self.run, shown, show_progress="hidden")
        self.refresh.click(self.refresh_runs, None, self.run)

    def choices(self) -> list[tuple[str, str]]:
        try:
            return evaluation.run_choices(settings=self.settings)
        except Exception:
            return []

    def _answer(self, view: evaluation.EvaluationView | None) -> tuple[str, Any]:
        return metrics_markdown(view), gr.update(value=pair_rows(view), headers=PAIR_COLUMNS)

    def _failed(self, message: str) -> tuple[str, Any]:
        return message, gr.update(value=[], headers=PAIR_COLUMNS)

    def show(self, run: str | None) -> tuple[str, Any]:
        if not run:
            return self._failed("")
        return self._answer(evaluation.get_evaluation(run, settings=self.settings))

    def evaluate(self, run: str | None) -> tuple[str, Any]:
        if not run:
            return self._failed("Pick a completed run to evaluate.")
        return self._answer(evaluation.evaluate_run(run, settings=self.settings))

    def refresh_runs(self) -> Any:
        return gr.update(choices=self.choices())
