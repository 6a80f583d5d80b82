"""`model-garden chat` as a person runs it: one prompt with --json, the REPL, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "model-garden"), "chat", *args],
        cwd=ROOT,
        env=os.environ.copy(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )


def ask_greedy(*args: str, max_tokens: int, stdin: str | None = None):
    """The transformers backend, greedy: the same answer on every run."""
    options = ["--backend", "transformers", "--temperature", "0", "--max-tokens", str(max_tokens)]
    return run_cli(*options, *args, stdin=stdin)


@pytest.mark.slow
def test_chat_prompt_json(default_model_path: Path) -> None:
    out = ask_greedy("--json", "What is the capital of France?", max_tokens=16)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    keys = "text backend model tokens ttft_s tokens_per_second energy_kwh"
    assert set(data) == set(keys.split())
    assert "Paris" in data["text"]
    assert data["backend"] == "transformers" and data["model"] == "SmolLM2-135M-Instruct"
    assert data["tokens"] > 0 and data["tokens_per_second"] > 0


@pytest.mark.slow
def test_chat_repl_keeps_the_conversation(default_model_path: Path) -> None:
    out = ask_greedy(max_tokens=12, stdin="What is the capital of France?\n/reset\n/exit\n")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Paris" in out.stdout
    assert "Conversation cleared" in out.stderr


def test_chat_bad_input_is_a_clear_error_with_exit_code_2() -> None:
    unknown = run_cli("--model", "no-such-model", "Hello")
    assert unknown.returncode == 2
    assert "Unknown model" in unknown.stderr and "models list" in unknown.stderr
    empty = run_cli("   ")
    assert empty.returncode == 2 and "empty" in empty.stderr
    bad = run_cli("--top-p", "0", "Hello")
    assert bad.returncode == 2 and "top-p" in bad.stderr
