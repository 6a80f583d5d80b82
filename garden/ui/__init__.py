"""The Gradio UI: one module per tab, assembled by ``build_app``. No torch imports here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from garden import __version__
from garden.config import Settings, get_settings
from garden.ui.boundary import OnShow

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


def _on_show(tabs: list[tuple[gr.Tab, OnShow | None]]) -> None:
    """Opening a tab refreshes its lists (a dataset saved or a run finished in another tab is
    there) and lets only its own timers tick: charts re-drawn on hidden tabs cost a 2-core
    machine CPU that training and chat need."""
    timers = [timer for _, shown in tabs if shown for timer in shown.timers]
    for tab, shown in tabs:
        own = [timer in shown.timers if shown else False for timer in timers]
        lists = list(shown.outputs) if shown else []
        handler = shown.handler if shown and lists else None

        def opened(handler: Any = handler, own: list[bool] = own) -> tuple[Any, ...]:
            refreshed = handler() if handler else ()
            return (*refreshed, *(gr.Timer(active=active) for active in own))

        tab.select(opened, None, [*lists, *timers], show_progress="hidden")


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
            with gr.Tab("Data", id="data") as data:
                data_tab.build(settings)
            with gr.Tab("Fine-tune", id="finetune") as finetune:
                finetune_shown = finetune_tab.build(settings)
            with gr.Tab("Chat", id="chat") as chat:
                chat_shown = chat_tab.build(settings)
            with gr.Tab("Carbon", id="carbon") as carbon:
                carbon_shown = carbon_tab.build(settings)
        _on_show(
            [(data, None), (finetune, finetune_shown), (chat, chat_shown), (carbon, carbon_shown)]
        )
    return app
