"""The Compare runs section of the Fine-tune tab: pick two or more runs, read one table of what
they trained and scored, a Pareto chart of ROUGE-L against CO₂, and their answers side by side.
The work is ``garden.services.compare``; this module is layout, bindings and the chart."""

from __future__ import annotations

from typing import Any

import gradio as gr
import plotly.graph_objects as go

from garden.config import Settings
from garden.services import compare, evaluation
from garden.services.compare import ComparisonView
from garden.ui.boundary import guard, plain
from garden.ui.carbon_charts import empty_figure

INTRO = (
    "#### Compare runs\nDid fine-tuning help, and at what cost? Pick two or more completed runs: "
    f"one table of their settings, losses, scores and training CO₂ (at most {compare.MAX_RUNS} "
    "runs), the Pareto front of ROUGE-L against CO₂ (the runs no other run beats on both), and "
    "their answers to the held-out prompts they share beside the base model's."
)
FRONT_COLOUR, OTHER_COLOUR = "#059669", "#a8a29e"


def pareto_figure(view: ComparisonView) -> go.Figure:
    """Each evaluated run's ROUGE-L against its training CO₂e; the Pareto front is marked and
    joined by a line."""
    plotted = [r for r in view.runs if r.rouge_l is not None and r.emissions_kg is not None]
    if not plotted:
        return empty_figure("No run has both a ROUGE-L and a CO₂ figure: evaluate the runs")
    fig = go.Figure()
    front = sorted((r for r in plotted if r.pareto), key=lambda r: r.emissions_kg or 0.0)
    for on_front, rows in ((True, front), (False, [r for r in plotted if not r.pareto])):
        if not rows:
            continue
        fig.add_trace(
            go.Scatter(
                x=[(r.emissions_kg or 0.0) * 1000 for r in rows],
                y=[r.rouge_l for r in rows],
                name="Pareto front" if on_front else "beaten on both",
                mode="lines+markers+text" if on_front else "markers+text",
                text=[r.name for r in rows],
                textposition="top center",
                line={"color": FRONT_COLOUR, "dash": "dot", "shape": "hv"},
                marker={
                    "size": 14 if on_front else 11,
                    "color": FRONT_COLOUR if on_front else OTHER_COLOUR,
                    "symbol": "star" if on_front else "circle",
                },
                hovertemplate="%{text}<br>%{x:.4g} g CO₂e<br>ROUGE-L %{y:.3f}<extra></extra>",
            )
        )
    fig.update_xaxes(title="training g CO₂e (lower is better)", rangemode="tozero")
    fig.update_yaxes(title="ROUGE-L (higher is better)", rangemode="tozero")
    fig.update_layout(
        title="Quality against CO₂: the Pareto front",
        template="plotly_white",
        height=360,
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def status_markdown(view: ComparisonView) -> str:
    """The service's status line, then its notes."""
    lines = [plain(view.status), *(f"- {plain(note)}" for note in view.notes)]
    return "\n\n".join(lines)


class ComparePanel:
    """Layout and bindings of the Compare runs section."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        with gr.Accordion("Compare runs", open=False, elem_id="compare-panel"):
            gr.Markdown(INTRO)
            with gr.Row(equal_height=True):
                self.runs = gr.Dropdown(
                    choices=self.choices(),
                    multiselect=True,
                    max_choices=compare.MAX_RUNS,
                    label="Runs to compare",
                    elem_id="compare-runs",
                    scale=4,
                )
                self.button = gr.Button("Compare", elem_id="compare-btn", variant="primary")
                self.refresh = gr.Button("↻ Refresh list")
            self.status = gr.Markdown(elem_id="compare-status")
            self.facts = gr.Dataframe(
                label="Runs side by side", interactive=False, wrap=True, elem_id="compare-facts"
            )
            self.chart = gr.Plot(label="ROUGE-L vs CO₂e", elem_id="compare-pareto")
            self.answers = gr.Dataframe(
                label="Answers to the shared held-out prompts",
                interactive=False,
                wrap=True,
                elem_id="compare-answers",
            )
        shown = [self.status, self.facts, self.chart, self.answers]
        failed = guard("comparing runs", self._failed, settings)
        self.button.click(failed(self.compare), self.runs, shown, api_name="compare_runs")
        self.refresh.click(self.refresh_runs, None, self.runs)

    def choices(self) -> list[tuple[str, str]]:
        try:
            return evaluation.run_choices(settings=self.settings)
        except Exception:
            return []

    def _failed(self, message: str) -> tuple[str, Any, Any, Any]:
        return message, gr.update(value=[]), empty_figure("Nothing compared"), gr.update(value=[])

    def compare(self, runs: list[str] | None) -> tuple[str, Any, Any, Any]:
        """The comparison of ``runs``: status, facts table, Pareto chart, answers table."""
        view = compare.compare_runs(list(runs or []), settings=self.settings)
        headers, rows = compare.fact_table(view)
        answer_headers, answer_rows = compare.answer_table(view)
        return (
            status_markdown(view),
            gr.update(value=rows, headers=headers),
            pareto_figure(view),
            gr.update(value=answer_rows, headers=answer_headers),
        )

    def refresh_runs(self) -> Any:
        return gr.update(choices=self.choices())
