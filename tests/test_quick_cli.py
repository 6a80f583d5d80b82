"""A quick CLI: commands that need no model import no torch, and the light tokenizer they use
(``tokenizers`` + Jinja2) renders and counts exactly as transformers does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest

from garden.config import get_settings
from garden.data.inspection import inspect_source
from garden.data.light_tokenizer import LightTokenizer
from garden.data.tokens import count_tokens, get_tokenizer, render, render_messages

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "datasets"
SOURCES = (
    "chat_sample.jsonl",
    "alpaca_sample.jsonl",
    "garden_tools.jsonl",
    "garden_tools_sharegpt.jsonl",
    "garden_prefs.jsonl",
    "garden_feedback.jsonl",
)
ROWS_PER_SOURCE = 4


def transformers_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def samples(tmp_path: Path) -> list[dict[str, Any]]:
    """A handful of processed rows of every kind: chat, tools, pairs, labelled, plain text."""
    text = tmp_path / "notes.txt"
    text.write_text(
        "Plain text rows train as they are.\n\nÜmlauts, emoji 🌱 and  double  spaces.\n\n"
        "<|im_start|> is a special token even in plain text.\n",
        encoding="utf-8",
    )
    found: list[dict[str, Any]] = []
    for source in [*(ASSETS / name for name in SOURCES), text]:
        found += inspect_source(source, rendered_samples=0).samples[:ROWS_PER_SOURCE]
    return found


def test_the_default_model_counts_with_the_light_tokenizer(default_model_path: Path) -> None:
    assert isinstance(get_tokenizer(None, get_settings()), LightTokenizer)


def test_light_and_transformers_render_and_count_alike(
    default_model_path: Path, tmp_path: Path
) -> None:
    light = LightTokenizer(default_model_path)
    heavy = transformers_tokenizer(default_model_path)
    rows = samples(tmp_path)
    kinds = {("tools" if row.get("tools") else next(iter(row))) for row in rows}
    assert {"messages", "tools", "prompt", "text"} <= kinds, kinds
    for row in rows:
        assert render(light, row) == render(heavy, row), row
    assert count_tokens(light, rows) == count_tokens(heavy, rows)
    chats = [row["messages"] for row in rows if "messages" in row]
    for turns in chats:
        prompt = render_messages(light, turns[:1], add_generation_prompt=True)
        assert prompt == render_messages(heavy, turns[:1], add_generation_prompt=True)
        assert light(prompt)["input_ids"] == heavy(prompt)["input_ids"]


# A template that uses what transformers' environment offers: trim_blocks/lstrip_blocks, loop
# controls, tojson keeping non-ASCII, special tokens, tools, strftime_now and raise_exception.
RICH_TEMPLATE = """
{%- if messages[0].role == 'system' %}{% set system = messages[0].content %}{% endif %}
{{ bos_token }}system
Today is {{ strftime_now('%Y') | length }} digits. {{ system | default('Be kind.') }}
{% if tools %}
  {% for tool in tools %}
    {{ tool | tojson }}
  {% endfor %}
{% endif %}
{% for message in messages %}
  {% if message.role == 'system' %}{% continue %}{% endif %}
  {% if message.role not in ['user', 'assistant', 'tool'] %}
    {{ raise_exception('Unknown role: ' + message.role) }}
  {% endif %}
{{ bos_token }}{{ message.role }}
{{ message.content }}
  {% for call in message.tool_calls or [] %}
<call>{{ call.function | tojson(indent=1) }}</call>
  {% endfor %}
{{ eos_token }}
{% endfor %}
{% if add_generation_prompt %}{{ bos_token }}assistant
{% endif %}"""


def test_a_rich_template_renders_alike(default_model_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "rich"
    folder.mkdir()
    shutil.copy(default_model_path / "tokenizer.json", folder)
    config = json.loads((default_model_path / "tokenizer_config.json").read_text())
    config.update({"chat_template": RICH_TEMPLATE, "eos_token": "<|im_end|>"})
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    light, heavy = LightTokenizer(folder), transformers_tokenizer(folder)
    assert light.special_tokens_map == heavy.special_tokens_map

    tools = [{"type": "function", "function": {"name": "météo", "parameters": {}}}]
    turns: list[dict[str, Any]] = [
        {"role": "system", "content": "Réponds en français."},
        {"role": "user", "content": "Quel temps à Besançon ?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "météo", "arguments": {"ville": "Besançon"}}}
        ]},
        {"role": "tool", "content": "☀ 21 °C"},
    ]  # fmt: skip
    for kwargs in ({}, {"tools": tools}, {"add_generation_prompt": True}):
        text = light.apply_chat_template(turns, tokenize=False, **kwargs)
        assert text == heavy.apply_chat_template(turns, tokenize=False, **kwargs)
        assert "météo" in text and "Besançon" in text
    with pytest.raises(jinja2.TemplateError, match="Unknown role: narrator"):
        light.apply_chat_template([{"role": "narrator", "content": "Once"}])
    with pytest.raises(jinja2.TemplateError, match="Unknown role: narrator"):
        heavy.apply_chat_template([{"role": "narrator", "content": "Once"}], tokenize=False)


# Run in a fresh interpreter, so that what other tests imported cannot hide an import of torch.
NO_TORCH = """
import json, sys
from click.testing import CliRunner
from garden.cli import main

commands = json.loads(sys.argv[1])
codes = [CliRunner().invoke(main, args).exit_code for args in commands]
heavy = sorted(name for name in ("torch", "transformers", "vllm") if name in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_commands_that_need_no_model_import_no_torch(
    default_model_path: Path, tmp_path: Path
) -> None:
    one_row = tmp_path / "one.jsonl"
    row = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    }
    one_row.write_text(json.dumps(row) + "\n", encoding="utf-8")
    commands = [
        ["--help"],
        ["--version"],
        ["data", "inspect", str(one_row)],
        ["data", "inspect", str(ASSETS / "garden_tools.jsonl"), "--json"],
        ["data", "import", str(one_row), "--name", "quick-cli-one-row", "--eval-fraction", "0"],
        ["data", "list"],
        ["jobs", "list"],
        ["jobs", "show", "no-such-job"],
        ["models", "list"],
        ["carbon", "report"],
        ["carbon", "--help"],
    ]
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, json.dumps(commands)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = [0] * len(commands)
    expected[commands.index(["jobs", "show", "no-such-job"])] = 2  # a one-line error, no trace
    assert result["codes"] == expected
    assert result["heavy"] == []


def test_template_files_and_named_templates_are_found_as_transformers_finds_them(
    default_model_path: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "named"
    folder.mkdir()
    shutil.copy(default_model_path / "tokenizer.json", folder)
    config = json.loads((default_model_path / "tokenizer_config.json").read_text())
    config["chat_template"] = [
        {"name": "default", "template": "plain:{% for m in messages %}{{ m.content }}{% endfor %}"},
        {"name": "tool_use", "template": "tools:{{ tools | length }}"},
    ]
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    turns = [{"role": "user", "content": "Hi"}]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]

    def both(**kwargs: Any) -> list[str]:
        light, heavy = LightTokenizer(folder), transformers_tokenizer(folder)
        return [
            light.apply_chat_template(turns, tokenize=False, **kwargs),
            heavy.apply_chat_template(turns, tokenize=False, **kwargs),
        ]

    assert both() == ["plain:Hi"] * 2
    assert both(tools=tools) == ["tools:1"] * 2
    (folder / "chat_template.jinja").write_text("file:{{ messages | length }}", encoding="utf-8")
    assert both(tools=tools) == ["file:1"] * 2  # a template file replaces the config's templates
