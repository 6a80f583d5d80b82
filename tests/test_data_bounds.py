"""Bounds on reading, writing and serving: gzip bombs, huge lines, odd and damaged Parquet,
unreadable files, full disks, temp exports, and the transformers backend's request queue."""

from __future__ import annotations

import decimal
import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from garden.data import ReadOptions, import_dataset, inspect_source
from garden.data import limits as data_limits
from garden.data.readers import RowReader
from garden.data.sources import MAX_LINE_BYTES, resolve_source
from garden.errors import DatasetError, DiskFullError, GardenError, ServingError

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
PEAK_GROWTH_LIMIT_MB = 100


@pytest.fixture
def settings(isolated_settings):
    return isolated_settings


def fill(path: Path, head: bytes, filler: bytes, size: int, tail: bytes = b"") -> Path:
    """Write ``head``, ``filler`` repeated to about ``size`` bytes, then ``tail``, streaming."""
    chunk = filler * (MB // len(filler))
    with gzip.open(path, "wb", compresslevel=1) if path.suffix == ".gz" else path.open("wb") as out:
        out.write(head)
        for _ in range(size // len(chunk)):
            out.write(chunk)
        out.write(tail)
    return path


def measure(action: str, path: Path, storage: Path, **env: str) -> dict[str, Any]:
    """Run ``inspect`` or ``import`` of ``path`` in a fresh process; its error and how much its
    peak resident memory grew while doing it (heavy modules are imported before measuring)."""
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        import pyarrow.parquet, transformers  # noqa: F401 -- loaded before the baseline
        from garden.config import Settings
        from garden.data import import_dataset, inspect_source
        from garden.errors import GardenError
        settings = Settings(_env_file=None, storage_root={str(storage)!r})
        settings.ensure_storage()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        error = kind = None
        try:
            if {action!r} == "import":
                import_dataset({str(path)!r}, "bomb", settings=settings)
            else:
                inspect_source({str(path)!r}, settings=settings)
        except GardenError as exc:
            error, kind = str(exc), exc.kind
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"error": error, "kind": kind, "growth_mb": (after - before) / 1024}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{action} {path.name}: peak RSS grew {result['growth_mb']:.1f} MB")
    return result


# bombs and huge lines ----------------------------------------------------------------


def test_gzip_bomb_is_refused_on_decompressed_bytes_with_bounded_memory(tmp_path: Path) -> None:
    bomb = fill(tmp_path / "bomb.jsonl.gz", b'{"text": "', b"a", 400 * MB, b'"}\n')
    assert bomb.stat().st_size < 5 * MB  # a small upload that expands 100 times and more
    storage = tmp_path / "storage"
    result = measure("import", bomb, storage, MAX_UPLOAD_MB="40")
    assert result["kind"] == "bad_data"
    assert "more than 40 MB once decompressed" in result["error"]
    assert result["growth_mb"] < PEAK_GROWTH_LIMIT_MB, result
    assert not list((storage / "datasets" / "processed").iterdir())
    assert not list((storage / "datasets" / "raw").iterdir())  # the raw copy is removed
    assert not [p for p in (storage / "temp").iterdir() if p.name.startswith("import-")]


def test_200_mb_single_line_csv_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    huge = fill(tmp_path / "huge.csv", b"", b"abc,def,", 200 * MB)
    result = measure("inspect", huge, tmp_path / "storage")
    assert result["kind"] == "bad_data"
    assert "first line of huge.csv is longer than 16 MB" in result["error"]
    assert result["growth_mb"] < PEAK_GROWTH_LIMIT_MB, result


@pytest.mark.parametrize(
    ("name", "head", "tail", "after", "location"),
    [
        ("rows.csv", b"prompt,completion\nx,", b"\n", b"What is 2+2?,Four.\n", "row 1"),
        ("rows.jsonl", b'{"text": "', b'"}\n', b'{"text": "a short one"}\n', "line 1"),
    ],
)
def test_an_over_long_row_is_a_row_error_and_the_rest_is_read(
    tmp_path: Path, settings, name: str, head: bytes, tail: bytes, after: bytes, location: str
) -> None:
    path = fill(tmp_path / name, head, b"y", MAX_LINE_BYTES + MB, tail + after)
    report = inspect_source(path, settings=settings)
    assert report.rows == 2 and report.valid_rows == 1
    assert report.errors[0].location == location
    assert "longer than 16 MB" in report.errors[0].message


def test_a_huge_top_level_json_object_is_refused(tmp_path: Path, settings) -> None:
    path = fill(tmp_path / "one.json", b'{"data": [{"text": "', b"q", MAX_LINE_BYTES + MB, b'"}]}')
    with pytest.raises(DatasetError, match="single JSON object larger than 16 MB") as caught:
        list(RowReader(resolve_source(path, settings)))
    assert "JSON Lines" in str(caught.value)


def test_an_over_long_json_array_element_is_a_row_error(tmp_path: Path, settings) -> None:
    path = fill(tmp_path / "list.json", b'[{"text": "ok"}, {"text": "', b"w", MAX_LINE_BYTES + MB)
    rows = list(RowReader(resolve_source(path, settings)))
    assert rows[0].data == {"text": "ok"}
    assert rows[1].location == "row 2" and rows[1].error is not None
    assert rows[1].error.startswith("is longer than 16 MB")


def test_a_small_top_level_json_object_still_reads(tmp_path: Path, settings) -> None:
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"data": [{"text": "one"}, {"text": "two"}]}), encoding="utf-8")
    rows = list(RowReader(resolve_source(path, settings)))
    assert [row.data for row in rows] == [{"text": "one"}, {"text": "two"}]


