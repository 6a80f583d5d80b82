"""The Data tab: bring a dataset in, see what is wrong with it, save it for fine-tuning."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from garden.config import Settings
from garden.errors import DatasetError, GardenError

log = logging.getLogger("garden.ui.data")

UPLOAD, BUNDLED, HUB, IMPORTED = (
    "Upload a file",
    "Bundled sample",
    "Hugging Face hub",
    "Imported dataset",
)
SOURCE_KINDS = [UPLOAD, BUNDLED, HUB, IMPORTED]
FILE_TYPES = [".jsonl", ".json", ".csv", ".tsv", ".parquet", ".gz", ".ndjson"]
PAGE_SIZE = 5
DATASET_HEADERS = ["id", "name", "format", "rows", "train", "eval", "source", "created"]
MAPPING_HELP = (
    "Edit the mapping to override detection. Keys by format — "
    "`openai`/`sharegpt`: messages, role, content, system · `alpaca`: instruction, input, "
    "output, system, history · `prompt_completion`: prompt, completion, system · `text`: text."
)


def _error_box(exc: BaseException) -> str:
    if isinstance(exc, GardenError):
        hint = f"\n\n{exc.hint}" if exc.hint else ""
        return f"<div class='garden-error'>\n\n❌ **{exc.message}**{hint}\n\n</div>"
    return f"<div class='garden-error'>\n\n❌ **Unexpected error:** {type(exc).__name__}: {exc}\n\n</div>"


def _warn(exc: BaseException) -> str:
    if not isinstance(exc, GardenError):
        log.exception("Data tab failure", exc_info=exc)
    gr.Warning(exc.message if isinstance(exc, GardenError) else str(exc))
    return _error_box(exc)


def _source(
    kind: str, upload: Any, bundled: str | None, hub: str, imported: str | None, settings: Settings
) -> str:
    if kind == UPLOAD:
        if not upload:
            raise DatasetError(
                "No file uploaded yet.",
                hint="Drop a .jsonl, .json, .csv or .parquet file (optionally .gz) in the upload box.",
            )
        return str(upload)
    if kind == BUNDLED:
        if not bundled:
            raise DatasetError("No bundled sample chosen.", hint="Pick one in the list.")
        return f"bundled:{bundled}"
    if kind == HUB:
        if not (hub or "").strip():
            raise DatasetError(
                "No hub id typed.",
                hint="Type an id such as org/name, org/name:split or org/name@subset:split.",
            )
        return f"hub:{hub.strip().removeprefix('hf://').removeprefix('hub:')}"
    if not imported:
        raise DatasetError(
            "No imported dataset chosen.", hint="Import one first, or pick another source."
        )
    from garden.data import get_dataset

    return str(get_dataset(imported, settings).train_path)


def _mapping(text: str, detected: str) -> dict[str, Any] | None:
    text = (text or "").strip()
    if not text or text == (detected or "").strip():
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


def _seq_len(value: float | None) -> int | None:
    return int(value) if value else None


def _progress_fn(progress: gr.Progress) -> Callable[[float, str], None]:
    def report(fraction: float, message: str) -> None:
        progress(fraction, desc=message)

    return report


def _summary(report: dict[str, Any]) -> str:
    stats = report["token_stats"]
    lines = [
        f"**Source:** `{report['source']}` ({report['source_kind']}, {report['file_type'] or 'hub'})",
        f"**Format:** `{report['format']}` — confidence **{report['confidence']:.0%}** ({report['detection']})",
        f"**Rows:** {report['rows']:,} read · **{report['valid_rows']:,} usable** · "
        f"{report['invalid_rows']:,} invalid",
    ]
    if report["columns"]:
        lines.append("**Fields:** " + ", ".join(f"`{c}`" for c in report["columns"][:30]))
    if len(report["candidates"]) > 1:
        others = ", ".join(f"{c['format']} {c['share']:.0%}" for c in report["candidates"])
        lines.append(f"**Formats seen:** {others}")
    if stats.get("count"):
        sampled = f" (from a random sample of {stats['count']:,} rows)" if stats["sampled"] else ""
        lines.append(
            f"**Tokens{sampled}:** min {stats['min']} · median {stats['median']} · mean {stats['mean']} "
            f"· p95 {stats['p95']} · max {stats['max']} · ≈{stats['total_estimate']:,} in total"
        )
    if report["problem"]:
        lines.append(f"\n❌ **Not usable:** {report['problem']}")
    else:
        lines.append("\n✅ Usable: choose a name below and save it.")
    return "\n\n".join(lines)


def _validation(report: dict[str, Any]) -> str:
    parts = []
    for title, issues, counts in (
        (
            "Errors (rows that will be dropped or block the import)",
            report["errors"],
            report["error_counts"],
        ),
        ("Warnings", report["warnings"], report["warning_counts"]),
    ):
        if not counts:
            continue
        summary = ", ".join(f"{kind} × {n:,}" for kind, n in counts.items())
        rows = "\n".join(f"- **{i['location'] or 'file'}**: {i['message']}" for i in issues[:30])
        more = sum(counts.values()) - min(30, len(issues))
        extra = (
            f"\n- … and {more:,} more (the CLI `model-garden data inspect` lists them)"
            if more > 0
            else ""
        )
        parts.append(f"#### {title}\n{summary}\n\n{rows}{extra}")
    return "\n\n".join(parts) or "#### Validation\nNo problems found. ✅"


def _histogram(lengths: list[int], max_seq_len: int | None, sampled: bool) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure(go.Histogram(x=lengths, nbinsx=40, marker_color="#10b981"))
    title = "Token lengths" + (" (random sample)" if sampled else "")
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


def _raw_page(report: dict[str, Any] | None, page: int) -> tuple[list[str], list[list[str]]]:
    rows = (report or {}).get("raw_preview") or []
    chunk = rows[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    headers = sorted({key for row in chunk for key in row}) or ["(no rows)"]
    cells = [[_cell(row.get(key)) for key in headers] for row in chunk]
    return headers, cells


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 300 else text[:300] + "…"


def _rendered_page(report: dict[str, Any] | None, page: int) -> str:
    rendered = (report or {}).get("rendered_all") or []
    chunk = rendered[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    if not chunk:
        return "_No samples on this page._"
    start = page * PAGE_SIZE
    return "\n\n".join(
        f"**Sample {start + i + 1}**\n```\n{text[:4000]}\n```" for i, text in enumerate(chunk)
    )


def _pages(report: dict[str, Any] | None) -> int:
    count = max(
        len((report or {}).get("raw_preview") or []), len((report or {}).get("rendered_all") or [])
    )
    return max(1, -(-count // PAGE_SIZE))


def _datasets_table(settings: Settings) -> list[list[Any]]:
    import datetime as dt

    from garden.data import list_datasets

    return [
        [
            d.id,
            d.name,
            d.format,
            d.rows,
            d.train_rows,
            d.eval_rows,
            d.source,
            dt.datetime.fromtimestamp(d.created_at).strftime("%Y-%m-%d %H:%M"),
        ]
        for d in list_datasets(settings)
    ]


def build(settings: Settings) -> None:
    """The Data tab; every handler reports errors in the page, never as a traceback."""
    from garden.data import dataset_choices, list_bundled
    from garden.models import DEFAULT_MODEL_NAME, list_models

    bundled_choices = [
        (f"{b['name']} — {b['description']}" if b["description"] else b["name"], b["name"])
        for b in list_bundled()
    ]
    model_choices = [m.id for m in list_models(settings)] or [DEFAULT_MODEL_NAME]

    report_state = gr.State(None)
    detected_state = gr.State("")
    page_state = gr.State(0)

    gr.Markdown(
        "### Data\nBring a dataset: alpaca, ShareGPT, OpenAI messages, prompt/completion or plain "
        "text, as JSONL, JSON, CSV or Parquet. Model Garden detects the format, shows every "
        "problem with its row number, and saves a clean train/eval split."
    )
    with gr.Row():
        with gr.Column(scale=1):
            kind = gr.Radio(SOURCE_KINDS, value=BUNDLED, label="Source")
            upload = gr.File(label="Dataset file", file_types=FILE_TYPES, visible=False)
            bundled = gr.Dropdown(
                bundled_choices,
                value=next(
                    (v for _, v in bundled_choices if v == "garden_facts"),
                    bundled_choices[0][1] if bundled_choices else None,
                ),
                label="Bundled sample",
            )
            hub = gr.Textbox(
                label="Hub dataset id", placeholder="org/name  ·  org/name:split  ·  org/name@subset:split",
                visible=False,
            )  # fmt: skip
            imported = gr.Dropdown(
                dataset_choices(settings), label="Imported dataset", visible=False
            )
            with gr.Accordion("Options", open=False):
                model = gr.Dropdown(
                    model_choices, value=model_choices[0], label="Model (tokenizer and chat template)",
                    allow_custom_value=True,
                )  # fmt: skip
                max_seq_len = gr.Number(
                    value=2048, precision=0, minimum=0, label="Max sequence length (0: don't check)"
                )
                mapping = gr.Textbox(label="Mapping (JSON)", lines=4, info=MAPPING_HELP)
            inspect_btn = gr.Button("Inspect", variant="primary")
        with gr.Column(scale=2):
            summary = gr.Markdown("Choose a source and press **Inspect**.")
            validation = gr.Markdown()
            histogram = gr.Plot(label="Token lengths")
    with gr.Tabs():
        with gr.Tab("Raw rows"):
            raw_table = gr.Dataframe(interactive=False, wrap=True, max_height=400)
        with gr.Tab("Chat samples (rendered)"):
            rendered = gr.Markdown()
    with gr.Row():
        prev_btn = gr.Button("◀ Previous", size="sm")
        page_label = gr.Markdown("Page 1 of 1")
        next_btn = gr.Button("Next ▶", size="sm")

    gr.Markdown("#### Save")
    with gr.Row():
        name = gr.Textbox(label="Name", placeholder="e.g. garden-facts")
        eval_fraction = gr.Slider(0.0, 0.5, value=0.1, step=0.01, label="Eval fraction")
        seed = gr.Number(value=42, precision=0, label="Split seed")
        drop_invalid = gr.Checkbox(value=False, label="Drop invalid rows")
    save_btn = gr.Button("Save dataset", variant="primary")
    save_result = gr.Markdown()

    gr.Markdown("#### Imported datasets")
    datasets = gr.Dataframe(
        value=_datasets_table(settings), headers=DATASET_HEADERS, interactive=False, max_height=300
    )
    with gr.Row():
        delete_choice = gr.Dropdown(dataset_choices(settings), label="Dataset to delete")
        delete_btn = gr.Button("Delete", variant="stop")
        refresh_btn = gr.Button("Refresh list")
    delete_result = gr.Markdown()

    def show_source(choice: str) -> list[Any]:
        return [
            gr.update(visible=choice == UPLOAD),
            gr.update(visible=choice == BUNDLED),
            gr.update(visible=choice == HUB),
            gr.update(visible=choice == IMPORTED, choices=dataset_choices(settings)),
            "",
        ]

    kind.change(
        show_source, kind, [upload, bundled, hub, imported, mapping], api_visibility="private"
    )
    for component in (upload, bundled, imported):
        component.change(lambda: "", None, mapping, api_visibility="private")

    def page_outputs(report: dict[str, Any] | None, page: int) -> list[Any]:
        import pandas as pd

        headers, cells = _raw_page(report, page)
        return [
            pd.DataFrame(cells, columns=headers),
            _rendered_page(report, page),
            f"Page {page + 1} of {_pages(report)}",
            page,
        ]

    def run_inspect(
        kind_value: str, upload_value: Any, bundled_value: str | None, hub_value: str,
        imported_value: str | None, model_value: str | None, seq_value: float | None,
        mapping_value: str, detected: str, progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> list[Any]:  # fmt: skip
        from garden.data import inspect_source, render_samples

        try:
            source = _source(
                kind_value, upload_value, bundled_value, hub_value, imported_value, settings
            )
            report_obj = inspect_source(
                source,
                mapping=_mapping(mapping_value, detected),
                max_seq_len=_seq_len(seq_value),
                model=model_value or None,
                settings=settings,
                progress=_progress_fn(progress),
            )
            report = report_obj.to_dict()
            try:
                report["rendered_all"] = render_samples(
                    report_obj.samples, model_value or None, settings
                )
            except GardenError:
                report["rendered_all"] = report_obj.rendered
        except Exception as exc:
            box = _warn(exc)
            return [box, "", None, None, detected, *page_outputs(None, 0)]
        detected_text = json.dumps(report["mapping"], indent=1)
        figure = _histogram(
            report["token_lengths"],
            report["max_seq_len"],
            report["token_stats"].get("sampled", False),
        )
        return [
            _summary(report), _validation(report), figure, report, detected_text,
            *page_outputs(report, 0),
        ]  # fmt: skip

    inspect_outputs = [
        summary,
        validation,
        histogram,
        report_state,
        detected_state,
        raw_table,
        rendered,
        page_label,
        page_state,
    ]
    inspect_inputs = [
        kind,
        upload,
        bundled,
        hub,
        imported,
        model,
        max_seq_len,
        mapping,
        detected_state,
    ]
    inspect_btn.click(run_inspect, inspect_inputs, inspect_outputs, api_name="data_inspect").then(
        lambda detected: detected, detected_state, mapping, api_visibility="private"
    )

    def turn_page(report: dict[str, Any] | None, page: int, step: int) -> list[Any]:
        page = min(max(0, page + step), _pages(report) - 1)
        return page_outputs(report, page)

    page_outputs_list = [raw_table, rendered, page_label, page_state]
    prev_btn.click(
        lambda r, p: turn_page(r, p, -1),
        [report_state, page_state],
        page_outputs_list,
        api_name="data_prev_page",
    )
    next_btn.click(
        lambda r, p: turn_page(r, p, 1),
        [report_state, page_state],
        page_outputs_list,
        api_name="data_next_page",
    )

    def refreshed() -> list[Any]:
        choices = dataset_choices(settings)
        return [
            _datasets_table(settings),
            gr.update(choices=choices),
            gr.update(choices=choices, value=None),
        ]

    def run_save(
        kind_value: str, upload_value: Any, bundled_value: str | None, hub_value: str,
        imported_value: str | None, model_value: str | None, seq_value: float | None,
        mapping_value: str, detected: str, name_value: str, fraction: float, seed_value: float | None,
        drop: bool, progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> list[Any]:  # fmt: skip
        from garden.data import import_dataset

        try:
            source = _source(
                kind_value, upload_value, bundled_value, hub_value, imported_value, settings
            )
            record = import_dataset(
                source,
                name_value,
                eval_fraction=float(fraction),
                seed=int(seed_value or 0),
                mapping=_mapping(mapping_value, detected),
                drop_invalid=bool(drop),
                max_seq_len=_seq_len(seq_value),
                model=model_value or None,
                settings=settings,
                progress=_progress_fn(progress),
            )
        except Exception as exc:
            return [_warn(exc), *refreshed()]
        gr.Info(
            f"Saved {record.name}: {record.train_rows:,} train and {record.eval_rows:,} eval rows."
        )
        warnings = "".join(f"\n- {w}" for w in record.warnings[:10])
        text = (
            f"✅ Saved **{record.name}** (`{record.id}`): {record.rows:,} rows — "
            f"{record.train_rows:,} train, {record.eval_rows:,} eval, format `{record.format}`. "
            f"It is now in the Fine-tune tab's dataset list."
            + (f"\n\nWarnings:{warnings}" if warnings else "")
        )
        return [text, *refreshed()]

    save_btn.click(
        run_save,
        [*inspect_inputs, name, eval_fraction, seed, drop_invalid],
        [save_result, datasets, imported, delete_choice],
        api_name="data_save",
    )

    def run_delete(dataset_id: str | None) -> list[Any]:
        from garden.data import delete_dataset

        try:
            if not dataset_id:
                raise DatasetError(
                    "No dataset chosen.", hint="Pick the dataset to delete in the list."
                )
            record = delete_dataset(dataset_id, settings)
        except Exception as exc:
            return [_warn(exc), *refreshed()]
        gr.Info(f"Deleted {record.name}.")
        return [f"🗑️ Deleted **{record.name}** (`{record.id}`).", *refreshed()]

    delete_btn.click(
        run_delete,
        delete_choice,
        [delete_result, datasets, imported, delete_choice],
        api_name="data_delete",
    )
    refresh_btn.click(refreshed, None, [datasets, imported, delete_choice], api_name="data_refresh")
