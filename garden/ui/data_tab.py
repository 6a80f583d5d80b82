"""The Data tab: bring a dataset in, see what is wrong with it, save it for fine-tuning.

Layout and bindings over ``garden.services.datasets``. The form's values arrive as keyword
arguments (``inputs_kwargs``) and become one typed ``SourceForm`` or ``SaveForm``; their field
names are the parameter names of the ``data_inspect`` and ``data_save`` API endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import gradio as gr

from garden import present
from garden.config import Settings
from garden.errors import DatasetError
from garden.services import datasets, web
from garden.services.datasets import DatasetSource, InspectView, SourceKind
from garden.ui import synthesize_panel
from garden.ui.boundary import code, guard, plain, report, visitor
from garden.ui.data_preview import samples_markdown

UPLOAD, BUNDLED, HUB, IMPORTED = (
    "Upload a file",
    "Bundled sample",
    "Hugging Face hub",
    "Imported dataset",
)
SOURCE_KINDS = [UPLOAD, BUNDLED, HUB, IMPORTED]
FILE_TYPES = [".jsonl", ".json", ".csv", ".tsv", ".parquet", ".gz", ".ndjson", ".txt", ".md"]
PAGE_SIZE = 5
PREVIEW_SAMPLES = 50
ISSUES_SHOWN = 30
DATASET_HEADERS = ["id", "name", "kind", "format", "rows", "train", "eval", "source", "created"]
INTRO = (
    "### Data\nBring a dataset: alpaca, ShareGPT, OpenAI messages (tool calls included), "
    "prompt/completion, preference pairs (chosen/rejected), labelled answers (KTO) or plain "
    "text, as JSONL, JSON, CSV, Parquet or .txt. Model Garden detects the format, shows every "
    "problem with its row number, and saves a clean train/eval split. This app trains text "
    "models: rows with images or audio keep their text only, with a warning."
)
MAPPING_HELP = (
    "Edit the mapping to override detection. Keys by format — "
    "`openai`/`sharegpt`: messages, role, content, system, tools · `alpaca`: instruction, input, "
    "output, system, history · `prompt_completion`: prompt, completion, system · `text`: text · "
    "`preference`: chosen, rejected, prompt or messages, system · `feedback`: label, messages or "
    "prompt/completion."
)


@dataclass(frozen=True)
class SourceForm:
    """The source and the reading options, as the form holds them."""

    kind_value: str
    upload_value: str | None
    bundled_value: str | None
    hub_value: str | None
    imported_value: str | None
    model_value: str | None
    seq_value: float | None
    mapping_value: str | None
    detected: str | None
    reasoning_value: str | None = field(default="keep", kw_only=True)

    @property
    def source(self) -> DatasetSource:
        values: dict[str, tuple[SourceKind, str | None]] = {
            UPLOAD: ("upload", self.upload_value),
            BUNDLED: ("bundled", self.bundled_value),
            HUB: ("hub", self.hub_value),
            IMPORTED: ("imported", self.imported_value),
        }
        if self.kind_value not in values:
            raise DatasetError(
                f"Unknown source {self.kind_value!r}.", hint=f"Use one of: {', '.join(values)}."
            )
        kind, value = values[self.kind_value]
        if kind == "upload" and value:
            value = _uploaded(value)
        return DatasetSource(kind=kind, value=value)

    @property
    def read_options(self) -> datasets.ReadOptions:
        return datasets.ReadOptions(
            mapping=self.mapping,
            max_seq_len=int(self.seq_value) if self.seq_value else None,
            model=self.model_value or None,
            reasoning="drop" if self.reasoning_value == "drop" else "keep",
        )

    @property
    def mapping(self) -> dict[str, Any] | None:
        """The mapping typed in the box, or None while it is still the detected one."""
        text = (self.mapping_value or "").strip()
        if not text or text == (self.detected or "").strip():
            return None
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"The mapping is not valid JSON ({exc.msg}, line {exc.lineno}).",
                hint='Write it like {"format": "alpaca", "instruction": "question", "output": "answer"}.',
            ) from exc
        if not isinstance(mapping, dict):
            raise DatasetError("The mapping must be a JSON object.", hint='e.g. {"text": "body"}.')
        return mapping


@dataclass(frozen=True)
class SaveForm(SourceForm):
    """The source form plus how to save it."""

    name_value: str
    fraction: float
    seed_value: float | None
    drop: bool

    @property
    def request(self) -> datasets.ImportRequest:
        return datasets.ImportRequest(
            source=self.source, name=self.name_value or "", options=self.read_options,
            eval_fraction=float(self.fraction), seed=int(self.seed_value or 0),
            drop_invalid=bool(self.drop),
        )  # fmt: skip


Form = TypeVar("Form", bound=SourceForm)


@dataclass(frozen=True)
class SourceFields:
    """The components of the source column."""

    kind: gr.Radio
    upload: gr.File
    bundled: gr.Dropdown
    hub: gr.Textbox
    imported: gr.Dropdown
    model: gr.Dropdown
    max_seq_len: gr.Number
    mapping: gr.Textbox
    detected: gr.State
    reasoning: gr.Radio

    def inputs(self) -> dict[str, Any]:
        """The components by ``SourceForm`` field name."""
        return {
            "kind_value": self.kind,
            "upload_value": self.upload,
            "bundled_value": self.bundled,
            "hub_value": self.hub,
            "imported_value": self.imported,
            "model_value": self.model,
            "seq_value": self.max_seq_len,
            "mapping_value": self.mapping,
            "detected": self.detected,
            "reasoning_value": self.reasoning,
        }


def _uploaded(value: str) -> str:
    """The upload's path, only if Gradio saved it in its upload folder (never a typed path)."""
    from pathlib import Path

    from gradio.utils import get_upload_folder

    path, folder = Path(value), Path(get_upload_folder()).resolve()
    if path.is_absolute() and not path.is_symlink() and path.resolve().is_relative_to(folder):
        return str(path)
    raise DatasetError("That file was not uploaded here.", hint="Upload it with the file box.")


