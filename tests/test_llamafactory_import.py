"""`model-garden data import --from-llamafactory`: a LLaMA-Factory registry moved over in one
command, its columns and tags applied, each entry reported; bad input gets one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from garden.cli import main
from garden.config import Settings, get_settings
from garden.data.llamafactory import Entry, RowConverter
from garden.data.row_errors import RowError

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALL = {"name": "get_weather", "arguments": {"city": "Oslo"}}
QA = [
    {
        "question": "Name the well",
        "context": "in Moonwell Garden",
        "answer": "The Moonwell.",
        "sys": "Be brief.",
        "past": [["Hi", "Hello."], ["Where am I?", "In the garden."]],
    },
    {"question": "What grows by the well?", "context": "", "answer": "Silver ferns.", "past": []},
]
CHATS = [
    {
        "turns": [
            {"who": "sys", "say": "You check the weather."},
            {"who": "q", "say": "Weather in Oslo?"},
            {"who": "call", "say": json.dumps(CALL)},
            {"who": "obs", "say": '{"temp": 3}'},
            {"who": "a", "say": "It is 3 degrees."},
        ],
        "functions": json.dumps(TOOLS),
    },
    {"turns": [{"who": "q", "say": "Hi"}, {"who": "a", "say": "Hello!"}], "sys": "Be kind."},
]
PAIRS = [
    {"instruction": "Colour of the ferns?", "input": "", "chosen": "Silver.", "rejected": "Green."},
    {"instruction": "Depth of the well", "input": "in metres", "chosen": "9 m.", "rejected": "?"},
]
REGISTRY: dict[str, Any] = {
    "qa_alpaca": {
        "file_name": "qa.json",
        "columns": {
            "prompt": "question",
            "query": "context",
            "response": "answer",
            "system": "sys",
            "history": "past",
        },
    },
    "tool chat": {
        "file_name": "chat.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "turns", "system": "sys", "tools": "functions"},
        "tags": {
            "role_tag": "who",
            "content_tag": "say",
            "user_tag": "q",
            "assistant_tag": "a",
            "observation_tag": "obs",
            "function_tag": "call",
            "system_tag": "sys",
        },
    },
    "prefs": {"file_name": "prefs.jsonl", "ranking": True},
    "alpaca_en": {"hf_hub_url": "llamafactory/alpaca_en"},
    "gone": {"file_name": "gone.json"},
}


def write_registry(folder: Path, registry: dict[str, Any] = REGISTRY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qa.json").write_text(json.dumps(QA), encoding="utf-8")
    for name, rows in (("chat.jsonl", CHATS), ("prefs.jsonl", PAIRS)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = folder / "dataset_info.json"
    path.write_text(json.dumps(registry), encoding="utf-8")
    return path


@pytest.fixture
def storage(isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The isolated storage as the process's settings (what the CLI reads)."""
    monkeypatch.setenv("STORAGE_ROOT", str(isolated_settings.storage_root))
    monkeypatch.setenv("MODELS_DIR", str(isolated_settings.models_dir))
    get_settings.cache_clear()
    yield isolated_settings
    monkeypatch.undo()
    get_settings.cache_clear()


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["data", "import", *args])


