"""Property-based tests: inspecting or importing generated garbage and near-valid rows either
works or raises a typed ``GardenError``; never any other exception."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from garden.data import import_dataset, inspect_source
from garden.errors import GardenError

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    database=None,  # no example database in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SUFFIXES = [".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", ".jsonl.gz", ".csv.gz", ""]
_names = itertools.count()

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
roles = st.sampled_from(["user", "assistant", "system", "human", "gpt", "tool", "", "👾"]) | (
    json_values
)


@st.composite
def near_valid_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A row of a known format whose fields may have the wrong type or be missing."""
    kind = draw(st.sampled_from(["alpaca", "sharegpt", "openai", "prompt_completion", "text"]))
    text = st.text(max_size=40) | json_values
    if kind == "alpaca":
        row = {"instruction": draw(text), "input": draw(text), "output": draw(text)}
    elif kind == "prompt_completion":
        row = {"prompt": draw(text), "completion": draw(text)}
    elif kind == "text":
        row = {"text": draw(text)}
    else:
        role, content, field = (
            ("from", "value", "conversations")
            if kind == "sharegpt"
            else ("role", "content", "messages")
        )
        turn = st.fixed_dictionaries({role: roles, content: text}) | json_values
        row = {field: draw(st.lists(turn, max_size=4) | json_values)}
        if draw(st.booleans()):
            row["system"] = draw(text)
    drop = draw(st.sets(st.sampled_from(sorted(row)), max_size=1))
    return {key: value for key, value in row.items() if key not in drop}


@pytest.fixture(scope="module")
def fuzz_settings(module_tmp: Path, default_model_path: Path):
    from garden.config import Settings

    settings = Settings(
        _env_file=None,
        storage_root=module_tmp / "storage",
        models_dir=default_model_path.parent.parent,
    )
    settings.ensure_storage()
    return settings


def only_typed_errors(path: Path, settings: Any, *, also_import: bool = False) -> None:
    """Inspect (and import) ``path``: success or a ``GardenError`` with a message."""
    try:
        report = inspect_source(path, settings=settings)
    except GardenError as exc:
        assert str(exc).strip()
        event(f"refused: {exc.kind}")
        return
    assert report.rows >= report.valid_rows >= 0
    event("inspected" if report.valid_rows else "inspected, no valid row")
    if also_import:
        try:
            record = import_dataset(
                path, f"fuzz-{next(_names)}", settings=settings, drop_invalid=True
            )
        except GardenError as exc:
            assert str(exc).strip()
            event(f"import refused: {exc.kind}")
            return
        assert record.rows == report.valid_rows
        event("imported")


def one_file(suffix: str, data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
        yield path


@EXAMPLES
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(min_size=0, max_size=2048))
def test_random_bytes(fuzz_settings, suffix: str, data: bytes) -> None:
    for path in one_file(suffix, data):
        only_typed_errors(path, fuzz_settings)


@EXAMPLES
@given(
    values=st.lists(json_values, min_size=1, max_size=8),
    layout=st.sampled_from(["jsonl", "json", "json-object"]),
)
def test_random_json_values(fuzz_settings, values: list[Any], layout: str) -> None:
    if layout == "jsonl":
        data, suffix = "\n".join(json.dumps(v) for v in values), ".jsonl"
    elif layout == "json":
        data, suffix = json.dumps(values), ".json"
    else:
        data, suffix = json.dumps({"data": values}), ".json"
    for path in one_file(suffix, data.encode()):
        only_typed_errors(path, fuzz_settings)


@EXAMPLES
@given(
    rows=st.lists(near_valid_rows(), min_size=1, max_size=8),
    suffix=st.sampled_from([".jsonl", ".json", ".parquet"]),
)
def test_near_valid_rows(fuzz_settings, rows: list[dict[str, Any]], suffix: str) -> None:
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        try:
            pq.write_table(pa.Table.from_pylist(rows), sink)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            return  # rows pyarrow itself cannot store (e.g. an empty struct) are no Parquet file
        data = sink.getvalue()
    elif suffix == ".json":
        data = json.dumps(rows).encode()
    else:
        data = "\n".join(json.dumps(row) for row in rows).encode()
    for path in one_file(suffix, data):
        only_typed_errors(path, fuzz_settings, also_import=True)


@EXAMPLES
@given(
    header=st.lists(
        st.sampled_from(["prompt", "completion", "text", "instruction", "output"])
        | st.text(max_size=12),
        min_size=1,
        max_size=4,
    ),
    body=st.lists(st.lists(st.text(max_size=20), max_size=5), max_size=8),
    delimiter=st.sampled_from([",", "\t"]),
)
def test_random_csv(
    fuzz_settings, header: list[str], body: list[list[str]], delimiter: str
) -> None:
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(body)
    suffix = ".csv" if delimiter == "," else ".tsv"
    for path in one_file(suffix, text.getvalue().encode("utf-8", "surrogatepass")):
        only_typed_errors(path, fuzz_settings, also_import=True)