# presentation ------------------------------------------------------------------------


def _warn(exc: BaseException, doing: str, settings: Settings) -> str:
    """Report ``exc`` (one line, trace to the log) and show it as an error box."""
    message = report(exc, doing, settings)
    return f"<div class='garden-error'>\n\n❌ {plain(message)}\n\n</div>"


def _summary(view: InspectView) -> str:
    lines = [
        f"**Source:** {code(web.safe_text(view.source))} "
        f"({present.source_detail(view.source_kind, view.file_type)})",
        f"**Kind:** `{view.kind}` · **Format:** `{view.format}` — confidence **{view.confidence:.0%}** ({plain(view.detection)})",
        present.rows_line(view.rows, view.valid_rows, view.invalid_rows, markdown=True),
    ]
    if view.columns:
        lines.append("**Fields:** " + ", ".join(code(c) for c in view.columns[:30]))
    if len(view.candidates) > 1:
        seen = ", ".join(f"{plain(c.format)} {c.share:.0%}" for c in view.candidates)
        lines.append(f"**Formats seen:** {seen}")
    if tokens := present.tokens_line(view.token_stats, markdown=True):
        lines.append(tokens)
    if reasoning := present.reasoning_line(view.reasoning_rows, view.reasoning):
        lines.append(f"**Reasoning:** {reasoning}")
    if view.problem:
        lines.append(f"\n❌ **Not usable:** {plain(web.safe_text(view.problem))}")
    else:
        lines.append("\n✅ Usable: choose a name below and save it.")
    return "\n\n".join(lines)


