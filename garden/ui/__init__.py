"""The Gradio UI: one module per tab, assembled by ``build_app``. No torch imports here."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from garden import __version__
from garden.config import Settings, get_settings

TAB_NAMES = ("Data", "Fine-tune", "Chat", "Carbon")
DEMO_BANNER = (
    "**⚠️ Public demo:** anyone can use this app. Uploads are capped at {s.max_upload_mb} MB and "
    "training at {s.public_demo_max_steps} steps; do not upload private data."
)
ASSETS_DIR = Path(__file__).resolve().parent.parent.parent / "assets"


def app_css() -> str:
    css_file = ASSETS_DIR / "garden.css"
    return css_file.read_text(encoding="utf-8") if css_file.is_file() else ""


def app_theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue="emerald", secondary_hue="lime", neutral_hue="stone")


def build_app(settings: Settings | None = None) -> gr.Blocks:
    """Build the four-tab Blocks app. Heavy engines load lazily, on first use."""
    from garden.ui import carbon_tab, chat_tab, data_tab, finetune_tab

    settings = settings or get_settings()
    with gr.Blocks(title="Model Garden") as app:
        gr.Markdown(
            f"# 🌱 Model Garden <small>v{__version__}</small>\n"
            "Pick a dataset, fine-tune an open LLM, chat with it — and see what every run "
            "cost in energy and CO₂.",
            elem_id="garden-header",
        )
        if settings.public_demo:
            gr.Markdown(DEMO_BANNER.format(s=settings), elem_id="garden-demo-banner")
        with gr.Tabs():
            with gr.Tab("Data", id="data"):
                data_tab.build(settings)
            with gr.Tab("Fine-tune", id="finetune"):
                finetune_tab.build(settings)
            with gr.Tab("Chat", id="chat"):
                chat_tab.build(settings)
            with gr.Tab("Carbon", id="carbon"):
                carbon_tab.build(settings)
    return app
