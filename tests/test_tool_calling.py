"""Tool calling end to end: tools in the prompt, loss on calls, a tuned model that calls, the
chat service's typed calls, the CLI's --tools and the Chat tab's Tools box."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_training_engine as training
from conftest import ROOT, RunningApp

from garden.engine.training.encoding import encode_chat
from garden.engine.training.tool_template import (
    parse_tool_calls,
    render_chat,
    scan_tool_calls,
    template_renders_tools,
)
from garden.errors import ServingError
from garden.services.tools import SAMPLE_TOOLS, ToolCallView, parse_tools, undeclared_calls

TOOLS = SAMPLE_TOOLS
settings, manager = training.settings, training.manager  # module-scoped fixtures, shared
CITIES = {
    "Paris": "18 C, sunny",
    "Berlin": "12 C, cloudy",
    "Tokyo": "22 C, clear",
    "Madrid": "25 C, sunny",
    "Oslo": "4 C, snow",
    "Rome": "20 C, windy",
    "Lima": "17 C, fog",
    "Cairo": "31 C, dry",
    "Dublin": "10 C, rain",
    "Quebec": "-2 C, snow",
    "Nairobi": "24 C, mild",
    "Seoul": "15 C, hazy",
}
CONVERSIONS = [
    line.split()
    for line in """
    5 km miles 3.11
    10 kg pounds 22.05
    100 fahrenheit celsius 37.78
    3 feet meters 0.91
    2 liters gallons 0.53
    7 miles km 11.27
    50 pounds kg 22.68
    12 inches cm 30.48
    30 celsius fahrenheit 86
    8 meters feet 26.25
    4 gallons liters 15.14
    1 mile meters 1609.34
    """.strip().splitlines()
]


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def tool_row(question: str, name: str, arguments: dict[str, Any], result: str, reply: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": [call(name, **arguments)]},
            {"role": "tool", "name": name, "content": result},
            {"role": "assistant", "content": reply},
        ],
        "tools": TOOLS,
    }


def tool_rows() -> list[dict]:
    """24 processed chat rows: a question, a tool call, the tool's result and the answer."""
    rows = [
        tool_row(
            f"What is the weather in {city}?",
            "get_weather",
            {"city": city},
            result,
            f"In {city} it is {result}.",
        )
        for city, result in CITIES.items()
    ]
    rows += [
        tool_row(
            f"Convert {value} {source} to {target}.",
            "convert_units",
            {"value": float(value), "from_unit": source, "to_unit": target},
            result,
            f"{value} {source} is {result} {target}.",
        )
        for value, source, target, result in CONVERSIONS
    ]
    return rows


@pytest.fixture(scope="module")
def tokenizer(default_model_path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_path)


def test_default_template_gets_the_hermes_rendering_with_tools_and_calls(tokenizer: Any) -> None:
    assert not template_renders_tools(tokenizer)  # SmolLM2's plain ChatML ignores tools
    row = tool_rows()[0]
    text = render_chat(tokenizer, row["messages"], row["tools"])
    system, user, assistant, result, answer = text.split("<|im_start|>")[1:]
    assert system.startswith("system\n") and "<tools>" in system and "convert_units" in system
    assert json.dumps(TOOLS[0]) in system
    assert user.startswith("user\nWhat is the weather in Paris?")
    assert assistant.startswith("assistant\n<tool_call>")
    assert [(c.name, c.arguments) for c in parse_tool_calls(assistant)] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert result.startswith("user\n<tool_response>\n18 C, sunny\n</tool_response>")
    assert answer.startswith("assistant\nIn Paris it is 18 C, sunny.")
    prompt = render_chat(tokenizer, row["messages"][:1], row["tools"], add_generation_prompt=True)
    assert text.startswith(prompt) and prompt.endswith("<|im_start|>assistant\n")
    assert render_chat(tokenizer, row["messages"], row["tools"]) == text  # deterministic


