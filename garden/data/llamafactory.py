"""LLaMA-Factory's dataset registry (``dataset_info.json``) read, and its rows renamed.

Each entry names a file (``file_name``, relative to the registry's folder), its ``formatting``
(``alpaca`` or ``sharegpt``), whether it holds preference pairs (``ranking``), which columns play
which part (``columns``) and, for sharegpt, the keys and role values of its turns (``tags``).
``RowConverter`` turns one of its rows into a shape our readers already understand (OpenAI
``messages``, a TRL pair, a labelled answer or a ``text``), as LLaMA-Factory itself reads it:
the alpaca ``query`` is appended to the ``prompt`` after a newline, ``history`` pairs become
earlier turns, the sharegpt role values become user/assistant/tool/system and a function call.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from garden.data.kinds import DatasetKind
from garden.data.preference import json_or_text
from garden.data.row_errors import RowError
from garden.data.sources import FILE_TYPES
from garden.errors import DatasetError

REGISTRY_FILE = "dataset_info.json"
MAX_REGISTRY_BYTES = 16 * 1024 * 1024
FORMATTINGS = ("alpaca", "sharegpt")
PAIR_COLUMNS = {"chosen": "chosen", "rejected": "rejected"}
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", **PAIR_COLUMNS}
SHAREGPT_COLUMNS = {"messages": "conversations", **PAIR_COLUMNS}
TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
ROLE_BY_TAG = {
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "tool",
    "function_tag": "function_call",  # our readers turn it into the assistant's tool_calls
    "system_tag": "system",
}
MEDIA_COLUMNS = ("images", "videos", "audios")
REMOTE = {
    "hf_hub_url": "a Hugging Face hub dataset",
    "ms_hub_url": "a ModelScope hub dataset",
    "om_hub_url": "a Modelers hub dataset",
    "script_url": "a dataset loading script",
    "cloud_file_name": "a cloud file",
}
# How our importer reads the converted rows of each kind.
MAPPINGS: dict[DatasetKind, dict[str, str]] = {
    "chat": {
        "format": "openai",
        "messages": "messages",
        "role": "role",
        "content": "content",
        "tools": "tools",
    },
    "preference": {
        "format": "preference",
        "prompt": "prompt",
        "chosen": "chosen",
        "rejected": "rejected",
    },
    "feedback": {"format": "feedback", "messages": "messages", "label": "label"},
    "text": {"format": "text", "text": "text"},
}


@dataclass(frozen=True)
class Entry:
    """One registry entry: where its rows are and how to read them, or why it cannot be read
    (``problem``; ``remote`` when it names a hub or a script, ``missing`` when its file is not
    here)."""

    name: str
    formatting: str = "alpaca"
    ranking: bool = False
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    files: tuple[Path, ...] = ()
    problem: str | None = None
    remote: bool = False
    missing: bool = False

    @property
    def notes(self) -> list[str]:
        """What the import leaves out, for the entry's report."""
        media = [name for name in MEDIA_COLUMNS if name in self.columns]
        return [f"{', '.join(media)} left out (text models only)"] if media else []


def find_registry(path: Path) -> Path:
    """The registry file: ``path`` itself, or ``dataset_info.json`` in the folder ``path``."""
    path = path.expanduser()
    if path.is_dir():
        path = path / REGISTRY_FILE
    if not path.is_file():
        raise DatasetError(
            f"{path} does not exist.",
            hint=f"Give the path of LLaMA-Factory's {REGISTRY_FILE} (usually data/{REGISTRY_FILE}).",
        )
    return path


def read_registry(path: Path) -> dict[str, Any]:
    """The registry's entries by name; one clear line when it is not a JSON object."""
    if path.stat().st_size > MAX_REGISTRY_BYTES:
        raise DatasetError(
            f"{path.name} is over {MAX_REGISTRY_BYTES // 1024 // 1024} MB; a registry is small.",
            hint=f"Check that {path} is LLaMA-Factory's {REGISTRY_FILE}.",
        )
    try:
        registry = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path.name} is not UTF-8 text.", hint=f"Give LLaMA-Factory's {REGISTRY_FILE}."
        ) from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).",
            hint="Fix the file (a trailing comma is the usual cause), then import again.",
        ) from exc
    if not isinstance(registry, dict):
        raise DatasetError(
            f"{path.name} holds a JSON {type(registry).__name__}, not an object of datasets.",
            hint='LLaMA-Factory\'s registry looks like {"name": {"file_name": "data.json"}}.',
        )
    return registry


def select(registry: dict[str, Any], names: Sequence[str], path: Path) -> list[str]:
    """The entries asked for (every entry when ``names`` is empty); unknown names are one error
    that lists the close ones."""
    if not names:
        return list(registry)
    unknown = [name for name in names if name not in registry]
    if unknown:
        close = dict.fromkeys(c for n in unknown for c in difflib.get_close_matches(n, registry))
        hint = f"Close names: {', '.join(close)}." if close else ""
        shown = ", ".join(repr(name) for name in unknown)
        raise DatasetError(
            f"{path.name} has no entry {shown}.",
            hint=f"{hint} Leave the names out to import every entry whose file is here.".strip(),
        )
    return list(dict.fromkeys(names))


