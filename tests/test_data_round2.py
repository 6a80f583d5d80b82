"""Data, round 2 (issue 23): content given as parts, reasoning traces, and text corpora whose
documents are one per line or longer than a training row. The files are of our own making, in
the shapes other tools write (OpenAI's content parts, LLaMA-Factory's ``value`` parts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from garden.data import ReadOptions, inspect_source

CALL = {"name": "get_weather", "arguments": {"city": "Oslo"}}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def chat(*turns: tuple[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": role, "content": content} for role, content in turns], **extra}


def test_content_parts_reasoning_and_tool_call_parts_are_read(
    tmp_path: Path, isolated_settings: Any
) -> None:
    rows = [
        chat(  # LLaMA-Factory's v1 shape: parts with "value"
            ("user", [{"type": "text", "value": "What colour is a ripe tomato?"}]),
            ("assistant", [{"type": "text", "value": "Red."}]),
        ),
        chat(  # OpenAI's shape: parts with "text", two of them
            (
                "user",
                [{"type": "text", "text": "Name a root"}, {"type": "text", "text": "vegetable."}],
            ),
            ("assistant", "A carrot."),
        ),
        chat(
            ("user", "What is 3 + 4?"),
            (
                "assistant",
                [
                    {"type": "reasoning", "value": "Three plus four."},
                    {"type": "text", "value": "7"},
                ],
            ),
        ),
        {
            "messages": [
                {"role": "user", "content": "What is 2 + 2?"},
                {"role": "assistant", "content": "4", "reasoning_content": "Two and two."},
            ]
        },
        chat(
            ("user", [{"type": "text", "text": "Weather in Oslo?"}]),
            (
                "assistant",
                [
                    {"type": "thinking", "thinking": "Look it up."},
                    {"type": "tool_call", "value": json.dumps(CALL)},
                ],
            ),
            ("tool", [{"type": "text", "text": '{"temp": 3}'}]),
            ("assistant", [{"type": "text", "text": "It is 3 °C."}]),
            tools=TOOLS,
        ),
    ]
    report = inspect_source(write_jsonl(tmp_path / "parts.jsonl", rows), settings=isolated_settings)
    assert (report.kind, report.valid_rows, report.errors) == ("chat", 5, [])
    answers = [sample["messages"][1] for sample in report.samples]
    assert [answers[0]["content"], report.samples[1]["messages"][0]["content"]] == [
        "Red.",
        "Name a root\nvegetable.",
    ]
    assert [(a["content"], a["reasoning"]) for a in answers[2:]] == [
        ("7", "Three plus four."),
        ("4", "Two and two."),
        ("", "Look it up."),
    ]
    assert answers[4]["tool_calls"][0]["function"] == CALL


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            [{"type": "hologram", "text": "?"}],
            "unknown type 'hologram' (part 1) in content in turn 2",
        ),
        ([{"type": "text", "text": "ok"}, {"type": "text"}], "a text part (part 2) with no text"),
        ([{"type": "image_url", "image_url": {"url": "x"}}], "has only images/audio"),
        ([{"type": "tool_call", "value": "{not json"}], "invalid JSON in the tool call in part 1"),
    ],
)
def test_broken_parts_are_row_errors_naming_row_turn_and_part(
    tmp_path: Path, isolated_settings: Any, content: Any, message: str
) -> None:
    rows = [
        chat(("user", "Hi"), ("assistant", content)),
        chat(("user", "Hi"), ("assistant", "Hello.")),
    ]
    report = inspect_source(write_jsonl(tmp_path / "bad.jsonl", rows), settings=isolated_settings)
    assert report.valid_rows == 1 and report.errors[0].location == "line 1"
    assert message in report.errors[0].message, report.errors[0].message


def test_a_corpus_with_one_article_per_line_is_one_document_per_line(
    tmp_path: Path, isolated_settings: Any
) -> None:
    articles = [f"Article {n}: the moonwell garden grows plant number {n}." for n in range(30)]
    lines = tmp_path / "wiki.txt"
    lines.write_text("\n".join(articles) + "\n")
    report = inspect_source(lines, settings=isolated_settings)
    assert (report.kind, report.rows, report.valid_rows) == ("text", 30, 30)
    assert report.samples[0]["text"] == articles[0]
    blocks = tmp_path / "paragraphs.txt"
    blocks.write_text("First line\nof one document.\n\nSecond document.\n")
    paragraphs = inspect_source(blocks, settings=isolated_settings)
    assert paragraphs.rows == 2
    assert paragraphs.samples[0]["text"] == "First line\nof one document."


def test_long_documents_are_split_into_chunks_and_no_token_is_lost(
    tmp_path: Path, isolated_settings: Any, default_model_path: Path
) -> None:
    from transformers import AutoTokenizer

    from garden.engine.training.encoding import encode_text, text_chunks, tokenize_rows

    tokenizer = AutoTokenizer.from_pretrained(default_model_path)
    documents = [" ".join(f"plant{n}-{k} grows by the well." for k in range(60)) for n in range(3)]
    documents.append("A short note.")
    rows = [{"text": document} for document in documents]
    examples = tokenize_rows(rows, tokenizer, max_len=64, assistant_only=False)
    in_file = sum(len(encode_text(tokenizer, d)["input_ids"]) for d in documents)
    assert sum(len(e["input_ids"]) for e in examples) == in_file, "every token is trained on"
    assert max(len(e["input_ids"]) for e in examples) == 64 and len(examples) > len(documents)
    tail = {"input_ids": list(range(129)), "assistant_masks": [1] * 129}
    assert [len(c["input_ids"]) for c in text_chunks(tail, 64)] == [64, 63, 2]

    corpus = tmp_path / "long.jsonl"
    write_jsonl(corpus, rows)
    report = inspect_source(corpus, ReadOptions(max_seq_len=64), settings=isolated_settings)
    stats = report.token_stats
    assert stats["over_max_seq_len"] == 3
    assert stats["chunks_estimate"] == len(examples)
    assert "splits it into chunks" in report.warnings[0].message


def test_loss_weights_decide_which_assistant_turns_are_trained(
    tmp_path: Path, isolated_settings: Any, default_model_path: Path
) -> None:
    from transformers import AutoTokenizer

    from garden.engine.training.encoding import encode_chat

    rows = [
        {"messages": [  # LLaMA-Factory v1: loss_weight per turn
            {"role": "user", "content": "Say one."}, {"role": "assistant", "content": "ONE-A", "loss_weight": 1.0},
            {"role": "user", "content": "Say two."}, {"role": "assistant", "content": "TWO-B", "loss_weight": 0.0},
            {"role": "user", "content": "Say three."}, {"role": "assistant", "content": "THREE-C"},
        ]},
        {"conversations": [  # ShareGPT: weight per turn
            {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello.", "weight": 0},
            {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Goodbye.", "weight": 1},
        ]},
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "loss_weight": 0.5}]},
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "loss_weight": 0}]},
    ]  # fmt: skip
    report = inspect_source(
        write_jsonl(tmp_path / "weights.jsonl", rows), settings=isolated_settings
    )
    assert report.valid_rows == 2, report.errors
    messages = [m for m in report.samples[0]["messages"] if m["role"] == "assistant"]
    assert [m.get("train", True) for m in messages] == [True, False, True]
    errors = {e.location: e.message for e in report.errors}
    assert "loss_weight 0.5; expected 0 (no loss) or 1 (loss)" in errors["line 3"]
    assert "loss_weight 0 on every assistant turn" in errors["line 4"]

    tokenizer = AutoTokenizer.from_pretrained(default_model_path)
    for assistant_only in (True, False):
        encoded = encode_chat(tokenizer, report.samples[0]["messages"], assistant_only)
        trained = tokenizer.decode(
            [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
        )
        assert "ONE-A" in trained and "THREE-C" in trained, trained
        assert "TWO-B" not in trained, "a turn of weight 0 carries no loss"
        assert ("Say two." in trained) is not assistant_only


def test_chosen_and_rejected_conversations_share_their_prompt(
    tmp_path: Path, isolated_settings: Any
) -> None:
    ask = {"role": "user", "content": "Which plant grows by the Moonwell?"}
    rows = [
        {
            "chosen_messages": [ask, {"role": "assistant", "content": "Silver fern."}],
            "rejected_messages": [ask, {"role": "assistant", "content": "Cactus."}],
        },
        {
            "chosen_messages": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"}],
            "rejected_messages": [{"role": "user", "content": "C"}, {"role": "assistant", "content": "D"}],
        },
    ]  # fmt: skip
    report = inspect_source(write_jsonl(tmp_path / "pairs.jsonl", rows), settings=isolated_settings)
    assert (report.kind, report.valid_rows) == ("preference", 1)
    pair = report.samples[0]
    assert pair["prompt"] == [ask]
    assert pair["chosen"] == [{"role": "assistant", "content": "Silver fern."}]
    assert report.errors[0].location == "line 2" and "has no prompt" in report.errors[0].message