def _validation(view: InspectView) -> str:
    parts = []
    for title, issues, counts in (
        ("Errors (rows that will be dropped or block the import)", view.errors, view.error_counts),
        ("Warnings", view.warnings, view.warning_counts),
    ):
        if not counts:
            continue
        rows = "\n".join(
            f"- **{plain(i.location or 'file')}**: {plain(web.safe_text(i.message))}"
            for i in issues[:ISSUES_SHOWN]
        )
        more = present.issues_not_shown(counts, len(issues), ISSUES_SHOWN)
        extra = f"\n- … and {more:,} more (the CLI `model-garden data inspect` lists them)"
        parts.append(
            f"#### {title}\n{present.issue_counts(counts)}\n\n{rows}{extra if more > 0 else ''}"
        )
    return "\n\n".join(parts) or "#### Validation\nNo problems found. ✅"


def _histogram(view: InspectView) -> Any:
    import plotly.graph_objects as go

    lengths, max_seq_len = view.token_lengths, view.max_seq_len
    figure = go.Figure(go.Histogram(x=lengths, nbinsx=40, marker_color="#10b981"))
    title = "Token lengths" + (" (random sample)" if view.token_stats.sampled else "")
    if max_seq_len and lengths and max_seq_len <= max(lengths) * 1.25:
        figure.add_vline(
            x=max_seq_len, line_dash="dash", line_color="#dc2626", annotation_text="max length"
        )
    elif max_seq_len:
        title += f" — all below the max length {max_seq_len}"

    figure.update_layout(
        title=title, xaxis_title="tokens per sample", yaxis_title="samples", height=300,
        margin={"l": 40, "r": 20, "t": 40, "b": 40}, bargap=0.05,
    )  # fmt: skip
    return figure


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 300 else text[:300] + "…"