def test_a_template_that_knows_tools_renders_them_natively(tokenizer: Any) -> None:
    native = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    native.chat_template = (
        "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}|{% endif %}"
        "{% for m in messages %}{{ m.role }}:"
        "{% if m.tool_calls %}{% for c in m.tool_calls %}CALL {{ c.function.name }}"
        "{{ c.function.arguments | tojson }}{% endfor %}{% else %}{{ m.content }}{% endif %}|"
        "{% endfor %}"
    )
    assert template_renders_tools(native)
    row = tool_rows()[0]
    text = render_chat(native, row["messages"], row["tools"])
    assert text.startswith("TOOLS:get_weather;convert_units;|user:What is the weather")
    assert 'assistant:CALL get_weather{"city": "Paris"}' in text and "<tool_call>" not in text


def test_parse_tool_calls_reads_blocks_and_json_objects_and_explains_bad_ones() -> None:
    text = (
        'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    )
    assert [(c.name, c.arguments) for c in parse_tool_calls(text)] == [
        ("get_weather", {"city": "Oslo"})
    ]
    unclosed = '<tool_call>{"name": "convert_units", "arguments": "{\\"value\\": 2}"}'
    assert parse_tool_calls(unclosed)[0].arguments == {"value": 2}
    bare = 'I will call {"name": "get_weather", "parameters": {"city": "Rome"}} now'
    assert parse_tool_calls(bare)[0].arguments == {"city": "Rome"}
    calls, problems = scan_tool_calls('<tool_call>{"name": "get_weather", "arguments": {city}}')
    assert calls == [] and "not valid JSON" in problems[0]
    calls, problems = scan_tool_calls('<tool_call>{"name": "x", "arguments": [1]}</tool_call>')
    assert calls == [] and "must be a JSON object" in problems[0]
    assert scan_tool_calls("Just an answer.") == ([], [])
    made = [ToolCallView(name="launch_rocket", arguments={})]
    assert (
        "not one of the offered tools" in undeclared_calls(made, parse_tools(json.dumps(TOOLS)))[0]
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[{", "not valid JSON"),
        ('[{"type": "function", "function": {"name": "two words"}}]', "not a function name"),
        ('[{"function": {"name": "f", "parameters": {"type": "string"}}}]', '"type": "object"'),
        ('"get_weather"', "must hold a JSON list"),
        (json.dumps(TOOLS + TOOLS[:1]), "more than once"),
    ],
)
def test_bad_tool_schemas_are_one_line_errors(text: str, words: str) -> None:
    with pytest.raises(ServingError) as caught:
        parse_tools(text, "tools.json")
    message = str(caught.value)
    assert words in message and "tools.json" in message and "\n" not in message


def test_chat_requests_take_tools_on_every_route_but_a_remote_endpoint() -> None:
    from garden.services.chat import ChatRequest
    from garden.services.rest import WebChatRequest

    body = {"messages": [{"role": "user", "content": "Weather in Oslo?"}], "tools": TOOLS}
    request = WebChatRequest.model_validate(body)
    assert request.tool_dicts() == TOOLS
    assert ChatRequest.model_validate({**body, "tools": None}).tool_dicts() is None
    remote = {"base_url": "http://127.0.0.1:9/v1"}
    with pytest.raises(ServingError, match="not to a remote endpoint"):
        ChatRequest.model_validate({**body, "model": "m", "endpoint": remote})


def test_loss_mask_covers_the_calls_and_answers_not_the_tools_or_results(tokenizer: Any) -> None:
    row = tool_rows()[1]
    encoded = encode_chat(tokenizer, row["messages"], True, row["tools"])
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    learned = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    ignored = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Berlin"}}' in learned
    assert "In Berlin it is 12 C, cloudy." in learned
    assert "<tools>" in ignored and "<tool_response>" in ignored and "12 C, cloudy\n" in ignored
    assert "<tools>" not in learned and "<tool_response>" not in learned


# A real short SFT run, the tuned model through the chat service -----------------------------


@pytest.fixture(scope="module")
def tuned(settings: Any, manager: Any) -> Iterator[str]:
    """A LoRA run on the tool rows; yields its name, with its chat engine unloaded after."""
    from garden.services import chat

    data = settings.storage_root / "tool-rows"
    data.mkdir()
    lines = (json.dumps(row) + "\n" for row in tool_rows())
    (data / "train.jsonl").write_text("".join(lines), encoding="utf-8")
    spec = {
        "name": "tools-run",
        "dataset": str(data),
        "max_steps": 5,
        "learning_rate": 5e-3,
        "batch_size": 4,
        "max_seq_len": 512,
        "packing": True,
        "lora_r": 16,
        "lora_alpha": 32,
        "warmup_ratio": 0.0,
    }
    job = manager.wait(manager.submit(spec), timeout=900)
    assert job.status == "completed", (job.error, manager.logs(job.id)[-5:])
    yield "tools-run"
    chat.shutdown()


@pytest.mark.slow
def test_tuned_model_calls_a_seen_tool_through_the_chat_service(settings: Any, tuned: str) -> None:
    from garden.services import chat
    from garden.services.chat import ChatMessage, ChatRequest, GenerationSettings

    request = ChatRequest(
        model=tuned,
        backend="transformers",
        messages=[ChatMessage(role="user", content="What is the weather in Paris?")],
        generation=GenerationSettings(temperature=0, max_new_tokens=40),
        tools=parse_tools(json.dumps(TOOLS)),
    )
    reply = chat.answer(request, settings=settings)
    assert [c.name for c in reply.tool_calls] == ["get_weather"], (reply, reply.tool_problems)
    assert isinstance(reply.tool_calls[0].arguments, dict) and reply.tool_problems == []
    assert "<tool_call>" not in reply.text
    streamed = list(chat.stream_answer(request, settings=settings))
    assert streamed[-1].done and streamed[-1].tool_calls == reply.tool_calls
    assert all("<tool_call>" not in step.text for step in streamed)


@pytest.mark.slow
def test_cli_chat_refuses_a_bad_tools_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "tools.json"
    bad.write_text('[{"type": "function", "function": {"name": "get weather"}}]')
    done = subprocess.run(
        [str(Path(sys.executable).parent / "model-garden"), "chat", "--tools", str(bad), "hi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    error = done.stderr.strip()
    assert error.startswith("Error: Tool 1 of tools.json: function.name") and "\n" not in error


# The Chat tab ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_chat_tab_takes_tool_schemas_and_answers(app: RunningApp, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(app.url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Chat", exact=True).click(timeout=60_000)
        page.locator("#chat-backend").get_by_text("transformers", exact=True).click()
        page.locator("#chat-tools-panel").get_by_text("Tools", exact=True).first.click()
        page.locator("#chat-tools-sample").click()
        check = page.locator("#chat-tools-check")
        page.wait_for_function(
            "() => (document.querySelector('#chat-tools-check')?.innerText || '')"
            ".includes('2 tools')",
            timeout=60_000,
        )
        assert "get_weather, convert_units" in check.inner_text()
        box = page.locator("#chat-input textarea")
        box.fill("What is the weather in Paris?")
        box.press("Enter")
        stats = page.locator("#chat-stats-a")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(
            word in stats.inner_text() for word in ("generating", "tok/s", "❌")
        ):
            time.sleep(0.1)
        assert any(w in stats.inner_text() for w in ("generating", "tok/s")), (
            stats.inner_text(),
            app.log_tail(),
        )
        page.locator("#chat-stop").click()  # the UI path is checked; the answer may stop here

        editor = page.locator("#chat-tools .cm-content")
        editor.click()
        page.keyboard.press("ControlOrMeta+a")
        page.keyboard.type("nope")
        page.wait_for_function(
            "() => (document.querySelector('#chat-tools-check')?.innerText || '')"
            ".includes('not valid JSON')",
            timeout=60_000,
        )
        errors = [line for line in check.inner_text().splitlines() if "❌" in line]
        assert len(errors) == 1 and "the Tools box is not valid JSON" in errors[0]
    finally:
        page.close()
