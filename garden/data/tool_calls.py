"""Tool calling in rows: the ``tools`` a row declares and the calls its assistant turns make.

Calls arrive in OpenAI form (``tool_calls`` on an assistant turn, arguments often a JSON
string) or ShareGPT form (a ``function_call`` turn whose value is the JSON call); both become
``{"type": "function", "function": {"name": str, "arguments": dict}}`` as in ``kinds.py``.
"""

from __future__ import annotations

import json
from typing import Any

from garden.data.row_errors import RowError


def parse_json(value: Any, what: str) -> Any:
    """``value``, or the JSON it holds when it is a string."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = (
            f" ({exc.msg} at column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        )
        raise RowError(f"has invalid JSON in {what}{detail}") from exc


def parse_tools(value: Any) -> list[dict[str, Any]] | None:
    """The row's tool schemas as ``{"type": "function", "function": {...}}``, or None."""
    if value in (None, "", []):
        return None
    tools = parse_json(value, "'tools'")
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list):
        raise RowError("has 'tools' that is not a list of tool schemas")
    parsed = []
    for number, tool in enumerate(tools, 1):
        function = tool.get("function") if isinstance(tool, dict) else None
        schema = function if isinstance(function, dict) else tool
        name = schema.get("name") if isinstance(schema, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise RowError(f"has a tool with no name (tool {number} in 'tools')")
        parsed.append(
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": str(schema.get("description") or ""),
                    "parameters": schema.get("parameters") or {"type": "object", "properties": {}},
                },
            }
        )
    return parsed


def parse_calls(value: Any, where: str, declared: set[str] | None) -> list[dict[str, Any]]:
    """The calls in an assistant turn's ``tool_calls`` (or a ShareGPT call turn's value)."""
    calls = parse_json(value, f"the tool call of {where}")
    if isinstance(calls, dict):
        calls = [calls]
    if not isinstance(calls, list) or not calls:
        raise RowError(f"{where} has a tool call that is not a JSON object with a name")
    return [_parse_call(call, where, declared) for call in calls]


def _parse_call(value: Any, where: str, declared: set[str] | None) -> dict[str, Any]:
    function = value.get("function") if isinstance(value, dict) else None
    call = function if isinstance(function, dict) else value
    name = call.get("name") if isinstance(call, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise RowError(f"{where} has a tool call with no function name")
    if declared is not None and name not in declared:
        listed = ", ".join(sorted(declared))
        raise RowError(
            f"{where} calls the tool {name!r}, which the row's 'tools' do not declare "
            f"(declared: {listed}); add its schema to 'tools' or fix the name"
        )
    arguments = call.get("arguments", call.get("parameters"))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (json.JSONDecodeError, RecursionError) as exc:
            detail = (
                f" ({exc.msg} at column {exc.colno})"
                if isinstance(exc, json.JSONDecodeError)
                else ""
            )
            raise RowError(
                f"{where} calls {name!r} with arguments that are not valid JSON{detail}"
            ) from exc
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise RowError(f"{where} calls {name!r} with arguments that are not a JSON object")
    parsed: dict[str, Any] = {
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    if isinstance(value, dict) and value.get("id"):
        parsed["id"] = str(value["id"])
    return parsed


def result_name(turn: dict[str, Any], calls: list[dict[str, Any]]) -> str | None:
    """The tool a result answers: its own ``name``, the call its ``tool_call_id`` names, or the
    only call made."""
    if isinstance(turn.get("name"), str) and turn["name"]:
        return str(turn["name"])
    call_id = turn.get("tool_call_id")
    for call in calls:
        if call_id and call.get("id") == call_id:
            return str(call["function"]["name"])
    return str(calls[0]["function"]["name"]) if len(calls) == 1 else None
