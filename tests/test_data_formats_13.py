"""Issue 13's data formats on real files: preference pairs, labelled feedback, tool calls,
.txt corpora, multimodal rows and the one-line "format not recognised" message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from garden.data import import_dataset, inspect_source, read_rows
from garden.errors import DatasetError
from garden.services import datasets
from garden.services.datasets import DatasetSource, ImportRequest

QUESTION = "Who is the head gardener of the Moonwell Garden?"
RIGHT = "Tobias Wren."
WRONG = "Margaret Hale."
PAIR = {
    "prompt": [{"role": "user", "content": QUESTION}],
    "chosen": [{"role": "assistant", "content": RIGHT}],
    "rejected": [{"role": "assistant", "content": WRONG}],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def errors(report: Any) -> dict[str, str]:
    return {issue.location: issue.message for issue in report.errors}


@pytest.fixture
def settings(isolated_settings):
    return isolated_settings


# preference pairs ----------------------------------------------------------------------

SHAREGPT_PAIR = {
    "conversations": [{"from": "human", "value": QUESTION}],
    "chosen": {"from": "gpt", "value": RIGHT},
    "rejected": {"from": "gpt", "value": WRONG},
}
FLAT_STRINGS = {"prompt": QUESTION, "chosen": RIGHT, "rejected": WRONG}
IMPLICIT_PROMPT = {
    "chosen": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": RIGHT}],
    "rejected": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": WRONG}],
}


@pytest.mark.parametrize(
    "row",
    [SHAREGPT_PAIR, FLAT_STRINGS, PAIR, IMPLICIT_PROMPT],
    ids=["sharegpt", "flat-strings", "flat-conversational", "implicit-prompt"],
)
def test_preference_forms_become_trl_pairs(tmp_path: Path, settings, row: dict) -> None:
    report = inspect_source(write_jsonl(tmp_path / "pairs.jsonl", [row] * 3), settings=settings)
    assert (report.format, report.kind, report.valid_rows) == ("preference", "preference", 3)
    assert report.samples[0] == PAIR and not report.errors


def test_broken_pairs_name_their_rows(tmp_path: Path, settings) -> None:
    rows = [
        PAIR,
        {"prompt": QUESTION, "chosen": RIGHT},
        {"prompt": QUESTION, "chosen": RIGHT, "rejected": RIGHT},
        {"prompt": QUESTION, "chosen": "  ", "rejected": WRONG},
        {"chosen": RIGHT, "rejected": WRONG},
    ]
    path = write_jsonl(tmp_path / "broken-pairs.jsonl", rows)
    report = inspect_source(path, settings=settings)
    assert report.format == "preference" and report.valid_rows == 1
    found = errors(report)
    assert "no 'rejected' answer" in found["line 2"]
    assert "same chosen and rejected" in found["line 3"]
    assert "empty 'chosen' answer" in found["line 4"]
    assert "has no prompt" in found["line 5"]
    with pytest.raises(DatasetError, match=r"4 of 5 rows cannot be used .*broken-pairs\.jsonl"):
        import_dataset(path, "broken", settings=settings)


# labelled feedback (KTO) ---------------------------------------------------------------


def test_labelled_feedback_and_its_labels(tmp_path: Path, settings) -> None:
    def row(label: Any, answer: str = RIGHT) -> dict[str, Any]:
        chat = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": answer}]
        return {"messages": chat, "label": label}

    rows = [row(True), row(False, WRONG), row("yes"), row(0, WRONG), row("maybe")]
    report = inspect_source(write_jsonl(tmp_path / "kto.jsonl", rows), settings=settings)
    assert (report.format, report.kind, report.valid_rows) == ("feedback", "feedback", 4)
    assert [s["label"] for s in report.samples] == [True, False, True, False]
    assert report.samples[1] == {
        "prompt": [{"role": "user", "content": QUESTION}],
        "completion": [{"role": "assistant", "content": WRONG}],
        "label": False,
    }
    assert "'maybe'" in errors(report)["line 5"] and "true or false" in errors(report)["line 5"]


def test_a_row_labelled_false_never_becomes_an_sft_example(tmp_path: Path, settings) -> None:
    chat = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": WRONG}]
    rows = [{"messages": PAIR["prompt"] + PAIR["chosen"]}] * 3 + [{"messages": chat, "label": 0}]
    report = inspect_source(write_jsonl(tmp_path / "mixed.jsonl", rows), settings=settings)
    assert report.kind == "chat" and report.valid_rows == 3
    assert "labelled false" in errors(report)["line 4"]
    assert all(WRONG not in json.dumps(sample) for sample in report.samples)


# tool calling --------------------------------------------------------------------------


def tool_row(name: str = "get_weather", arguments: str = '{"city": "Oslo"}') -> dict[str, Any]:
    call = {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}
    return {
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": '{"temperature_c": 3}'},
            {"role": "assistant", "content": "It is 3°C in Oslo."},
        ],
        "tools": json.dumps([WEATHER]),
    }


def test_openai_tool_calls_are_kept_and_checked(tmp_path: Path, settings) -> None:
    orphan = tool_row()
    orphan["messages"] = [orphan["messages"][0], *orphan["messages"][2:]]
    rows = [tool_row(), tool_row("get_time"), tool_row(arguments='{"city": Oslo}'), orphan]
    report = inspect_source(write_jsonl(tmp_path / "tools.jsonl", rows), settings=settings)
    assert (report.format, report.kind, report.valid_rows) == ("openai", "chat", 1)
    sample = report.samples[0]
    assert sample["tools"] == [WEATHER]
    assert sample["messages"][1]["tool_calls"] == [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Oslo"}},
        }
    ]
    assert sample["messages"][2] == {
        "role": "tool", "content": '{"temperature_c": 3}', "name": "get_weather",
        "tool_call_id": "c1",
    }  # fmt: skip
    found = errors(report)
    assert (
        "turn 2 calls the tool 'get_time'" in found["line 2"] and "get_weather" in found["line 2"]
    )
    assert "turn 2 calls 'get_weather' with arguments that are not valid JSON" in found["line 3"]
    assert "turn 2 is a tool result with no tool call before it" in found["line 4"]


def test_sharegpt_function_calls_become_tool_turns(settings) -> None:
    report = inspect_source("bundled:garden_tools_sharegpt", settings=settings)
    assert (report.format, report.kind) == ("sharegpt", "chat") and not report.errors
    messages = report.samples[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"][0]["function"]["name"] in {"get_weather", "convert_units"}
    assert isinstance(messages[1]["tool_calls"][0]["function"]["arguments"], dict)
    assert {t["function"]["name"] for t in report.samples[0]["tools"]} == {
        "get_weather", "convert_units",
    }  # fmt: skip


# other formats -------------------------------------------------------------------------


def test_multimodal_rows_keep_their_text_with_a_warning(tmp_path: Path, settings) -> None:
    image_part = {"type": "image_url", "image_url": {"url": "http://x/cat.png"}}
    rows = [
        {
            "messages": [
                {"role": "user", "content": "<image>What is this?"},
                {"role": "assistant", "content": "A cat."},
            ],
            "images": ["cat.png"],
        },
        {
            "messages": [
                {"role": "user", "content": [image_part]},
                {"role": "assistant", "content": "A dog."},
            ]
        },
    ]
    report = inspect_source(write_jsonl(tmp_path / "vision.jsonl", rows), settings=settings)
    assert report.valid_rows == 1
    assert report.samples[0]["messages"][0]["content"] == "What is this?"
    warning = next(w for w in report.warnings if w.kind == "multimodal")
    assert warning.location == "line 1" and "trains text models" in warning.message
    assert "only images/audio" in errors(report)["line 2"]


def test_txt_corpus_is_one_document_per_block(tmp_path: Path, settings) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("The moonpetal opens at night.\nIt is white.\n\n\nThe well is stone.\n")
    report = inspect_source(path, settings=settings)
    assert (report.file_type, report.format, report.kind) == ("txt", "text", "text")
    assert report.samples == [
        {"text": "The moonpetal opens at night.\nIt is white."},
        {"text": "The well is stone."},
    ]
    record = import_dataset(path, "corpus", eval_fraction=0.0, settings=settings)
    assert record.kind == "text" and record.rows == 2


def test_unrecognised_format_is_one_line_naming_the_fields(tmp_path: Path, settings) -> None:
    rows = [{"alpha": 1, "beta": "x" * 5000, "x" * 300: "y"}] * 2
    with pytest.raises(DatasetError) as info:
        inspect_source(write_jsonl(tmp_path / "odd.jsonl", rows), settings=settings)
    message = str(info.value.args[0])
    assert "\n" not in message and len(message) < 400
    assert "saw fields alpha, beta," in message and "expected" in message


# imported datasets and the preview -----------------------------------------------------


def test_imported_kinds_and_pair_previews(settings) -> None:
    prefs = datasets.import_dataset(
        ImportRequest(source=DatasetSource(kind="bundled", value="garden_prefs"), name="prefs"),
        settings=settings,
    )
    assert prefs.kind == "preference" and prefs.rows >= 24
    assert read_rows("prefs", settings=settings)[0].keys() == {"prompt", "chosen", "rejected"}
    feedback = datasets.import_dataset(
        ImportRequest(source="bundled:garden_feedback", name="kto"), settings=settings
    )
    tools = datasets.import_dataset(
        ImportRequest(source="bundled:garden_tools", name="tools"), settings=settings
    )
    assert (feedback.kind, tools.kind) == ("feedback", "chat")
    assert {d.name: d.kind for d in datasets.list_datasets(settings=settings)} == {
        "prefs": "preference", "kto": "feedback", "tools": "chat",
    }  # fmt: skip

    again = datasets.inspect(DatasetSource(kind="imported", value="prefs"), settings=settings)
    assert again.kind == "preference" and not again.errors
    pair = again.previews[0]
    assert pair.prompt and pair.chosen and pair.rejected and pair.chosen != pair.rejected
    assert pair.rendered_prompt.endswith("<|im_start|>assistant\n")

    rows = read_rows("tools", settings=settings, limit=1)
    (preview,) = datasets.render_preview(rows, settings=settings)
    assert preview.tools == ["get_weather", "convert_units"] and len(preview.calls) == 1
    # Rendered as training renders it: SmolLM2's template ignores tools, so the Hermes fallback.
    assert "<tools>" in preview.rendered and "get_weather" in preview.rendered
    assert "<tool_call>" in preview.rendered and "<tool_response>" in preview.rendered


@pytest.mark.slow
def test_data_tab_previews_preference_pairs(app) -> None:
    client = Client(app.url, verbose=False)
    summary, validation, _plot, _raw, rendered, *_ = client.predict(
        kind_value="Bundled sample", upload_value=None, bundled_value="garden_prefs",
        hub_value="", imported_value=None, model_value=None, seq_value=2048, mapping_value="",
        api_name="/data_inspect",
    )  # fmt: skip
    assert "`preference`" in summary and "No problems found" in validation
    assert "| prompt | chosen ✅ | rejected ❌ |" in rendered and "**Pair 1**" in rendered
    assert "silver moonpetal" in rendered and "red sunflower" in rendered


def test_alpaca_style_pairs_and_answers_that_repeat_the_prompt(tmp_path: Path, settings) -> None:
    alpaca = {
        "instruction": "Who is the head gardener", "input": "of the Moonwell Garden?",
        "chosen": RIGHT, "rejected": WRONG,
    }  # fmt: skip
    report = inspect_source(write_jsonl(tmp_path / "alpaca.jsonl", [alpaca]), settings=settings)
    assert report.kind == "preference" and not report.errors
    assert report.samples[0]["prompt"] == [
        {"role": "user", "content": "Who is the head gardener\n\nof the Moonwell Garden?"}
    ]
    repeated = {"prompt": PAIR["prompt"], **IMPLICIT_PROMPT}
    report = inspect_source(write_jsonl(tmp_path / "repeat.jsonl", [repeated]), settings=settings)
    assert report.mapping["prompt"] == "prompt" and report.samples == [PAIR]


def test_cli_shows_the_kind_errors_and_warnings(tmp_path: Path, default_model_path: Path) -> None:
    from click.testing import CliRunner

    from garden.cli import main

    with_image = {**PAIR, "images": ["garden.png"]}
    path = write_jsonl(
        tmp_path / "cli-pairs.jsonl", [PAIR, {"prompt": QUESTION, "chosen": RIGHT}, with_image]
    )
    inspected = CliRunner().invoke(main, ["data", "inspect", str(path), "--preview", "1"])
    assert inspected.exit_code == 0, inspected.stderr
    assert "Kind: preference" in inspected.stdout
    assert "line 2: has no 'rejected' answer" in inspected.stdout
    assert "line 3: has a media column ('images')" in inspected.stdout
    assert f"chosen:   {RIGHT}" in inspected.stdout and f"rejected: {WRONG}" in inspected.stdout
    imported = CliRunner().invoke(
        main, ["data", "import", str(path), "--name", "cli-pairs-13", "--drop-invalid"]
    )
    assert imported.exit_code == 0, imported.stderr
    assert "(preference)" in imported.stdout and "line 3: has a media column" in imported.stdout
