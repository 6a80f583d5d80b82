"""A Go ``text/template`` renderer for the subset Ollama's Modelfile templates use (and ours
emit), so a Modelfile's TEMPLATE can be checked without Ollama: text, ``{{ .Field }}`` and
``$.Field``, ``$var`` and ``$var := …``, ``range .X`` and ``range $i, $x := …``,
``if``/``else if``/``else``/``end``,
the functions ``eq ne and or not len slice``, parentheses, string and number literals and the
``{{-``/``-}}`` trim markers. Anything else raises, so a template outside the subset fails loudly.
"""

from __future__ import annotations

import json
import re
from typing import Any

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
TOKEN = re.compile(
    r'\s*(\(|\)|:=|,|"(?:\\.|[^"\\])*"|\$[\w]*(?:\.\w+)*|(?:\.\w+)+|\.|-?\d+|[A-Za-z_]\w*)'
)
WHITESPACE = " \t\r\n"


def _lex(source: str) -> list[tuple[str, str]]:
    """Text and action items, with the trim markers applied to the text around them."""
    items: list[tuple[str, str]] = []
    position, trim_next = 0, False
    for match in ACTION.finditer(source):
        text = source[position : match.start()]
        text = text.lstrip(WHITESPACE) if trim_next else text
        text = text.rstrip(WHITESPACE) if match.group(1) else text
        items += [("text", text), ("action", match.group(2).strip())]
        position, trim_next = match.end(), bool(match.group(3))
    tail = source[position:]
    items.append(("text", tail.lstrip(WHITESPACE) if trim_next else tail))
    return [item for item in items if item != ("text", "")]


def _tokens(action: str) -> list[str]:
    tokens, position = [], 0
    while position < len(action.rstrip()):
        match = TOKEN.match(action, position)
        if not match:
            raise ValueError(f"unsupported syntax in {{{{ {action} }}}} at {position}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _parse(items: list[tuple[str, str]], position: int = 0) -> tuple[list[Any], int, str]:
    """Nodes up to an ``else``/``end`` (returned with its position and the action itself)."""
    nodes: list[Any] = []
    while position < len(items):
        kind, value = items[position]
        position += 1
        if kind == "text":
            nodes.append(("text", value))
            continue
        words = _tokens(value)
        if words[0] in ("end", "else"):
            return nodes, position, value
        if words[0] == "if":
            branches, otherwise, condition = [], [], words[1:]
            while True:
                body, position, stop = _parse(items, position)
                branches.append((condition, body))
                if stop.startswith("else if"):
                    condition = _tokens(stop)[2:]
                    continue
                if stop == "else":
                    otherwise, position, stop = _parse(items, position)
                break
            nodes.append(("if", branches, otherwise))
        elif words[0] == "range":
            body, position, _ = _parse(items, position)
            if words[2:3] == [","] and words[4:5] == [":="]:
                nodes.append(("range", words[1], words[3], words[5:], body))
            elif ":=" in words or "," in words:
                raise ValueError(f"only `range $i, $x := …` is supported, not {{{{ {value} }}}}")
            else:
                nodes.append(("range", "$", "$", words[1:], body))  # plain `range .X`
        elif len(words) > 2 and words[1] == ":=":
            nodes.append(("assign", words[0], words[2:]))
        else:
            nodes.append(("print", words))
    return nodes, position, ""


def _truthy(value: Any) -> bool:
    return bool(value)


FUNCTIONS = {
    "eq": lambda a, *others: any(a == other for other in others),
    "ne": lambda a, b: a != b,
    "not": lambda a: not _truthy(a),
    "len": len,
    "slice": lambda seq, start=0, stop=None: seq[start:stop],  # Go: slice x 1 is x[1:]
}


def _field(value: Any, path: str) -> Any:
    for name in filter(None, path.split(".")):
        value = value[name] if isinstance(value, dict) else getattr(value, name)
    return value


def _term(tokens: list[str], position: int, scope: dict[str, Any]) -> tuple[Any, int]:
    token = tokens[position]
    if token == "(":
        value, position = _call(tokens, position + 1, scope)
        return value, position + 1  # the ")"
    if token.startswith('"'):
        return json.loads(token), position + 1
    if token.startswith("$"):
        name, _, path = token.partition(".")
        return _field(scope[name], path), position + 1
    if token.startswith("."):
        return _field(scope["."], token), position + 1
    if token.lstrip("-").isdigit():
        return int(token), position + 1
    raise ValueError(f"unsupported term {token!r}")


def _call(tokens: list[str], position: int, scope: dict[str, Any]) -> tuple[Any, int]:
    """A function call with its arguments, or a single term; stops at ``)`` or the end."""
    name = tokens[position]
    if name in ("and", "or") or name in FUNCTIONS:
        args, position = [], position + 1
        while position < len(tokens) and tokens[position] != ")":
            value, position = _term(tokens, position, scope)
            args.append(value)
        if name == "and":
            return next((a for a in args if not _truthy(a)), args[-1]), position
        if name == "or":
            return next((a for a in args if _truthy(a)), args[-1]), position
        return FUNCTIONS[name](*args), position
    return _term(tokens, position, scope)


def _evaluate(tokens: list[str], scope: dict[str, Any]) -> Any:
    value, position = _call(tokens, 0, scope)
    if position != len(tokens):
        raise ValueError(f"unsupported pipeline {' '.join(tokens)}")
    return value


def _run(nodes: list[Any], scope: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "print":
            out.append(str(_evaluate(node[1], scope)))
        elif node[0] == "assign":
            scope[node[1]] = _evaluate(node[2], scope)
        elif node[0] == "if":
            branches, otherwise = node[1], node[2]
            chosen = next((b for c, b in branches if _truthy(_evaluate(c, scope))), otherwise)
            _run(chosen, scope, out)
        else:
            _, index_name, item_name, source, body = node
            for index, item in enumerate(_evaluate(source, scope)):
                inner = {**scope, ".": item}
                if index_name != "$":
                    inner.update({index_name: index, item_name: item})
                _run(body, inner, out)


def render(template: str, data: dict[str, Any]) -> str:
    """``template`` executed on ``data`` (``.`` and ``$``), as Go's text/template would."""
    nodes, position, stop = _parse(_lex(template))
    if stop:
        raise ValueError(f"unexpected {{{{ {stop} }}}} at item {position}")
    out: list[str] = []
    _run(nodes, {".": data, "$": data}, out)
    return "".join(out)
