"""The Fine-tune tab's view of one run: the components, and the runs table's pick."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import gradio as gr
from gradio.components import Component

from garden.ui.run_samples import samples_frame
from garden.ui.run_status import NO_RUNS, RUN_COLUMNS

FOLLOW_ACTIVE = ""


@dataclass
class RunView:
    """The components that show a run; handlers answer ``{component: value}`` for these."""

    status: gr.Markdown
    loss_plot: gr.Plot
    lr_plot: gr.Plot
    samples: gr.Dataframe
    logs: gr.Textbox
    runs: gr.Dataframe
    viewed: gr.Dropdown

    def components(self) -> list[Component]:
        return [getattr(self, field.name) for field in fields(self)]


def pick_run(evt: gr.SelectData, table: Any) -> str:
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    try:
        return str(table.iloc[row, 0])
    except (AttributeError, IndexError, TypeError):
        return FOLLOW_ACTIVE


def run_view() -> RunView:
    """The run's view under the form: which run, its status, curves, samples, log, the runs."""
    viewed = gr.Dropdown(
        [FOLLOW_ACTIVE],
        value=FOLLOW_ACTIVE,
        label="Showing run (empty = follow the active run)",
        allow_custom_value=True,
    )
    status = gr.Markdown(NO_RUNS, elem_id="finetune-status")
    with gr.Row():
        loss_plot = gr.Plot(label="Loss")
        lr_plot = gr.Plot(label="Learning rate")
    samples = samples_frame()
    logs = gr.Textbox(label="Log", lines=8, max_lines=8, autoscroll=True, interactive=False)
    runs = gr.Dataframe(
        headers=RUN_COLUMNS, label="Runs (click one to see its curves)", interactive=False
    )
    return RunView(status, loss_plot, lr_plot, samples, logs, runs, viewed)
