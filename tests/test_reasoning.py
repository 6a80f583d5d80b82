"""Reasoning traces (issue 23): their own field of an assistant turn, read from every source
shape, rendered as the chat template takes them (inside the trained tokens), dropped on request,
and folded in the previews."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from garden.data import ReadOptions, inspect_source
from garden.errors import DatasetError

CALL = {"name": "get_weather", "arguments": {"city": "Oslo"}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>\n{% endif %}"
    "{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def ask(answer: dict[str, Any], question: str = "What is 2 + 2?") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", **answer}]}


ROWS = [
    ask({"content": "4", "reasoning_content": "Two and two."}),
    ask({"content": "5", "reasoning": "Two and three."}, "What is 2 + 3?"),
    ask({"content": [{"type": "reasoning", "text": "Three and three."}, {"type": "text", "text": "6"}]}, "3 + 3?"),
    ask({"content": [{"type": "thinking", "thinking": "Look it up."}, {"type": "tool_call", "value": json.dumps(CALL)}]}, "Oslo?")
    | {"tools": TOOLS},
    ask({"content": "<think>\nFour and four.\n</think>\n\n8"}, "4 + 4?"),
    {"instruction": "What is 5 + 5?", "output": "<think>Five <b>and</b> five.</think>10"},
    ask({"content": "No thought here."}, "Hello?"),
]  # fmt: skip
KEPT = [
    ("4", "Two and two."),
    ("5", "Two and three."),
    ("6", "Three and three."),
    ("", "Look it up."),
    ("8", "Four and four."),
    ("10", "Five <b>and</b> five."),
    ("No thought here.", None),
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def answer_of(sample: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in sample["messages"] if m["role"] == "assistant")


@pytest.fixture(scope="module")
def tokenizer(default_model_path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_path)


def test_reasoning_is_a_field_of_its_own_from_every_source(
    tmp_path: Path, isolated_settings: Any
) -> None:
    path = write_jsonl(tmp_path / "thoughts.jsonl", ROWS)
    report = inspect_source(path, settings=isolated_settings)
    assert (report.valid_rows, report.errors, report.reasoning_rows) == (7, [], 6)
    answers = [answer_of(sample) for sample in report.samples]
    assert [(a["content"], a.get("reasoning")) for a in answers] == KEPT
    assert answers[3]["tool_calls"][0]["function"] == CALL  # reasoning and a call, no text
    assert "<think>\nTwo and two.\n</think>\n\n4<|im_end|>" in report.rendered[0]

    dropped = inspect_source(path, ReadOptions(reasoning="drop"), settings=isolated_settings)
    assert (dropped.reasoning_rows, dropped.reasoning) == (6, "drop")
    assert [answer_of(s)["content"] for s in dropped.samples] == [text for text, _ in KEPT]
    assert not any("reasoning" in answer_of(s) for s in dropped.samples)
    assert not any("<think>" in text for text in dropped.rendered)

    only_thought = write_jsonl(tmp_path / "only.jsonl", [ask({"content": "<think>Hm.</think>"})])
    report = inspect_source(only_thought, ReadOptions(reasoning="drop"), settings=isolated_settings)
    assert report.valid_rows == 0 and "only reasoning" in report.errors[0].message
    with pytest.raises(DatasetError, match="Unknown reasoning option 'maybe'"):
        inspect_source(path, ReadOptions(reasoning="maybe"), settings=isolated_settings)  # type: ignore[arg-type]


def _trained_text(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[str, str]:
    from garden.engine.training.encoding import encode_chat

    encoded = encode_chat(tokenizer, messages, assistant_only=True)
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    trained = [token for token, carries in zip(ids, mask, strict=True) if carries]
    return tokenizer.decode(ids), tokenizer.decode(trained)


def test_a_template_without_thinking_gets_think_markers_inside_the_label_mask(
    tokenizer: Any,
) -> None:
    from garden.data.reasoning import template_keys

    assert template_keys(tokenizer.chat_template) == ()
    messages = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4", "reasoning": "Two and two."},
    ]
    text, trained = _trained_text(tokenizer, messages)
    assert trained.startswith("<think>\nTwo and two.\n</think>\n\n4")
    assert text.count("<think>") == 1 and "What is" not in trained
    legacy = [messages[0], {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\n4"}]
    assert _trained_text(tokenizer, legacy) == (text, trained)  # datasets saved before


def test_a_thinking_template_gets_reasoning_content_once(tokenizer: Any) -> None:
    import copy

    from garden.data.reasoning import template_keys
    from garden.data.tokens import render

    thinking = copy.copy(tokenizer)
    thinking.chat_template = THINKING_TEMPLATE
    assert template_keys(THINKING_TEMPLATE) == ("reasoning_content",)
    messages = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4", "reasoning": "Two and two."},
    ]
    text, trained = _trained_text(thinking, messages)
    assert "<|im_start|>assistant\n<think>Two and two.</think>\n4<|im_end|>" in text
    assert text.count("<think>") == 1 and trained.startswith("<think>Two and two.</think>\n4")
    legacy = [messages[0], {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\n4"}]
    assert render(thinking, {"messages": legacy}) == text
    with_tool = [
        messages[0],
        {"role": "assistant", "content": "", "reasoning": "Look.", "tool_calls": [
            {"type": "function", "function": CALL}
        ]},
        {"role": "tool", "content": "3"},
        {"role": "assistant", "content": "4"},
    ]  # fmt: skip
    rendered = render(thinking, {"messages": with_tool, "tools": TOOLS})
    assert rendered.count("<think>Look.</think>") == 1 and "<tool_call>" in rendered


def test_drop_at_import_through_the_cli_and_the_service(
    tmp_path: Path, isolated_settings: Any
) -> None:
    from click.testing import CliRunner

    from garden.cli import main
    from garden.services import datasets
    from garden.services.rest import WebReadOptions

    path = write_jsonl(tmp_path / "thoughts.jsonl", ROWS)
    inspected = CliRunner().invoke(main, ["data", "inspect", str(path), "--preview", "1"])
    assert inspected.exit_code == 0, inspected.stderr
    assert "Reasoning: 6 rows carry reasoning (kept)" in inspected.stdout
    assert "reasoning (3 words): Two and two." in inspected.stdout
    imported = CliRunner().invoke(
        main, ["data", "import", str(path), "--name", "reasoning-dropped", "--reasoning", "drop",
               "--eval-fraction", "0", "--json"],
    )  # fmt: skip
    assert imported.exit_code == 0, imported.stderr
    view = json.loads(imported.stdout)
    try:
        saved = Path(view["train_path"]).read_text()
        assert "reasoning" not in saved and "<think>" not in saved and '"content": "4"' in saved
    finally:
        CliRunner().invoke(main, ["data", "rm", view["id"]])

    request = datasets.ImportRequest(
        source=str(path), name="reasoning-kept", eval_fraction=0.0,
        options=WebReadOptions.model_validate({"reasoning": "keep"}).to_options(),
    )  # fmt: skip
    kept = datasets.import_dataset(request, settings=isolated_settings)
    rows = [json.loads(line) for line in Path(kept.train_path).read_text().splitlines()]
    assert [answer_of(row).get("reasoning") for row in rows] == [r for _, r in KEPT]
    with pytest.raises(ValueError, match="reasoning"):
        WebReadOptions.model_validate({"reasoning": "maybe"})


def test_the_preview_folds_the_reasoning(tmp_path: Path, isolated_settings: Any) -> None:
    from garden.services import datasets
    from garden.ui.data_preview import samples_markdown

    path = write_jsonl(tmp_path / "thoughts.jsonl", ROWS)
    view = datasets.inspect(path, settings=isolated_settings)
    assert view.reasoning_rows == 6 and view.previews[0].reasoning == "Two and two."
    shown = samples_markdown(view, 5, 7)
    assert (
        "<details><summary>Reasoning (3 words)</summary>"
        "<div>Five &lt;b&gt;and&lt;/b&gt; five.</div></details>\n\n```"
    ) in shown
    assert shown.count("<details>") == 1  # the last sample has no reasoning