def read_entry(name: str, spec: Any, folder: Path) -> Entry:
    """An entry of the registry in ``folder``, with the reason it cannot be imported, if any."""
    if not isinstance(spec, dict):
        return Entry(name, problem="its description is not a JSON object")
    for key, what in REMOTE.items():
        if spec.get(key):
            return Entry(
                name, remote=True, problem=f"{what} ({key} {spec[key]}): only local files import"
            )
    formatting = spec.get("formatting") or "alpaca"
    if formatting not in FORMATTINGS:
        return Entry(
            name,
            problem=f"formatting {formatting!r} is not supported (alpaca or sharegpt)",
        )
    columns, tags = spec.get("columns") or {}, spec.get("tags") or {}
    for key, value in (("columns", columns), ("tags", tags)):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            return Entry(name, problem=f"its {key} are not an object of names")
    file_name = spec.get("file_name")
    if not isinstance(file_name, str) or not file_name.strip():
        return Entry(name, problem="it names no file_name (nor a hub dataset)")
    entry = Entry(name, formatting, bool(spec.get("ranking")), dict(columns), dict(tags))
    path = folder / file_name
    if not path.exists():
        return replace(entry, missing=True, problem=f"{file_name} is not in {folder}")
    files = (path,) if path.is_file() else _data_files(path)
    if not files:
        return replace(entry, problem=f"the folder {file_name} holds no data file")
    return replace(entry, files=files)


def _data_files(folder: Path) -> tuple[Path, ...]:
    """A folder entry's files, as LLaMA-Factory loads them: every data file in it, in order."""
    known = (*FILE_TYPES, ".gz")
    return tuple(
        path
        for path in sorted(folder.iterdir())
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in known
    )


class RowConverter:
    """Rows of one entry in the shape of their kind (``MAPPINGS``); ``kind`` is known from the
    first row on (an alpaca entry with no response column is pre-training text)."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        defaults = ALPACA_COLUMNS if entry.formatting == "alpaca" else SHAREGPT_COLUMNS
        self.columns = {**defaults, **entry.columns}
        self.tags = {**TAGS, **entry.tags}
        self.roles = {self.tags[key]: role for key, role in ROLE_BY_TAG.items()}
        self.kind: DatasetKind | None = None
        if entry.ranking:
            self.kind = "preference"
        elif "kto_tag" in entry.columns:
            self.kind = "feedback"
        elif entry.formatting == "sharegpt" or "response" in entry.columns:
            self.kind = "chat"

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.kind is None:
            self.kind = "chat" if self.columns["response"] in row else "text"
        if self.kind == "text":
            return {"text": self._required(row, "prompt")}
        if self.entry.formatting == "sharegpt":
            turns = self._sharegpt_turns(row)
        else:
            turns = self._alpaca_prompt(row)
            if self.kind != "preference":
                turns.append({"role": "assistant", "content": self._required(row, "response")})
        if self.kind == "preference":
            pair = {key: [self._answer(row, key)] for key in ("chosen", "rejected")}
            return {"prompt": turns, **pair}
        converted: dict[str, Any] = {"messages": turns}
        if self.kind == "feedback":
            converted["label"] = row.get(self.columns["kto_tag"])
        elif (tools := row.get(self.columns.get("tools", ""))) not in (None, "", []):
            converted["tools"] = tools
        return converted

    def _required(self, row: dict[str, Any], column: str) -> Any:
        name = self.columns[column]
        if row.get(name) in (None, ""):
            raise RowError(f"has no '{name}' ({column} column)")
        return row[name]

    def _system(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        system = row.get(self.columns.get("system", ""))
        return [] if system in (None, "") else [{"role": "system", "content": system}]

    def _alpaca_prompt(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        turns = self._system(row)
        for question, answer in _history(row.get(self.columns.get("history", ""))):
            turns += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
        prompt = self._required(row, "prompt")
        query = row.get(self.columns["query"])
        if isinstance(prompt, str) and isinstance(query, str) and query:
            prompt = f"{prompt}\n{query}"
        return [*turns, {"role": "user", "content": prompt}]

    def _sharegpt_turns(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        turns = json_or_text(self._required(row, "messages"))
        if not isinstance(turns, list):
            raise RowError(f"'{self.columns['messages']}' must be a list of turns")
        converted = [self._turn(turn, f"turn {n}") for n, turn in enumerate(turns, 1)]
        if converted and converted[0]["role"] == "system":
            return converted
        return self._system(row) + converted

    def _turn(self, turn: Any, where: str) -> dict[str, Any]:
        role_tag, content_tag = self.tags["role_tag"], self.tags["content_tag"]
        if isinstance(turn, str) and where in ("chosen", "rejected"):
            return {"role": "assistant", "content": turn}
        if not isinstance(turn, dict):
            raise RowError(f"{where} is not an object with {role_tag}/{content_tag}")
        value = turn.get(role_tag)
        role = self.roles.get(value) if isinstance(value, str) else None
        if role is None:
            named = ", ".join(f"{tag}={self.tags[tag]!r}" for tag in ROLE_BY_TAG)
            raise RowError(f"{where} has the {role_tag} {value!r}, which no tag names ({named})")
        return {"role": role, "content": turn.get(content_tag)}

    def _answer(self, row: dict[str, Any], key: str) -> dict[str, Any]:
        value = json_or_text(self._required(row, key))
        if self.entry.formatting == "alpaca":
            return {"role": "assistant", "content": value}
        return self._turn(value, key)


def _history(value: Any) -> list[tuple[Any, Any]]:
    value = json_or_text(value)
    if value in (None, "", []):
        return []
    if not isinstance(value, list) or not all(
        isinstance(pair, list | tuple) and len(pair) == 2 for pair in value
    ):
        raise RowError("has a history that is not a list of [instruction, answer] pairs")
    return [(question, answer) for question, answer in value]
