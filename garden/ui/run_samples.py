"""The Fine-tune tab's live view of a GRPO run: a few completions sampled at the latest logged
steps, each with its score from every reward function and the weighted total."""

from __future__ import annotations

from typing import Any

import gradio as gr

from garden import present
from garden.services.training import JobView

LABEL = "Sampled completions (GRPO, newest first): each reward and the weighted total"


def samples_frame() -> gr.Dataframe:
    """The table, hidden until the viewed run has samples."""
    return gr.Dataframe(
        label=LABEL, interactive=False, wrap=True, visible=False, elem_id="finetune-samples"
    )


def samples_update(job: JobView | None) -> Any:
    """The table for ``job``: its samples when it has some, else hidden."""
    if job is None or not job.samples:
        return gr.update(visible=False)
    headers, rows = present.sample_table(job)
    return gr.update(value={"headers": headers, "data": rows}, visible=True)
