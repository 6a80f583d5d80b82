"""`model-garden export …` through click, against the session storage (the default model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from garden.cli import main


def run(*args: str):
    return CliRunner().invoke(main, ["export", *args])


def test_cli_errors_are_one_actionable_line(tmp_path: Path, default_model_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    cases = [
        (("no-such-model", "--format", "merged"), "Unknown model 'no-such-model'"),
        (("SmolLM2-135M-Instruct", "--format", "adapter"), "has no LoRA adapter"),
        (("SmolLM2-135M-Instruct", "--format", "merged", "--push", "a/b"), "offline mode is on"),
        (("SmolLM2-135M-Instruct", "--format", "merged", "--out", str(tmp_path)), "not an earlier"),
    ]
    for args, words in cases:
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert words in result.stderr and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"
    bad = run("SmolLM2-135M-Instruct", "--format", "onnx")
    assert bad.exit_code == 2 and "'onnx' is not one of" in bad.output


@pytest.mark.slow
def test_dry_run_writes_the_repository_folder(tmp_path: Path, default_model_path: Path) -> None:
    out = tmp_path / "repo"
    args = ("SmolLM2-135M-Instruct", "--format", "merged", "--out", str(out))
    result = run(*args, "--push", "alice/smol-merged", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["folder_abs"] == str(out.resolve()) and view["folder"] is None
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= set(view["files"])
    assert sorted(view["files"]) == sorted(p.name for p in out.iterdir())
    assert view["dry_run"] is True and view["pushed_url"] is None and view["quant"] is None
    assert not list(tmp_path.glob(".incomplete-*"))
    card = (out / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in front
    assert "library_name: transformers" in front and "- model-garden" in front
    assert "| dataset | none |" in body and "merged safetensors" in body
