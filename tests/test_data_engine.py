"""The dataset engine on real files: every format, nasty files, mapping override, split, registry."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from garden.data import (
    ReadOptions,
    delete_dataset,
    get_dataset,
    import_dataset,
    inspect_source,
    is_eval_row,
    list_datasets,
    read_rows,
    sanitize_filename,
    save_upload,
)
from garden.errors import DatasetError

CHAT = [
    {"role": "user", "content": "What colour is the sky?"},
    {"role": "assistant", "content": "Blue on a clear day."},
]


def write_jsonl(path: Path, rows: list[Any], newline: str = "\n") -> Path:
    path.write_bytes(newline.join(json.dumps(r) for r in rows).encode() + newline.encode())
    return path


def turns(*lines: str, role: str = "role", content: str = "content") -> list[dict[str, str]]:
    """Chat turns from ``"role: text"`` lines."""
    return [{role: who, content: text} for who, _, text in (x.partition(": ") for x in lines)]


def alpaca_rows(n: int) -> list[dict[str, str]]:
    return [
        {"instruction": f"Say the number {i}.", "input": "", "output": f"The number is {i}."}
        for i in range(n)
    ]


@pytest.fixture
def settings(isolated_settings):
    return isolated_settings


# formats -----------------------------------------------------------------------------


def test_openai_jsonl(tmp_path: Path, settings) -> None:
    path = write_jsonl(
        tmp_path / "chat.jsonl",
        [{"messages": CHAT}] * 1
        + [{"messages": [*CHAT[:1], {"role": "assistant", "content": "Grey."}]}],
    )
    report = inspect_source(path, settings=settings)
    assert report.format == "openai" and report.confidence == 1.0
    assert report.valid_rows == 2 and not report.errors
    assert report.samples[0] == {"messages": CHAT}
    assert "<|im_start|>assistant\nBlue on a clear day.<|im_end|>" in report.rendered[0]
    assert report.token_stats["count"] == 2 and report.token_stats["sampled"] is False


def test_sharegpt_with_aliases_and_tool_turns(tmp_path: Path, settings) -> None:
    sharegpt = {"role": "from", "content": "value"}
    call = json.dumps({"name": "weather", "arguments": {"city": "Oslo"}})
    first = turns(
        "system: Be brief.", "human: Weather?", "gpt: Let me check.", f"function_call: {call}",
        "tool: sunny", "gpt: Sunny.", **sharegpt,
    )  # fmt: skip
    rows = [
        {"conversations": first},
        {"conversations": turns("user: Hi", "assistant: Hello", **sharegpt)},
    ]
    report = inspect_source(write_jsonl(tmp_path / "sg.jsonl", rows), settings=settings)
    assert report.format == "sharegpt"
    assert report.mapping["messages"] == "conversations"
    roles = [m["role"] for m in report.samples[0]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    calls = [{"type": "function", "function": {"name": "weather", "arguments": {"city": "Oslo"}}}]
    assert report.samples[0]["messages"][2] == {
        "role": "assistant", "content": "Let me check.", "tool_calls": calls,
    }  # fmt: skip
    tool_turn = {"role": "tool", "content": "sunny", "name": "weather"}
    assert report.samples[0]["messages"][3] == tool_turn
    assert not report.warning_counts


def test_alpaca_with_input_system_and_history(tmp_path: Path, settings) -> None:
    rows = [
        {
            "instruction": "Translate",
            "input": "bonjour",
            "output": "hello",
            "system": "You translate.",
            "history": [["Translate: merci", "thank you"]],
        }
    ]
    report = inspect_source(write_jsonl(tmp_path / "a.jsonl", rows), settings=settings)
    assert report.format == "alpaca"
    assert report.samples[0]["messages"] == [
        {"role": "system", "content": "You translate."},
        {"role": "user", "content": "Translate: merci"},
        {"role": "assistant", "content": "thank you"},
        {"role": "user", "content": "Translate\n\nbonjour"},
        {"role": "assistant", "content": "hello"},
    ]


def test_prompt_completion_csv_and_text_parquet(tmp_path: Path, settings) -> None:
    csv_path = tmp_path / "pc.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["prompt", "completion"])
        writer.writeheader()
        writer.writerow({"prompt": "2+2?", "completion": "4, with a comma\nand a newline"})
        writer.writerow({"prompt": "3+3?", "completion": "6"})
    report = inspect_source(csv_path, settings=settings)
    assert (report.format, report.file_type, report.valid_rows) == ("prompt_completion", "csv", 2)
    assert report.samples[0]["messages"][1]["content"] == "4, with a comma\nand a newline"

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq_path = tmp_path / "text.parquet"
    pq.write_table(pa.table({"text": ["Once upon a time.", "The end."]}), pq_path)
    record = import_dataset(pq_path, "plain text", eval_fraction=0.0, settings=settings)
    assert record.format == "text" and record.eval_rows == 0
    assert record.train_path.read_text().splitlines()[0] == '{"text": "Once upon a time."}'
    assert record.eval_path.read_text() == ""


def test_json_array_gzip_and_wrapped_object(tmp_path: Path, settings) -> None:
    array = tmp_path / "data.json.gz"
    with gzip.open(array, "wt", encoding="utf-8") as handle:
        json.dump(alpaca_rows(30), handle, indent=2)
    report = inspect_source(array, settings=settings)
    assert (report.file_type, report.format, report.valid_rows) == ("json", "alpaca", 30)

    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"version": 1, "data": alpaca_rows(3)}))
    assert inspect_source(wrapped, settings=settings).valid_rows == 3

    trailing = tmp_path / "trailing.json"
    trailing.write_text(
        '[{"prompt": "a", "completion": "b"},\n {"prompt": "c", "completion": "d"},\n]'
    )
    assert inspect_source(trailing, settings=settings).valid_rows == 2


# nasty files -------------------------------------------------------------------------


def test_bom_crlf_trailing_commas(tmp_path: Path, settings) -> None:
    path = tmp_path / "windows.jsonl"
    lines = [
        json.dumps({"prompt": "a", "completion": "b"}),
        '{"prompt": "c", "completion": "d",}',
        json.dumps({"prompt": "e", "completion": "f"}) + ",",
        "",
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode())
    report = inspect_source(path, settings=settings)
    assert report.valid_rows == 3 and not report.errors
    assert report.warning_counts["repaired"] == 2
    assert {w.location for w in report.warnings} == {"line 2", "line 3"}


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.jsonl", b"", "empty (0 bytes)"),
        ("image.jsonl", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "PNG image"),
        ("blob.jsonl", b"abc\x00\x01\x02" * 10, "binary file"),
        ("utf16.jsonl", '{"text": "hi"}'.encode("utf-16"), "UTF-16"),
        ("blank.jsonl", b"\n\n  \r\n", "holds no rows"),
        ("fake.parquet", b'{"text": "x"}\n', "not a Parquet file"),
    ],
)
def test_unreadable_files_raise_clear_errors(
    tmp_path: Path, settings, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetError) as info:
        inspect_source(path, settings=settings)
    assert expected in str(info.value) and info.value.hint


def test_file_over_size_limit(tmp_path: Path, settings) -> None:
    small = settings.model_copy(update={"max_upload_mb": 1})
    path = write_jsonl(tmp_path / "big.jsonl", [{"text": "x" * 1000}] * 1100)
    with pytest.raises(DatasetError, match="over the 1 MB limit"):
        inspect_source(path, settings=small)


def test_row_level_problems_have_row_numbers(tmp_path: Path, settings) -> None:
    deep = '{"prompt": "deep", "completion": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [
        json.dumps({"prompt": "ok", "completion": "fine"}),  # 1
        "this is not json",  # 2
        json.dumps({"prompt": "q", "completion": ""}),  # 3 empty answer
        json.dumps({"prompt": "q"}),  # 4 missing answer
        json.dumps({"prompt": {"nested": True}, "completion": "x"}),  # 5 wrong type
        deep,  # 6 deep nesting
        json.dumps({"prompt": "ok", "completion": "fine"}),  # 7 duplicate of 1
        json.dumps([1, 2, 3]),  # 8 not an object
        json.dumps({"prompt": "big", "completion": "y" * 1_048_576}),  # 9 1 MB field
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        "\n".join(lines).encode() + b"\n" + b'{"prompt": "caf\xe9", "completion": "x"}\n'
    )
    report = inspect_source(path, ReadOptions(max_seq_len=4096), settings=settings)
    errors = {issue.location: issue.message for issue in report.errors}
    assert "not valid JSON" in errors["line 2"]
    assert "empty" in errors["line 3"]
    assert "has no" in errors["line 4"]
    assert "an object" in errors["line 5"]
    assert "nested too deeply" in errors["line 6"] or "object" in errors["line 6"]
    assert "JSON list" in errors["line 8"]
    assert "not valid UTF-8" in errors["line 10"]
    warnings = {(w.kind, w.location): w.message for w in report.warnings}
    assert warnings[("duplicate", "line 7")] == "repeats line 1"
    assert "more than the max sequence length 4096" in warnings[("too_long", "line 9")]
    assert (report.rows, report.valid_rows) == (10, 3)
    assert report.usable


def test_chat_structure_problems(tmp_path: Path, settings) -> None:
    rows = [
        {"messages": turns("user: hi")},
        {"messages": turns("assistant: hi", "user: x")},
        {"messages": turns("user: a", "user: b", "assistant: c")},
        {"messages": turns("user: a", "assistant: b", "system: s")},
        {"messages": turns("wizard: a")},
        {"messages": "nope"},
        {"messages": [*CHAT, {"role": "user", "content": "and at night?"}]},
    ]
    report = inspect_source(write_jsonl(tmp_path / "roles.jsonl", rows), settings=settings)
    errors = {issue.location: issue.message for issue in report.errors}
    assert "no assistant turn" in errors["line 1"]
    assert "start with a user turn" in errors["line 2"]
    assert "two user turns in a row" in errors["line 3"]
    assert "system message at turn 3" in errors["line 4"]
    assert "unknown role 'wizard'" in errors["line 5"]
    assert "non-empty list" in errors["line 6"]
    assert report.valid_rows == 1 and report.samples[0] == {"messages": CHAT}


def test_mixed_format_rows_are_converted_with_warnings(tmp_path: Path, settings) -> None:
    rows = [*alpaca_rows(4), {"messages": CHAT}, {"text": "plain"}]
    report = inspect_source(write_jsonl(tmp_path / "mixed.jsonl", rows), settings=settings)
    assert report.format == "alpaca" and report.confidence == pytest.approx(4 / 6, abs=0.01)
    assert report.valid_rows == 5
    assert any("openai format" in w.message for w in report.warnings if w.location == "line 5")
    assert report.errors[0].location == "line 6"


def test_nothing_usable_is_reported_not_raised(tmp_path: Path, settings) -> None:
    path = write_jsonl(tmp_path / "none.jsonl", [{"prompt": "a", "completion": ""}] * 3)
    report = inspect_source(path, settings=settings)
    assert not report.usable and "None of the 3 rows" in (report.problem or "")


def test_unknown_format_and_mapping_override(tmp_path: Path, settings) -> None:
    rows = [{"q": f"Question {i}?", "a": f"Answer {i}.", "sys": "Be nice."} for i in range(5)]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    with pytest.raises(DatasetError, match="format was not recognised") as info:
        inspect_source(path, settings=settings)
    assert "mapping" in (info.value.hint or "")
    mapping = {"instruction": "q", "output": "a", "system": "sys"}
    report = inspect_source(path, ReadOptions(mapping=mapping), settings=settings)
    assert report.format == "alpaca" and report.confidence == 1.0
    assert report.samples[0]["messages"][0] == {"role": "system", "content": "Be nice."}
    with pytest.raises(DatasetError, match="no row has it"):
        mismatch = ReadOptions(mapping={"prompt": "question", "completion": "a"})
        inspect_source(path, mismatch, settings=settings)
    record = import_dataset(path, "qa", ReadOptions(mapping=mapping), settings=settings)
    assert record.mapping["instruction"] == "q" and record.rows == 5


def test_hub_offline_error(settings) -> None:
    with pytest.raises(DatasetError) as info:
        inspect_source("tatsu-lab/alpaca", settings=settings)
    assert "hub is unreachable" in info.value.message
    assert "upload" in (info.value.hint or "").lower()


def test_unknown_source(settings) -> None:
    with pytest.raises(DatasetError, match="was not found"):
        inspect_source("no/such/file.jsonl", settings=settings)


# split, import, registry ---------------------------------------------------------------


def test_split_is_deterministic_and_size_independent(tmp_path: Path, settings) -> None:
    big = write_jsonl(tmp_path / "big.jsonl", alpaca_rows(400))
    small = write_jsonl(tmp_path / "small.jsonl", alpaca_rows(100))
    a = import_dataset(big, "a", eval_fraction=0.2, seed=7, settings=settings)
    b = import_dataset(big, "b", eval_fraction=0.2, seed=7, settings=settings)
    c = import_dataset(small, "c", eval_fraction=0.2, seed=7, settings=settings)
    d = import_dataset(big, "d", eval_fraction=0.2, seed=8, settings=settings)
    assert a.eval_path.read_bytes() == b.eval_path.read_bytes()
    assert 40 < a.eval_rows < 120 and a.train_rows + a.eval_rows == 400
    eval_a = a.eval_path.read_text().splitlines()
    eval_c = c.eval_path.read_text().splitlines()
    assert eval_a[: len(eval_c)] == eval_c  # the first 100 rows split the same way
    assert d.eval_path.read_bytes() != a.eval_path.read_bytes()
    expected = [i for i in range(400) if is_eval_row(7, i, 0.2)]
    assert [json.loads(line)["messages"][0]["content"] for line in eval_a] == [
        f"Say the number {i}." for i in expected
    ]


def test_tiny_dataset_still_gets_an_eval_row(tmp_path: Path, settings) -> None:
    record = import_dataset(
        write_jsonl(tmp_path / "two.jsonl", alpaca_rows(2)), "two", settings=settings
    )
    assert (record.train_rows, record.eval_rows) == (1, 1)


def test_import_registry_roundtrip(tmp_path: Path, settings) -> None:
    bad = tmp_path / "some bad.jsonl"
    write_jsonl(bad, alpaca_rows(20))
    with bad.open("a") as handle:
        handle.write("{oops\n")
    with pytest.raises(DatasetError, match="1 of 21 rows cannot be used") as info:
        import_dataset(bad, "facts", settings=settings)
    assert "--drop-invalid" in (info.value.hint or "")
    assert list(settings.raw_datasets_path.iterdir()) == []  # failed import leaves no raw copy
    assert list(settings.temp_path.glob("import-*")) == []
    record = import_dataset(bad, "facts", drop_invalid=True, settings=settings)
    assert record.rows == 20 and "1 invalid rows were dropped" in record.warnings[0]
    assert record.raw_path and Path(record.raw_path).parent == settings.raw_datasets_path
    assert Path(record.path).parent == settings.processed_datasets_path
    meta = json.loads((Path(record.path) / "meta.json").read_text())
    assert meta["dropped_rows"] == 1
    assert get_dataset("facts", settings).id == record.id
    assert get_dataset(record.id, settings).train_path == record.train_path
    assert [d.id for d in list_datasets(settings)] == [record.id]
    assert len(read_rows(record.id, "train", offset=2, limit=3, settings=settings)) == 3
    with pytest.raises(DatasetError, match="already exists"):
        import_dataset(bad, "facts", drop_invalid=True, settings=settings)
    delete_dataset("facts", settings)
    assert not Path(record.path).exists() and not Path(record.raw_path).exists()
    with pytest.raises(DatasetError, match="no dataset"):
        get_dataset("facts", settings)


def test_bundled_samples(settings) -> None:
    facts = inspect_source("bundled:garden_facts", settings=settings)
    assert facts.format == "openai" and 100 <= facts.valid_rows <= 200 and not facts.errors
    assert inspect_source("alpaca_sample", settings=settings).format == "alpaca"
    chat = inspect_source("bundled:chat_sample", settings=settings)
    assert chat.format == "sharegpt" and not chat.errors
    assert max(len(s["messages"]) for s in chat.samples) >= 4
    record = import_dataset("bundled:garden_facts", "garden", settings=settings)
    assert record.source == "bundled:garden_facts" and record.raw_path is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/abs/path/data.jsonl", "data.jsonl"),
        ("....jsonl", "jsonl"),
        ("ça va?.jsonl", "ca_va_.jsonl"),
        ("", "upload"),
    ],
)
def test_sanitize_filename(name: str, expected: str) -> None:
    assert sanitize_filename(name) == expected


def test_upload_names_never_escape_or_overwrite(tmp_path: Path, settings) -> None:
    src = write_jsonl(tmp_path / "x.jsonl", alpaca_rows(2))
    first = save_upload(src, settings, original_name="../../../evil.jsonl")
    second = save_upload(src, settings, original_name="../../../evil.jsonl")
    assert first.parent == second.parent == settings.raw_datasets_path
    assert (first.name, second.name) == ("evil.jsonl", "evil-1.jsonl")
    dots = save_upload(src, settings, original_name="..")
    assert (dots.parent, dots.name) == (settings.raw_datasets_path, "upload")


def test_large_json_array_streams_across_chunks(tmp_path: Path, settings) -> None:
    rows = alpaca_rows(3000)
    rows[1500]["output"] = "z" * 1_048_576  # one element far bigger than a read chunk
    path = tmp_path / "big.json"
    path.write_text(json.dumps(rows, indent=1))
    report = inspect_source(path, settings=settings)
    assert (report.rows, report.valid_rows, report.errors) == (3000, 3000, [])
    record = import_dataset(path, "big-array", eval_fraction=0.0, settings=settings)
    lines = record.train_path.read_text().splitlines()
    assert (
        len(lines) == 3000
        and json.loads(lines[2999])["messages"][0]["content"] == "Say the number 2999."
    )

    latin = tmp_path / "latin.json"
    latin.write_bytes(b'[{"text": "caf\xe9"}]')
    with pytest.raises(DatasetError, match="not valid UTF-8"):
        inspect_source(latin, settings=settings)
    truncated = tmp_path / "cut.json"
    truncated.write_text(json.dumps(alpaca_rows(3))[:-40])
    report = inspect_source(truncated, settings=settings)
    assert report.valid_rows == 2 and report.errors[0].location == "row 3"


def test_nasty_csv(tmp_path: Path, settings) -> None:
    path = tmp_path / "excel.csv"
    body = (
        "instruction,input,output\r\n"
        "Say hi,,Hi!\r\n"
        '"Quote ""this""","with, comma","done"\r\n'
        "too,many,fields,here\r\n"
        "Bad byte,,caf\xe9\r\n"
        "No answer,,\r\n"
    )
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("latin-1"))
    report = inspect_source(path, settings=settings)
    assert report.format == "alpaca" and report.columns == ["input", "instruction", "output"]
    errors = {issue.location: issue.message for issue in report.errors}
    assert "more fields than the header" in errors["row 3"]
    assert "not valid UTF-8" in errors["row 4"]
    assert "empty 'output'" in errors["row 5"]
    assert report.samples[1]["messages"][0]["content"] == 'Quote "this"\n\nwith, comma'
    tsv = tmp_path / "data.tsv"
    tsv.write_text("prompt\tcompletion\nhello\tworld\n")
    assert inspect_source(tsv, settings=settings).valid_rows == 1


