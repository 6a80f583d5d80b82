"""The datasets service on the real engine and the real default model: typed views in, out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from garden.errors import DatasetError
from garden.services import datasets
from garden.services.datasets import DatasetSource, ImportRequest, Issue, ReadOptions

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "datasets"
FACTS = DatasetSource(kind="bundled", value="garden_facts")


def test_bundled_sample_inspects_to_a_typed_view(isolated_settings) -> None:
    samples = {sample.name: sample for sample in datasets.bundled_samples()}
    assert {"garden_facts", "alpaca_sample", "chat_sample"} <= set(samples)
    assert samples["garden_facts"].description

    view = datasets.inspect(
        FACTS, ReadOptions(max_seq_len=2048), rendered_samples=3, settings=isolated_settings
    )
    assert (view.source, view.source_kind, view.file_type) == (
        "bundled:garden_facts",
        "bundled",
        "jsonl",
    )
    assert view.format == "openai" and view.confidence == 1.0
    assert view.mapping == {
        "format": "openai",
        "messages": "messages",
        "role": "role",
        "content": "content",
    }
    assert view.candidates[0].format == "openai" and view.candidates[0].share == 1.0
    assert "messages" in view.columns
    assert view.usable and view.problem is None
    assert view.valid_rows == view.rows >= 100 and view.invalid_rows == 0
    assert view.errors == [] and view.error_counts == {}
    stats = view.token_stats
    assert stats.count == view.rows and not stats.sampled
    assert stats.min is not None and stats.max is not None and stats.min <= stats.max
    assert len(view.token_lengths) == stats.count and max(view.token_lengths) == stats.max
    assert view.max_seq_len == 2048
    assert len(view.rendered) == 3 and "<|im_start|>assistant\n" in view.rendered[0]
    assert view.samples[0]["messages"][0]["role"] in ("system", "user")
    first_line = (ASSETS / "garden_facts.jsonl").read_text().splitlines()[0]
    assert view.raw_preview[0] == json.loads(first_line)
    json.dumps(view.model_dump(mode="json"))  # a REST schema: plain JSON all the way down
    with pytest.raises(ValidationError):
        view.rows = 0  # type: ignore[misc]


def test_import_list_get_delete(isolated_settings) -> None:
    request = ImportRequest(source=FACTS, name="facts", eval_fraction=0.2, seed=7)
    view = datasets.import_dataset(request, settings=isolated_settings)
    assert (view.name, view.format, view.source, view.raw_path) == (
        "facts",
        "openai",
        "bundled:garden_facts",
        None,
    )
    assert view.train_rows + view.eval_rows == view.rows and view.eval_rows > 0
    assert (view.eval_fraction, view.seed) == (0.2, 7)
    assert view.token_stats.count == view.rows
    train = Path(view.train_path).read_text().splitlines()
    assert len(train) == view.train_rows and "messages" in json.loads(train[0])
    assert Path(view.path) == Path(view.train_path).parent

    assert [d.id for d in datasets.list_datasets(settings=isolated_settings)] == [view.id]
    assert datasets.get_dataset("facts", settings=isolated_settings) == view
    assert datasets.get_dataset(view.id, settings=isolated_settings) == view
    (label, value), *_ = datasets.dataset_choices(settings=isolated_settings)
    assert value == view.id and label.startswith("facts — ")

    again = datasets.inspect(
        DatasetSource(kind="imported", value="facts"), settings=isolated_settings
    )
    assert again.rows == view.train_rows and again.format == "openai"

    assert datasets.delete_dataset(view.id, settings=isolated_settings) == view
    assert not Path(view.path).exists()
    assert datasets.list_datasets(settings=isolated_settings) == []
    with pytest.raises(DatasetError, match="There is no dataset 'facts'"):
        datasets.get_dataset("facts", settings=isolated_settings)
    with pytest.raises(DatasetError, match="No dataset chosen"):
        datasets.delete_dataset(None, settings=isolated_settings)


def test_broken_file_reports_row_locations(tmp_path: Path, isolated_settings) -> None:
    path = tmp_path / "qa.jsonl"
    rows = [json.dumps({"q": f"Question {i}?", "a": f"Answer {i}."}) for i in range(4)]
    path.write_text("\n".join([*rows[:2], "{broken", *rows[2:]]) + "\n")
    source = DatasetSource(kind="upload", value=str(path))

    with pytest.raises(DatasetError, match="format was not recognised"):
        datasets.inspect(source, settings=isolated_settings)

    mapping = ReadOptions(mapping={"prompt": "q", "completion": "a"})
    view = datasets.inspect(source, mapping, settings=isolated_settings)
    assert view.format == "prompt_completion" and (view.rows, view.valid_rows) == (5, 4)
    assert view.error_counts == {"unreadable": 1}
    (issue,) = view.errors
    assert isinstance(issue, Issue) and (issue.kind, issue.location) == ("unreadable", "line 3")
    assert str(issue).startswith("line 3: is not valid JSON")

    request = ImportRequest(source=source, name="qa", options=mapping)
    with pytest.raises(DatasetError, match=r"1 of 5 rows cannot be used \(line 3: ") as info:
        datasets.import_dataset(request, settings=isolated_settings)
    assert "--drop-invalid" in (info.value.hint or "")
    dropped = request.model_copy(update={"drop_invalid": True})
    saved = datasets.import_dataset(dropped, settings=isolated_settings)
    assert saved.rows == 4 and saved.warnings[0] == "1 invalid rows were dropped"


def test_sources_that_cannot_be_read(isolated_settings) -> None:
    cases = [
        (DatasetSource(kind="upload"), "No file uploaded yet"),
        (DatasetSource(kind="bundled", value=""), "No bundled sample chosen"),
        (DatasetSource(kind="hub", value="  "), "No hub id typed"),
        (DatasetSource(kind="imported"), "No imported dataset chosen"),
        (DatasetSource(kind="bundled", value="../secrets"), "There is no bundled dataset"),
        (DatasetSource(kind="hub", value="tatsu-lab/alpaca"), "hub is unreachable"),
    ]
    for source, message in cases:
        with pytest.raises(DatasetError, match=message) as info:
            datasets.inspect(source, settings=isolated_settings)
        assert info.value.hint
    with pytest.raises(ValidationError):
        DatasetSource(kind="path", value="/etc/passwd")  # type: ignore[arg-type]


def test_render_samples_and_model_choices(isolated_settings) -> None:
    models = datasets.model_choices(settings=isolated_settings)
    assert models[0] == "SmolLM2-135M-Instruct"
    sample = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}  # fmt: skip
    (rendered,) = datasets.render_samples([sample], model=models[0], settings=isolated_settings)
    assert "<|im_start|>user\nHi<|im_end|>" in rendered
    assert "<|im_start|>assistant\nHello<|im_end|>" in rendered
