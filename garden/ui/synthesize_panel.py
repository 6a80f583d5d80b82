"""The Data tab's Synthesize section: a teacher writes question/answer pairs about uploaded
documents, a person accepts, edits or rejects them, and the kept ones are saved as a dataset."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import gradio as gr

from garden import present
from garden.config import Settings
from garden.errors import DatasetError
from garden.services import datasets, synthesis
from garden.services.synthesis import DocumentSource, PairView, SynthesisView
from garden.ui.boundary import plain, report, visitor

HEADERS = ["accept", "question", "answer", "source", "passage", "support", "dropped"]
TYPES: list[Literal["str", "number", "bool"]] = [
    "bool", "str", "str", "str", "number", "number", "str"
]  # fmt: skip
INTRO = (
    "#### Synthesize from your documents\n"
    "A teacher model writes question/answer pairs about each passage of your `.txt`, `.md` or "
    "`.pdf` files. Pairs whose question repeats one seen before, or whose answer shares less "
    f"than {synthesis.SUPPORT_THRESHOLD:.0%} of its content words with its passage "
    "(string overlap), are unticked. Tick, edit or untick pairs, then save: the dataset keeps "
    "the generation's energy and CO₂ (also on the Carbon tab)."
)


def _rows(view: SynthesisView) -> list[list[Any]]:
    return [
        [p.accepted, p.question, p.answer, p.source, p.passage, p.support, p.dropped or ""]
        for p in view.pairs
    ]


def _summary(view: SynthesisView) -> str:
    dropped = ", ".join(f"{count} {why}" for why, count in view.dropped.items() if count)
    cost = present.synthesis_cost(view.energy_kwh, view.emissions_kg, remote=view.remote)
    return (
        f"**{plain(view.teacher)}** wrote {view.generated} pairs about {view.prompts} of "
        f"{view.passages} passages: **{view.kept} kept**"
        + (f", dropped {dropped}" if dropped else "")
        + (f"; {view.unparseable} replies held no pair" if view.unparseable else "")
        + f". Energy: {cost}."
    )


def run_generate(
    settings: Settings,
    uploaded: Callable[[str], str],
    files: list[str] | None,
    bundled: list[str] | None,
    teacher: str | None,
    teacher_model: str,
    api_key: str,
    n: float | None,
    name: str,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's progress idiom
) -> list[Any]:
    try:
        documents: list[DocumentSource | str] = [
            DocumentSource(kind="upload", value=uploaded(path)) for path in files or []
        ]
        documents += [DocumentSource(kind="bundled", value=value) for value in bundled or []]
        request = synthesis.SynthesisRequest(
            documents=documents, name=name, n=int(n or 0), teacher=teacher or None,
            teacher_model=teacher_model or None, api_key=api_key or None,
        )  # fmt: skip
        view = synthesis.synthesize(request, settings=settings, progress=progress)
    except Exception as exc:
        return [f"⚠️ {report(exc, 'synthesising pairs', settings)}", gr.update(), None]
    return [_summary(view), _rows(view), view]


def run_save(
    settings: Settings,
    refresh: Callable[[], list[Any]],
    view: SynthesisView | None,
    table: list[list[Any]] | None,
    eval_fraction: float,
) -> list[Any]:
    try:
        if view is None:
            raise DatasetError("Nothing generated yet.", hint="Press Generate first.")
        pairs = [
            PairView(
                accepted=bool(accept),
                question=str(question or ""),
                answer=str(answer or ""),
                source=str(source),
                passage=int(passage or 0),
                support=float(support or 0),
                dropped=str(dropped) or None,
            )
            for accept, question, answer, source, passage, support, dropped in table or []
        ]
        saved = synthesis.save_pairs(
            view, pairs, eval_fraction=eval_fraction, settings=settings, visitor=visitor()
        )
    except Exception as exc:
        return [f"⚠️ {report(exc, 'saving the pairs', settings)}", *refresh()]
    gr.Info(f"Saved {saved.name}: {saved.rows:,} pairs.")
    split = present.split_line(saved.rows, saved.train_rows, saved.eval_rows, saved.format)
    text = (
        f"✅ Saved **{plain(saved.name)}** (`{saved.id}`): {split}. "
        f"Synthesis energy: {saved.synthesis_energy}."
    )
    return [text, *refresh()]


def build(
    settings: Settings,
    uploaded: Callable[[str], str],
    catalog: list[Any],
    refresh: Callable[[], list[Any]],
) -> None:
    """The section; ``uploaded`` checks that a path is one Gradio saved, ``catalog`` are the
    components ``refresh`` updates once a dataset is saved."""
    gr.Markdown(INTRO)
    examples = [(f"{d.name} — {d.description}", d.name) for d in synthesis.bundled_documents()]
    models = datasets.model_choices(settings=settings)
    with gr.Row():
        with gr.Column():
            files = gr.File(
                label="Documents", file_count="multiple", file_types=[".txt", ".md", ".pdf"],
                elem_id="synth-files",
            )  # fmt: skip
            bundled = gr.Dropdown(examples, value=[], multiselect=True, label="Example documents")
        with gr.Column():
            name = gr.Textbox(label="Dataset name", placeholder="e.g. moonwell-qa")
            n = gr.Number(value=20, precision=0, minimum=1, maximum=synthesis.MAX_N, label="Pairs")
            teacher = gr.Dropdown(
                models, value=models[0] if models else None, allow_custom_value=True,
                label="Teacher: a model, or an OpenAI-compatible endpoint's URL",
            )  # fmt: skip
            with gr.Accordion("Endpoint", open=False):
                teacher_model = gr.Textbox(label="Endpoint model (default: its first)")
                api_key = gr.Textbox(label="API key", type="password")
    generate_btn = gr.Button("Generate pairs", variant="primary", elem_id="synth-generate")
    summary = gr.Markdown(elem_id="synth-summary")
    table = gr.Dataframe(
        headers=HEADERS, datatype=TYPES, type="array", interactive=True, wrap=True,
        max_height=400, elem_id="synth-pairs",
    )  # fmt: skip
    state = gr.State(None)
    with gr.Row():
        eval_fraction = gr.Slider(0.0, 0.5, value=0.1, step=0.01, label="Eval fraction")
        save_btn = gr.Button("Save as dataset", variant="primary", elem_id="synth-save")
    result = gr.Markdown(elem_id="synth-result")
    generate_btn.click(
        partial(run_generate, settings, uploaded),
        [files, bundled, teacher, teacher_model, api_key, n, name],
        [summary, table, state], api_name="data_synthesize",
    )  # fmt: skip
    save_btn.click(
        partial(run_save, settings, refresh), [state, table, eval_fraction], [result, *catalog],
        api_name="data_synthesize_save",
    )  # fmt: skip