def test_hub_ids_parse_and_never_read_local_files(settings) -> None:
    from garden.data.sources import resolve_source

    source = resolve_source("org/name@sub:validation", settings)
    assert (source.kind, source.hub_id, source.subset, source.split) == (
        "hub",
        "org/name",
        "sub",
        "validation",
    )
    assert resolve_source("hf://org/name", settings).split == "train"
    with pytest.raises(DatasetError, match="not a hub dataset id"):
        resolve_source("hub:/etc/passwd", settings)


def test_hub_unreachable_fails_fast(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(DatasetError, match="hub is unreachable") as info:
        inspect_source("org/name", settings=settings)
    assert "upload" in (info.value.hint or "").lower()


def test_long_rows_are_cut_in_previews_only(tmp_path: Path, settings) -> None:
    long_answer = "w " * 300_000
    path = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "p", "completion": long_answer}] * 2)
    report = inspect_source(path, settings=settings)
    assert report.token_stats["max"] > 100_000  # counted in full
    shown = report.samples[0]["messages"][1]["content"]
    assert len(shown) < 21_000 and shown.endswith("more characters]")
    assert len(report.raw_preview[0]["completion"]) < 21_000
    record = import_dataset(path, "long", eval_fraction=0.0, settings=settings)
    saved = json.loads(record.train_path.read_text().splitlines()[0])
    assert saved["messages"][1]["content"] == long_answer
