"""`model-garden data …` through click, against the session storage."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from garden.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_inspect_import_list_rm(tmp_path: Path, default_model_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    rows = [{"q": f"Question {i}?", "a": f"Answer {i}."} for i in range(12)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")

    unknown = run("data", "inspect", str(path))
    assert unknown.exit_code == 2 and "format was not recognised" in unknown.stderr

    result = run(
        "data", "inspect", str(path), "--json", "--mapping", "prompt=q,completion=a",
        "--max-seq-len", "2048",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "prompt_completion" and report["valid_rows"] == 12
    assert report["errors"][0]["location"] == "line 13" and report["usable"] is True
    assert report["token_stats"]["count"] == 12

    text = run("data", "inspect", str(path), "--mapping", '{"prompt": "q", "completion": "a"}')
    assert text.exit_code == 0 and "line 13: is not valid JSON" in text.stdout

    failed = run(
        "data", "import", str(path), "--name", "cli-qa", "--mapping", "prompt=q,completion=a"
    )
    assert failed.exit_code == 2 and "--drop-invalid" in failed.stderr

    imported = run(
        "data", "import", str(path), "--name", "cli-qa", "--mapping", "prompt=q,completion=a",
        "--drop-invalid", "--eval-fraction", "0.25", "--seed", "3", "--json",
    )  # fmt: skip
    assert imported.exit_code == 0, imported.stderr
    record = json.loads(imported.stdout)
    assert record["rows"] == 12 and record["train_rows"] + record["eval_rows"] == 12
    assert Path(record["train_path"]).is_file()

    listed = json.loads(run("data", "list", "--json").stdout)
    assert record["id"] in [d["id"] for d in listed]
    assert "cli-qa" in run("data", "list").stdout

    assert run("data", "rm", record["id"]).exit_code == 0
    missing = run("data", "rm", record["id"])
    assert missing.exit_code == 2 and "There is no dataset" in missing.stderr


def test_unusable_and_bad_input_exit_2(tmp_path: Path, default_model_path: Path) -> None:
    png = tmp_path / "photo.jsonl"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    result = run("data", "inspect", str(png))
    assert result.exit_code == 2 and "PNG image" in result.stderr

    empty_answers = tmp_path / "empty.jsonl"
    empty_answers.write_text('{"prompt": "a", "completion": ""}\n')
    result = run("data", "inspect", str(empty_answers))
    assert result.exit_code == 2 and "None of the 1 rows" in result.stderr

    offline = run("data", "inspect", "tatsu-lab/alpaca")
    assert offline.exit_code == 2 and "hub is unreachable" in offline.stderr

    bad_mapping = run("data", "inspect", str(empty_answers), "--mapping", "nonsense")
    assert bad_mapping.exit_code == 2