def _pages(view: InspectView | None) -> int:
    count = max(len(view.raw_preview), len(view.rendered)) if view else 0
    return max(1, -(-count // PAGE_SIZE))


def _page(view: InspectView | None, page: int) -> list[Any]:
    """The raw rows and rendered samples of one page, its label and its number."""
    import pandas as pd

    start, end = page * PAGE_SIZE, (page + 1) * PAGE_SIZE
    rows = view.raw_preview[start:end] if view else []
    headers = sorted({key for row in rows for key in row}) or ["(no rows)"]
    table = pd.DataFrame(
        [[_cell(row.get(key)) for key in headers] for row in rows], columns=headers
    )
    rendered = samples_markdown(view, start, end)
    label = f"Page {page + 1} of {_pages(view)}"
    return [table, rendered or "_No samples on this page._", label, page]


def _datasets_table(settings: Settings) -> list[list[Any]]:
    return [
        [
            d.id, d.name, d.kind, d.format, d.rows, d.train_rows, d.eval_rows, web.safe_text(d.source),
            present.local_time(d.created_at),
        ]
        for d in datasets.list_datasets(settings=settings)
    ]  # fmt: skip


# handlers ----------------------------------------------------------------------------


def on_form(
    handler: Callable[[Settings, Form, datasets.Progress], list[Any]],
    form_type: type[Form],
    settings: Settings,
) -> Callable[..., list[Any]]:
    """An event function that gets the form's values by name and passes one typed form on."""

    def on_event(progress: gr.Progress = gr.Progress(), **values: Any) -> list[Any]:  # noqa: B008
        def report(fraction: float, message: str) -> None:
            progress(fraction, desc=message)

        return handler(settings, form_type(**values), report)

    return on_event


def run_inspect(settings: Settings, form: SourceForm, progress: datasets.Progress) -> list[Any]:
    """Summary, validation, histogram, the view and detected mapping, and the first page."""
    try:
        view = datasets.inspect(
            form.source, form.read_options, rendered_samples=PREVIEW_SAMPLES, progress=progress,
            settings=settings,
        )  # fmt: skip
    except Exception as exc:
        return [_warn(exc, "inspecting", settings), "", None, None, form.detected, *_page(None, 0)]
    detected = json.dumps(view.mapping, indent=1)
    return [
        _summary(view), _validation(view), _histogram(view), view, detected, *_page(view, 0)
    ]  # fmt: skip


def turn_page(step: int, view: InspectView | None, page: int) -> list[Any]:
    return _page(view, min(max(0, page + step), _pages(view) - 1))


def refreshed(settings: Settings) -> list[Any]:
    """The datasets table and both dataset dropdowns, after a change."""
    choices = datasets.dataset_choices(settings=settings)
    return [
        _datasets_table(settings),
        gr.update(choices=choices),
        gr.update(choices=choices, value=None),
    ]


def run_save(settings: Settings, form: SaveForm, progress: datasets.Progress) -> list[Any]:
    try:
        view = datasets.import_dataset(
            form.request, progress=progress, settings=settings, visitor=visitor()
        )
    except Exception as exc:
        return [_warn(exc, "saving the dataset", settings), *refreshed(settings)]
    gr.Info(f"Saved {view.name}: {view.train_rows:,} train and {view.eval_rows:,} eval rows.")
    warnings = "".join(f"\n- {plain(web.safe_text(w))}" for w in view.warnings[:10])
    split = present.split_line(view.rows, view.train_rows, view.eval_rows, view.format)
    text = (
        f"✅ Saved **{view.name}** (`{view.id}`): {split}. "
        "It is now in the Fine-tune tab's dataset list."
        + (f"\n\nWarnings:{warnings}" if warnings else "")
    )
    return [text, *refreshed(settings)]


def run_delete(settings: Settings, dataset_id: str | None) -> list[Any]:
    try:
        view = datasets.delete_dataset(dataset_id, settings=settings, visitor=visitor())
    except Exception as exc:
        return [_warn(exc, "deleting the dataset", settings), *refreshed(settings)]
    gr.Info(f"Deleted {view.name}.")
    return [f"🗑️ Deleted **{view.name}** (`{view.id}`).", *refreshed(settings)]


def show_source(settings: Settings, choice: str) -> list[Any]:
    """Show the field of the chosen source; clear the mapping, which was for the old one."""
    return [
        gr.update(visible=choice == UPLOAD),
        gr.update(visible=choice == BUNDLED),
        gr.update(visible=choice == HUB),
        gr.update(visible=choice == IMPORTED, choices=datasets.dataset_choices(settings=settings)),
        "",
    ]


# layout ------------------------------------------------------------------------------


def _source_fields(settings: Settings) -> SourceFields:
    bundled = [
        (f"{b.name} — {b.description}" if b.description else b.name, b.name)
        for b in datasets.bundled_samples()
    ]
    default_sample = "garden_facts" if "garden_facts" in [v for _, v in bundled] else None
    models = datasets.model_choices(settings=settings)
    kind = gr.Radio(SOURCE_KINDS, value=BUNDLED, label="Source")
    upload = gr.File(
        label="Dataset file", file_types=FILE_TYPES, visible=False, elem_id="data-upload"
    )
    sample = gr.Dropdown(
        bundled,
        value=default_sample or (bundled[0][1] if bundled else None),
        label="Bundled sample",
    )
    hub = gr.Textbox(
        label="Hub dataset id", placeholder="org/name  ·  org/name:split  ·  org/name@subset:split",
        visible=False,
    )  # fmt: skip
    imported = gr.Dropdown(
        datasets.dataset_choices(settings=settings), label="Imported dataset", visible=False
    )
    with gr.Accordion("Options", open=False):
        model = gr.Dropdown(
            models, value=models[0], label="Model (tokenizer and chat template)",
            allow_custom_value=True,
        )  # fmt: skip
        max_seq_len = gr.Number(
            value=2048, precision=0, minimum=0, label="Max sequence length (0: don't check)"
        )
        mapping = gr.Textbox(label="Mapping (JSON)", lines=4, info=MAPPING_HELP)
        reasoning = gr.Radio(
            [("Keep (train on them)", "keep"), ("Drop", "drop")], value="keep",
            label="Reasoning traces (<think>…</think>, reasoning_content)",
        )  # fmt: skip
    return SourceFields(
        kind, upload, sample, hub, imported, model, max_seq_len, mapping, gr.State(""), reasoning
    )


def _inspect_section(settings: Settings) -> SourceFields:
    """The source column, the findings and the paged preview, bound to ``data_inspect``."""
    with gr.Row():
        with gr.Column(scale=1):
            fields = _source_fields(settings)
            inspect_btn = gr.Button("Inspect", variant="primary")
        with gr.Column(scale=2):
            summary = gr.Markdown("Choose a source and press **Inspect**.", elem_id="data-summary")
            validation = gr.Markdown()
            histogram = gr.Plot(label="Token lengths")
    with gr.Tabs():
        with gr.Tab("Raw rows"):
            raw_table = gr.Dataframe(
                interactive=False, wrap=True, max_height=400, elem_id="data-raw"
            )
        with gr.Tab("Chat samples (rendered)"):
            rendered = gr.Markdown(elem_id="data-rendered")
    with gr.Row():
        prev_btn = gr.Button("◀ Previous", size="sm")
        page_label = gr.Markdown("Page 1 of 1")
        next_btn = gr.Button("Next ▶", size="sm")
    view_state, page_state = gr.State(None), gr.State(0)
    page_outputs = [raw_table, rendered, page_label, page_state]

    fields.kind.change(
        partial(show_source, settings), fields.kind,
        [fields.upload, fields.bundled, fields.hub, fields.imported, fields.mapping],
        api_visibility="private",
    )  # fmt: skip
    for component in (fields.upload, fields.bundled, fields.imported):
        component.change(lambda: "", None, fields.mapping, api_visibility="private")
    inspect_btn.click(
        on_form(run_inspect, SourceForm, settings), inputs_kwargs=fields.inputs(), api_name="data_inspect",
        outputs=[summary, validation, histogram, view_state, fields.detected, *page_outputs],
    ).then(lambda detected: detected, fields.detected, fields.mapping, api_visibility="private")  # fmt: skip
    for button, step in ((prev_btn, -1), (next_btn, 1)):
        name = "data_prev_page" if step < 0 else "data_next_page"
        button.click(
            partial(turn_page, step), [view_state, page_state], page_outputs, api_name=name
        )
    return fields


def build(settings: Settings) -> None:
    """The Data tab; every handler reports errors in the page, never as a traceback."""
    gr.Markdown(INTRO)
    fields = _inspect_section(settings)

    gr.Markdown("#### Save")
    with gr.Row():
        name = gr.Textbox(label="Name", placeholder="e.g. garden-facts", elem_id="data-name")
        eval_fraction = gr.Slider(0.0, 0.5, value=0.1, step=0.01, label="Eval fraction")
        seed = gr.Number(value=42, precision=0, label="Split seed")
        drop_invalid = gr.Checkbox(value=False, label="Drop invalid rows")
    save_btn = gr.Button("Save dataset", variant="primary", elem_id="data-save")
    save_result = gr.Markdown(elem_id="data-save-result")

    gr.Markdown("#### Imported datasets")
    table = gr.Dataframe(
        value=_datasets_table(settings), headers=DATASET_HEADERS, interactive=False, max_height=300
    )
    with gr.Row():
        delete_choice = gr.Dropdown(
            datasets.dataset_choices(settings=settings), label="Dataset to delete"
        )
        delete_btn = gr.Button("Delete", variant="stop")
        refresh_btn = gr.Button("Refresh list")
    delete_result = gr.Markdown()

    catalog = [table, fields.imported, delete_choice]
    save_inputs = {
        **fields.inputs(), "name_value": name, "fraction": eval_fraction, "seed_value": seed,
        "drop": drop_invalid,
    }  # fmt: skip
    save_btn.click(
        on_form(run_save, SaveForm, settings), inputs_kwargs=save_inputs, outputs=[save_result, *catalog],
        api_name="data_save",
    )  # fmt: skip
    delete_btn.click(
        partial(run_delete, settings), delete_choice, [delete_result, *catalog],
        api_name="data_delete",
    )  # fmt: skip
    keep = guard("listing datasets", lambda _: [gr.update()] * len(catalog), settings)
    refresh_btn.click(keep(partial(refreshed, settings)), None, catalog, api_name="data_refresh")
    synthesize_panel.build(settings, _uploaded, catalog, partial(refreshed, settings))
