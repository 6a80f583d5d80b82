"""Conversations with tools as prompt text, and tool calls read back from a model's answer.

``render_chat`` passes ``tools`` to the model's chat template (the Hugging Face convention:
assistant ``tool_calls`` with ``arguments`` as a dict, ``tool`` turns). A template that ignores
tools (rendering with and without them gives the same text, as with SmolLM2's plain ChatML) gets
the Hermes/Qwen rendering instead, inside that template's own turn markers:

- the tools are listed as JSON inside ``<tools></tools>`` in the system turn;
- an assistant call is ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
- tool results become one user turn of ``<tool_response>…</tool_response>`` blocks.

``parse_tool_calls`` reads that format back (and the bare JSON-object form).

An assistant turn's ``reasoning`` goes to a template that renders reasoning as
``reasoning_content`` (or ``thinking``); any other template gets it in ``<think>`` markers before
the answer (``garden.data.reasoning``). Either way it is part of the assistant's turn.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from garden.data.reasoning import TEMPLATE_KEYS, for_template, template_keys

TOOLS_INTRO = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)

_RENDERS_TOOLS: dict[str, bool] = {}  # by chat template
_PROBE_MESSAGES = [{"role": "user", "content": "ping"}]
_PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "garden_probe_tool",
            "description": "probe",
            "parameters": {"type": "object", "properties": {}},
        },
    }
]


@dataclass(frozen=True)
class ToolCall:
    """One call a model made: the function's name and its arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def as_message_call(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def render_chat(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """The conversation as prompt text, tools included (natively, or in the Hermes format),
    reasoning as the template takes it."""
    keys = template_keys(getattr(tokenizer, "chat_template", None))
    conversation = [_with_dict_arguments(m) for m in for_template(messages, keys)]
    tool_list = [dict(t) for t in tools] if tools else None
    has_tool_turns = any(m.get("tool_calls") or m.get("role") == "tool" for m in conversation)
    if (tool_list or has_tool_turns) and not template_renders_tools(tokenizer):
        conversation = hermes_messages(conversation, tool_list)
        tool_list = None
    return str(
        tokenizer.apply_chat_template(
            conversation,
            tools=tool_list,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
    )


def template_renders_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template puts ``tools`` into the prompt."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):
        return False
    if template not in _RENDERS_TOOLS:
        try:
            plain = tokenizer.apply_chat_template(_PROBE_MESSAGES, tokenize=False)
            with_tools = tokenizer.apply_chat_template(
                _PROBE_MESSAGES, tools=_PROBE_TOOLS, tokenize=False
            )
        except Exception:
            with_tools = plain = ""
        _RENDERS_TOOLS[template] = plain != with_tools and "garden_probe_tool" in with_tools
    return _RENDERS_TOOLS[template]


def hermes_messages(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, str]]:
    """Plain role/content turns that carry the tools, calls and results in the Hermes format
    (an assistant turn's reasoning keys kept)."""
    out: list[dict[str, str]] = []
    rest = list(messages)
    system = ""
    if rest and rest[0].get("role") == "system":
        system = str(rest.pop(0).get("content") or "")
    if tools:
        listed = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
        block = TOOLS_INTRO + listed + TOOLS_OUTRO
        system = f"{system}\n\n{block}" if system else block
    if system:
        out.append({"role": "system", "content": system})
    for message in rest:
        role = message.get("role")
        content = str(message.get("content") or "")
        if role == "tool":
            response = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("tool_results") == "1":
                out[-1]["content"] += "\n" + response
            else:
                out.append({"role": "user", "content": response, "tool_results": "1"})
            continue
        calls = [_call_text(call) for call in message.get("tool_calls") or []]
        text = "\n".join(part for part in (content, *calls) if part)
        thought = {key: str(message[key]) for key in TEMPLATE_KEYS if message.get(key)}
        out.append({"role": str(role), "content": text, **thought})
    return [{key: value for key, value in m.items() if key != "tool_results"} for m in out]


def _call_text(call: Mapping[str, Any]) -> str:
    function = call.get("function", call)
    payload = {"name": function.get("name"), "arguments": function.get("arguments") or {}}
    return f"{TOOL_CALL_OPEN}\n{json.dumps(payload, ensure_ascii=False)}\n{TOOL_CALL_CLOSE}"


def _with_dict_arguments(message: Mapping[str, Any]) -> dict[str, Any]:
    """The message with every call's ``arguments`` as a dict (OpenAI sends a JSON string)."""
    out = dict(message)
    if not out.get("tool_calls"):
        return out
    calls = []
    for call in out["tool_calls"]:
        function = dict(call.get("function", call))
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            with contextlib.suppress(json.JSONDecodeError):
                function["arguments"] = json.loads(arguments) if arguments.strip() else {}
        calls.append({**call, "type": "function", "function": function})
    out["tool_calls"] = calls
    return out


def scan_tool_calls(text: str) -> tuple[list[ToolCall], list[str]]:
    """The well-formed calls in ``text`` and a reason for each call that could not be read.

    ``<tool_call>…</tool_call>`` blocks are read first (an unclosed last block too); without
    any, JSON objects with a ``name`` and ``arguments`` (or ``parameters``) in the text are.
    """
    blocks = _TOOL_CALL_BLOCK.findall(text)
    if blocks:
        calls: list[ToolCall] = []
        problems: list[str] = []
        for number, block in enumerate(blocks, start=1):
            call, problem = _call_from_json(block.strip(), f"tool call {number}")
            if call is not None:
                calls.append(call)
            if problem:
                problems.append(problem)
        return calls, problems
    return _bare_json_calls(text)


def parse_tool_calls(text: str) -> list[ToolCall]:
    """The well-formed tool calls in a model's answer (see :func:`scan_tool_calls`)."""
    return scan_tool_calls(text)[0]


def strip_tool_calls(text: str) -> str:
    """The answer's text without its ``<tool_call>`` blocks (an unfinished one included)."""
    return _TOOL_CALL_BLOCK.sub("", text).strip()


def _call_from_json(raw: str, what: str) -> tuple[ToolCall | None, str | None]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"{what} is not valid JSON ({exc.msg} at character {exc.pos})"
    return _call_from_value(value, what)


def _call_from_value(value: Any, what: str) -> tuple[ToolCall | None, str | None]:
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        value = value["function"]
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None, f"{what} has no function name"
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return None, f"{what} ({value['name']}): arguments are not valid JSON ({exc.msg})"
    if not isinstance(arguments, dict):
        return None, f"{what} ({value['name']}): arguments must be a JSON object"
    return ToolCall(name=value["name"], arguments=arguments), None


def _looks_like_call(value: Any) -> bool:
    """A ``{"name", "arguments"}`` object (or ``parameters`` that are not a JSON Schema)."""
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        value = value["function"]
    if not isinstance(value, dict) or "name" not in value:
        return False
    parameters = value.get("parameters")
    schema = isinstance(parameters, dict) and "properties" in parameters
    return "arguments" in value or (parameters is not None and not schema)


def _bare_json_calls(text: str) -> tuple[list[ToolCall], list[str]]:
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if _looks_like_call(value):
            call, _ = _call_from_value(value, "tool call")
            if call is not None:
                calls.append(call)
        position = text.find("{", end)
    if calls or "{" not in text:
        return calls, []
    return [], ["the answer has no readable tool call (no <tool_call> block or JSON call object)"]
