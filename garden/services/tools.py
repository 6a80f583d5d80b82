"""Tool schemas a chat offers a model, and the calls it makes (OpenAI / Hugging Face shapes).

A schema is ``{"type": "function", "function": {"name", "description", "parameters"}}``, where
``parameters`` is a JSON Schema object; a list of them is what ``--tools FILE.json``, the Chat
tab's Tools box and the REST ``tools`` field take.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from garden.engine.training.tool_template import ToolCall
from garden.errors import ServingError
from garden.services.base import View

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
TOOLS_HINT = (
    'Give a JSON list of {"type": "function", "function": {"name": ..., "description": ..., '
    '"parameters": {"type": "object", "properties": {...}}}} objects.'
)


class ToolFunction(View):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"{name[:40]!r} is not a function name (letters, digits, _ . -)")
        return name

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        if parameters.get("type", "object") != "object":
            raise ValueError('parameters must be a JSON Schema with "type": "object"')
        if not isinstance(parameters.get("properties", {}), dict):
            raise ValueError("parameters.properties must be an object")
        return parameters


class ToolSchema(View):
    """One tool a model may call."""

    type: Literal["function"] = "function"
    function: ToolFunction


class ToolCallView(View):
    """One call the model made: the tool's name and its arguments."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, call: ToolCall) -> ToolCallView:
        return cls(name=call.name, arguments=call.arguments)

    def title(self) -> str:
        """ "🔧 get_weather(city='Paris')"."""
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.arguments.items())
        return f"🔧 {self.name}({arguments})"

    def as_text(self) -> str:
        """The call as the model writes it (Hermes format), for the next turn's prompt."""
        payload = json.dumps({"name": self.name, "arguments": self.arguments}, ensure_ascii=False)
        return f"<tool_call>\n{payload}\n</tool_call>"


SAMPLE_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city's name."}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "convert_units",
            "description": "Convert a value from one unit to another.",
            "parameters": {
                "type": "object",
                "properties": {
                    "value": {"type": "number"},
                    "from_unit": {"type": "string"},
                    "to_unit": {"type": "string"},
                },
                "required": ["value", "from_unit", "to_unit"],
            },
        },
    },
]


def sample_tools_json() -> str:
    """Two example tool schemas, as the Tools box shows them."""
    return json.dumps(SAMPLE_TOOLS, indent=2)


def parse_tools(text: str, source: str = "the tool schemas") -> list[ToolSchema]:
    """Tool schemas from JSON text (a list, one schema, or ``{"tools": [...]}``); empty text
    gives none. Raises ``ServingError`` with one line saying what is wrong."""
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ServingError(
            f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).",
            hint=TOOLS_HINT,
        ) from None
    if isinstance(value, dict):
        value = value.get("tools", [value])
    if not isinstance(value, list):
        raise ServingError(f"{source} must hold a JSON list of tools.", hint=TOOLS_HINT)
    tools = []
    for number, item in enumerate(value, start=1):
        if isinstance(item, dict) and "function" not in item and "name" in item:
            item = {"type": "function", "function": item}
        try:
            tools.append(ToolSchema.model_validate(item))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "the tool"
            reason = str(error["msg"]).removeprefix("Value error, ")
            raise ServingError(
                f"Tool {number} of {source}: {where}: {reason}.", hint=TOOLS_HINT
            ) from None
    names = [tool.function.name for tool in tools]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ServingError(
            f"{source} names the tool {', '.join(twice)} more than once.", hint=TOOLS_HINT
        )
    return tools


def read_tools(path: Path) -> list[ToolSchema]:
    """Tool schemas from a JSON file (``--tools FILE.json``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServingError(
            f"Cannot read the tools file {path}: {exc}.", hint="Pass a UTF-8 JSON file."
        ) from None
    tools = parse_tools(text, path.name)
    if not tools:
        raise ServingError(f"The tools file {path} is empty.", hint=TOOLS_HINT)
    return tools


def undeclared_calls(calls: list[ToolCallView], tools: list[ToolSchema]) -> list[str]:
    """A problem line for each call to a tool that was not offered."""
    offered = {tool.function.name for tool in tools}
    return [
        f"the model called {call.name}, which is not one of the offered tools"
        for call in calls
        if call.name not in offered
    ]