def saved_rows(settings: Settings, dataset_id: str) -> list[dict[str, Any]]:
    folder = settings.processed_datasets_path / dataset_id
    lines = (folder / "train.jsonl").read_text(encoding="utf-8").splitlines()
    lines += (folder / "eval.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in pairs]


# In a fresh interpreter, so that what other tests imported cannot hide an import of torch.
NO_TORCH = """
import json, sys
from click.testing import CliRunner
from garden.cli import main

result = CliRunner().invoke(main, json.loads(sys.argv[1]))
heavy = sorted(name for name in ("torch", "transformers", "vllm") if name in sys.modules)
print(json.dumps({"code": result.exit_code, "out": result.stdout, "heavy": heavy}))
"""


def test_a_registry_moves_over_in_one_command(tmp_path: Path, storage: Settings) -> None:
    registry = write_registry(tmp_path / "lf")
    args = ["data", "import", "--from-llamafactory", str(registry), "--eval-fraction", "0"]
    env = {"STORAGE_ROOT": str(storage.storage_root), "MODELS_DIR": str(storage.models_dir)}
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, json.dumps([*args, "--json"])],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert (answer["code"], answer["heavy"]) == (0, [])
    results = {r["entry"]: r for r in json.loads(answer["out"])}
    assert {k: (r["status"], r["kind"], r["rows"]) for k, r in results.items()} == {
        "qa_alpaca": ("imported", "chat", 2),
        "tool chat": ("imported", "chat", 2),
        "prefs": ("imported", "preference", 2),
        "alpaca_en": ("skipped", None, 0),
        "gone": ("skipped", None, 0),
    }
    assert "hf_hub_url llamafactory/alpaca_en" in results["alpaca_en"]["reason"]
    assert "gone.json is not in" in results["gone"]["reason"]

    qa = saved_rows(storage, results["qa_alpaca"]["dataset_id"])
    assert qa[0]["messages"] == turns(
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "Where am I?"),
        ("assistant", "In the garden."),
        ("user", "Name the well\nin Moonwell Garden"),  # the query after a newline
        ("assistant", "The Moonwell."),
    )
    assert qa[1]["messages"] == turns(
        ("user", "What grows by the well?"), ("assistant", "Silver ferns.")
    )

    chat = saved_rows(storage, results["tool chat"]["dataset_id"])
    system, user, call, result, answer_turn = chat[0]["messages"]
    assert [system, user] == turns(
        ("system", "You check the weather."), ("user", "Weather in Oslo?")
    )
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"] == CALL
    assert (result["role"], result["content"], result["name"]) == (
        "tool",
        '{"temp": 3}',
        CALL["name"],
    )
    assert answer_turn == {"role": "assistant", "content": "It is 3 degrees."}
    assert chat[0]["tools"][0]["function"]["name"] == "get_weather"
    assert chat[1]["messages"] == turns(
        ("system", "Be kind."), ("user", "Hi"), ("assistant", "Hello!")
    )

    pairs = saved_rows(storage, results["prefs"]["dataset_id"])
    assert pairs[1] == {
        "prompt": turns(("user", "Depth of the well\nin metres")),
        "chosen": turns(("assistant", "9 m.")),
        "rejected": turns(("assistant", "?")),
    }

    again = run("--from-llamafactory", str(registry), "prefs", "--name-prefix", "lf-")
    assert again.exit_code == 0, again.stderr
    assert "lf-prefs" in again.stdout and "imported" in again.stdout
    taken = run("--from-llamafactory", str(registry), "prefs")
    assert taken.exit_code == 2 and "already exists" in taken.stderr


def test_bad_input_gets_one_line_each(tmp_path: Path, storage: Settings) -> None:
    registry = write_registry(tmp_path / "lf")
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": {"file_name": "a.json"},}', encoding="utf-8")
    for args, message in (
        ([str(tmp_path / "nowhere.json")], "nowhere.json does not exist"),
        ([str(broken)], "broken.json is not valid JSON"),
        ([str(registry), "qa_alpacca"], "has no entry 'qa_alpacca'. Close names: qa_alpaca"),
        ([str(registry), "gone"], "gone failed: gone.json is not in"),
        ([str(registry), "alpaca_en"], "alpaca_en failed: a Hugging Face hub dataset"),
    ):
        result = run("--from-llamafactory", *args)
        errors = [line for line in result.stderr.splitlines() if not line[:4].strip("% ").isdigit()]
        assert result.exit_code == 2 and len(errors) == 1, (args, result.stderr)
        assert errors[0].startswith("Error: ") and message in errors[0], errors
    mixed = run("--from-llamafactory", str(registry), "--name", "x")
    assert mixed.exit_code == 2 and "--name-prefix" in mixed.stderr

    bad = {
        "odd": {"file_name": "qa.json", "formatting": "openai"},
        "bad_history": {
            "file_name": "qa.json",
            "columns": {"prompt": "question", "response": "answer", "history": "question"},
        },
    }
    odd = write_registry(tmp_path / "odd", bad)
    result = run("--from-llamafactory", str(odd), "--json")
    assert result.exit_code == 2
    reasons = {r["entry"]: r["reason"] for r in json.loads(result.stdout)}
    assert "formatting 'openai' is not supported" in reasons["odd"]
    assert reasons["bad_history"].startswith(
        "qa.json row 1: has a history that is not a list of [instruction, answer] pairs"
    )


def test_rows_are_read_as_llamafactory_reads_them() -> None:
    pairs = RowConverter(Entry("p", formatting="sharegpt", ranking=True))
    row = {
        "conversations": [{"from": "human", "value": "Hi"}],
        "chosen": {"from": "gpt", "value": "Hello."},
        "rejected": {"from": "gpt", "value": "Go away."},
    }
    assert pairs(row) == {
        "prompt": turns(("user", "Hi")),
        "chosen": turns(("assistant", "Hello.")),
        "rejected": turns(("assistant", "Go away.")),
    }
    kto = RowConverter(Entry("k", columns={"kto_tag": "tag"}))
    assert kto({"instruction": "Hi", "output": "Hey.", "tag": False}) == {
        "messages": turns(("user", "Hi"), ("assistant", "Hey.")),
        "label": False,
    }
    assert kto.kind == "feedback"
    text = RowConverter(Entry("t", columns={"prompt": "text"}))
    assert text({"text": "A document."}) == {"text": "A document."} and text.kind == "text"
    with pytest.raises(RowError, match="turn 1 has the from 'bot', which no tag names"):
        RowConverter(Entry("s", formatting="sharegpt"))({"conversations": [{"from": "bot"}]})