def test_a_truncated_gzip_file_is_a_typed_error(tmp_path: Path, settings) -> None:
    whole = gzip.compress(b"".join(b'{"text": "row %d"}\n' % i for i in range(50_000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetError, match="damaged or truncated gzip"):
        inspect_source(path, settings=settings)


# Parquet -----------------------------------------------------------------------------


def odd_parquet(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 40
    table = pa.table(
        {
            "text": [f"row {i}" for i in range(n)],
            "blob": [b"\xff\x00binary", b"plain utf-8"] * (n // 2),
            "price": pa.array([decimal.Decimal("1.50"), None] * (n // 2), pa.decimal128(5, 2)),
            "when": pa.array([datetime(2024, 1, 2, 3, 4, 5)] * n, pa.timestamp("ms")),
            "nested": [{"a": 1, "b": [1, 2]}] * n,
            "tags": pa.array([[("k", 1)]] * n, pa.map_(pa.string(), pa.int64())),
            "took": pa.array([timedelta(seconds=3)] * n, pa.duration("s")),
        }
    )
    pq.write_table(table, path)
    return path


def test_odd_parquet_cells_become_plain_values(tmp_path: Path, settings) -> None:
    rows = list(RowReader(resolve_source(odd_parquet(tmp_path / "odd.parquet"), settings)))
    first, second = rows[0].data, rows[1].data
    assert first is not None and second is not None
    assert first["blob"] == "<8 bytes of binary data>" and second["blob"] == "plain utf-8"
    assert first["price"] == "1.50" and second["price"] is None
    assert first["when"] == "2024-01-02T03:04:05"
    assert first["nested"] == {"a": 1, "b": [1, 2]}
    assert first["tags"] == [["k", 1]] and first["took"] == "0:00:03"
    json.dumps([row.data for row in rows], allow_nan=False)  # plain JSON all the way down


def test_odd_parquet_imports_as_text(tmp_path: Path, settings) -> None:
    record = import_dataset(
        odd_parquet(tmp_path / "odd.parquet"), "odd", ReadOptions(), settings=settings
    )
    assert record.format == "text" and record.rows == 40


def test_a_corrupt_parquet_page_is_a_typed_error(tmp_path: Path, settings) -> None:
    import pyarrow.parquet as pq

    path = odd_parquet(tmp_path / "odd.parquet")
    offset = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 40] = b"\xff" * 40
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"odd\.parquet is damaged near row 1"):
        inspect_source(path, settings=settings)


# unreadable files, full disks ----------------------------------------------------------


def test_an_unreadable_file_is_a_typed_error(tmp_path: Path) -> None:
    """Run as an unprivileged user (root reads any file), in a fresh process."""
    path = tmp_path / "secret.jsonl"
    path.write_text('{"text": "hi"}\n', encoding="utf-8")
    path.chmod(0)
    script = textwrap.dedent(
        f"""
        import os
        from garden.config import Settings
        from garden.data.sources import resolve_source
        from garden.errors import DatasetError
        if os.getuid() == 0:  # everything is imported: drop to nobody
            os.setgid(65534); os.setuid(65534)
        try:
            resolve_source({str(path)!r}, Settings(_env_file=None, storage_root="/nonexistent"))
        except DatasetError as exc:
            print("refused:", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: secret.jsonl cannot be read: permission denied." in done.stdout


def test_damaged_processed_rows_are_a_typed_error(tmp_path: Path, settings) -> None:
    from garden.data import read_rows

    path = tmp_path / "ok.jsonl"
    path.write_text('{"text": "hello"}\n{"text": "world"}\n', encoding="utf-8")
    record = import_dataset(path, "damaged", settings=settings)
    record.train_path.write_text('{"messages": [\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="delete the dataset and import it again"):
        read_rows(record.id, settings=settings)


def test_free_space_is_checked_before_writing(tmp_path: Path) -> None:
    free = data_limits.free_bytes(tmp_path)
    with pytest.raises(DiskFullError, match="Not enough disk space for the test") as caught:
        data_limits.check_free_space(tmp_path, free + 10 * MB * 1024, "the test")
    assert "needed" in str(caught.value) and "free" in str(caught.value)
    data_limits.check_free_space(tmp_path, 1, "the test")


def test_an_import_is_refused_when_the_disk_is_nearly_full(
    tmp_path: Path, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text('{"text": "hello"}\n{"text": "world"}\n', encoding="utf-8")
    # A fixed reading: the real free space moves while other tests write and delete files.
    monkeypatch.setattr(
        data_limits, "free_bytes", lambda folder: data_limits.FREE_SPACE_RESERVE + 8
    )
    with pytest.raises(DiskFullError, match="needed"):
        import_dataset(path, "full", settings=settings)
    assert not list(settings.processed_datasets_path.iterdir())
    assert not list(settings.raw_datasets_path.iterdir())


# temp exports ------------------------------------------------------------------------


def test_exports_get_unguessable_names_and_old_ones_are_purged(settings) -> None:
    from garden.services import carbon, chat

    settings.temp_path.mkdir(parents=True, exist_ok=True)
    old = settings.temp_path / "chat-20200101-000000-abcdef.json"
    old.write_text("{}", encoding="utf-8")
    stale = time.time() - data_limits.TEMP_MAX_AGE_S - 60
    os.utime(old, (stale, stale))
    staging = settings.temp_path / "import-ds-running"
    staging.mkdir()
    os.utime(staging, (stale, stale))
    conversation = chat.Conversation(
        model="m", messages=[chat.ChatMessage(role="user", content="hi")]
    )
    first = chat.export_conversation([conversation], "auto", settings=settings)
    second = chat.export_conversation([conversation], "auto", settings=settings)
    report = carbon.export_csv([], settings=settings)
    assert not old.exists() and staging.exists()  # staging folders have their own clean-up
    assert first != second and first.parent == second.parent == report.parent
    for path in (first, second, report):
        token = path.stem.rsplit("-", 1)[-1]
        assert len(token) == 32, path.name  # 128 random bits, not a time stamp
        assert path.stat().st_mode & 0o077 == 0  # readable by its owner only
    assert json.loads(first.read_text(encoding="utf-8"))["conversations"][0]["model"] == "m"


# the transformers backend's queue ------------------------------------------------------


@pytest.mark.slow
def test_transformers_backend_refuses_beyond_its_queue(default_model_path: Path) -> None:
    from garden.engine.serving.hf import TransformersBackend
    from garden.engine.serving.types import GenerationConfig, GenerationRequest

    backend = TransformersBackend(str(default_model_path), max_waiting=1, max_wait_s=1.0)
    backend.start()
    config = GenerationConfig(temperature=0, max_new_tokens=400, ignore_eos=True)
    first = backend.stream(GenerationRequest([1, 2, 3], config, "first"))
    next(first)  # generating now
    outcome: dict[str, Any] = {}

    def queued() -> None:
        try:
            list(backend.stream(GenerationRequest([1, 2, 3], config, "second")))
        except GardenError as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=queued)
    waiter.start()
    deadline = time.monotonic() + 10
    while backend._waiting < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        with pytest.raises(ServingError, match="busy: 1 requests are already waiting"):
            next(backend.stream(GenerationRequest([1, 2, 3], config, "third")))
        waiter.join(timeout=30)
        assert isinstance(outcome.get("error"), ServingError)  # waited 1 s for its turn
        assert "waited 1 s" in str(outcome["error"])
    finally:
        backend.abort("first")
        for _ in first:
            pass
        backend.shutdown()
    assert backend._waiting == 0


def test_a_hub_dataset_is_counted_while_it_streams_and_stops_at_the_cap() -> None:
    """A hub split is read no deeper than MAX_UPLOAD_MB of rows (as JSON), like a file; the
    import plans its disk for that bound before the first row arrives."""
    import dataclasses

    from garden.config import Settings
    from garden.data.hub import bounded_rows
    from garden.data.importer import processed_size_estimate

    demo = Settings(_env_file=None, public_demo=True)
    source = resolve_source("hf://org/huge:train", demo)
    assert source.max_bytes == 10 * 2**20  # the demo's upload cap
    assert processed_size_estimate(source) == 2 * source.max_bytes
    small = dataclasses.replace(source, max_bytes=2 * 2**20)
    records = iter([{"text": "x" * 1000} for _ in range(10_000)])  # ≈1 KB a row as JSON
    rows = []
    with pytest.raises(DatasetError) as refused:
        rows.extend(bounded_rows(small, records))
    assert 2000 < len(rows) < 2100 and next(records), "stopped early: the rest was never read"
    message = str(refused.value)
    assert f"org/huge is larger than 2 MB (stopped at row {len(rows) + 1})" in message
    assert "\n" not in message, message
