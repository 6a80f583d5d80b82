"""The Fine-tune tab."""

from __future__ import annotations

import gradio as gr

from garden.config import Settings


def build(settings: Settings) -> None:
    gr.Markdown("### Fine-tune\n_Coming soon: this tab lands with its own issue._")
