"""Verifiable rewards for GRPO, picked without code: each scores a completion 0 to 1.

A ``RewardSpec`` names one rule and its weight; ``reward_functions`` turns the specs into the
callables TRL's ``GRPOTrainer`` calls with the prompts, the completions and the dataset's other
columns (``reference``: the row's reference answer; ``tools``: its declared tools). TRL names
each function's metrics after its ``__name__`` (``rewards/number_match/mean``). A ``judge``
reward asks an OpenAI-compatible model (``garden.engine.training.judge_reward``). A Python file
defining ``reward(prompt, completion, **row) -> float`` is loaded only for the CLI (the machine
owner's tool); ``services.training.submit_from_web`` refuses it from the web.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from garden.errors import JobError

if TYPE_CHECKING:
    from garden.engine.training.judge_reward import JudgeTarget, Log

RewardKind = Literal["number_match", "exact_match", "regex", "json", "tool_call", "length", "judge"]
REWARD_KINDS: tuple[str, ...] = (
    "number_match",
    "exact_match",
    "regex",
    "json",
    "tool_call",
    "length",
    "judge",
)
URL_START = ("http://", "https://")
NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")
CODE_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
RewardFunction = Callable[..., list[float]]


class RewardSpec(BaseModel):
    """One reward rule: ``number_match``/``exact_match`` against the row's reference answer,
    ``regex`` (``pattern`` found in the completion), ``json`` (valid JSON, against ``schema``
    when given), ``tool_call`` (a well-formed call to a tool the row declares), ``length``
    (``min_chars`` ≤ characters ≤ ``max_chars``), ``judge`` (a model's 0-10 score against
    ``criterion``, from ``judge_url``/``judge_model`` or else ``EVAL_JUDGE_URL``)."""

    model_config = ConfigDict(extra="forbid")

    kind: RewardKind
    weight: float = Field(1.0, ge=0, le=100)
    pattern: str | None = Field(None, max_length=500)
    json_schema: str | None = Field(None, max_length=20_000, description="JSON Schema (text)")
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=1)
    criterion: str | None = Field(None, max_length=1000, description="judge: what it scores")
    judge_url: str | None = Field(None, max_length=500, description="judge: the endpoint")
    judge_model: str | None = Field(None, max_length=200, description="judge: its model")

    @model_validator(mode="after")
    def _complete(self) -> RewardSpec:
        if self.kind == "regex":
            if not self.pattern:
                raise ValueError("a regex reward needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"the regex pattern does not compile ({exc})") from exc
        if self.kind == "length" and self.min_chars is None and self.max_chars is None:
            raise ValueError("a length reward needs min_chars, max_chars or both")
        if self.judge_url is not None:
            if not self.judge_url.startswith(URL_START):
                raise ValueError("the judge's endpoint must be an http(s) URL")
            if not (self.judge_model or "").strip():
                raise ValueError("a judge endpoint needs a model name (judge=URL|MODEL|CRITERION)")
        if self.json_schema:
            try:
                json.loads(self.json_schema)
            except json.JSONDecodeError as exc:
                raise ValueError(f"the JSON schema is not valid JSON ({exc.msg})") from exc
        return self


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the content of conversational messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return str(completion)


def prompt_text(prompt: Any) -> str:
    """The last user turn of a conversational prompt (a plain prompt as it is)."""
    if isinstance(prompt, list):
        turns = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return str(turns[-1].get("content") or "") if turns else ""
    return str(prompt)


def last_number(text: str) -> float | None:
    found = NUMBER.findall(text or "")
    return float(found[-1].replace(",", ".")) if found else None


def number_match(completion: str, reference: str | None) -> float:
    want, got = last_number(reference or ""), last_number(completion)
    return float(want is not None and got is not None and abs(want - got) < 1e-6)


def exact_match(completion: str, reference: str | None) -> float:
    return float(
        " ".join(completion.split()).casefold() == " ".join((reference or "").split()).casefold()
    )


def json_reward(completion: str, schema: dict[str, Any] | None) -> float:
    try:
        value = json.loads(CODE_FENCE.sub("", completion.strip()))
    except (json.JSONDecodeError, RecursionError):
        return 0.0
    if schema is None:
        return 1.0
    import jsonschema

    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return 0.0
    return 1.0


def tool_call_reward(completion: str, tools: list[dict[str, Any]] | None) -> float:
    from garden.engine.training.tool_template import parse_tool_calls

    calls = parse_tool_calls(completion)
    if not calls:
        return 0.0
    declared = {
        str((tool.get("function") or tool).get("name"))
        for tool in tools or []
        if isinstance(tool, dict)
    }
    return float(not declared or all(call.name in declared for call in calls))


def _scorer(spec: RewardSpec) -> Callable[[str, dict[str, Any]], float]:
    if spec.kind == "number_match":
        return lambda text, row: number_match(text, row.get("reference"))
    if spec.kind == "exact_match":
        return lambda text, row: exact_match(text, row.get("reference"))
    if spec.kind == "regex":
        pattern = re.compile(spec.pattern or "")
        return lambda text, row: float(pattern.search(text) is not None)
    if spec.kind == "json":
        schema = json.loads(spec.json_schema) if spec.json_schema else None
        return lambda text, row: json_reward(text, schema)
    if spec.kind == "tool_call":
        return lambda text, row: tool_call_reward(text, row.get("tools"))
    low, high = spec.min_chars or 0, spec.max_chars
    return lambda text, row: float(low <= len(text) and (high is None or len(text) <= high))


def _batched(name: str, score: Callable[[str, dict[str, Any]], float]) -> RewardFunction:
    """TRL's calling convention: lists of prompts and completions, the other columns as lists."""

    def reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        scores = []
        for index, completion in enumerate(completions):
            row = {
                key: values[index] for key, values in columns.items() if isinstance(values, list)
            }
            scores.append(score(completion_text(completion), row))
        return scores

    reward.__name__ = name
    return reward


def _judged(
    name: str, spec: RewardSpec, judge: JudgeTarget | None, log: Log | None
) -> RewardFunction:
    """A ``judge`` spec's callable: the whole batch is scored at once, a few calls at a time."""
    from garden.engine.training.judge_reward import judge_scorer, judge_target

    target = judge_target(spec.judge_url, spec.judge_model, judge)
    scores = judge_scorer(name, target, spec.criterion, log)

    def reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        references = columns.get("reference") or [""] * len(completions)
        return scores(
            [
                (prompt_text(prompt), completion_text(completion), str(reference or ""))
                for prompt, completion, reference in zip(
                    prompts, completions, references, strict=False
                )
            ]
        )

    reward.__name__ = name
    return reward


def load_reward_file(path: Path) -> RewardFunction:
    """``reward(prompt, completion, **row) -> float`` from a Python file (CLI only)."""
    spec = importlib.util.spec_from_file_location("garden_user_reward", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise JobError(f"Cannot load the reward file {path}.", hint="Give a .py file path.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    user = getattr(module, "reward", None)
    if not callable(user):
        raise JobError(
            f"{path.name} defines no reward(prompt, completion, **row) function.",
            hint="Define `def reward(prompt, completion, **row) -> float`.",
        )

    def reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        scores = []
        for index, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            row = {
                key: values[index] for key, values in columns.items() if isinstance(values, list)
            }
            scores.append(float(user(prompt, completion_text(completion), **row)))
        return scores

    reward.__name__ = f"file_{path.stem}"
    return reward


def reward_functions(
    specs: list[RewardSpec],
    reward_file: str | None = None,
    judge: JudgeTarget | None = None,
    log: Log | None = None,
) -> tuple[list[RewardFunction], list[float]]:
    """The callables and weights for ``GRPOTrainer``; names made unique (``regex``, ``regex_2``).
    A ``judge`` spec without an endpoint uses ``judge`` (``EVAL_JUDGE_URL``); ``log(level,
    message)`` gets the judge's warnings."""
    functions: list[RewardFunction] = []
    weights: list[float] = []
    seen: dict[str, int] = {}
    for spec in specs:
        seen[spec.kind] = seen.get(spec.kind, 0) + 1
        name = spec.kind if seen[spec.kind] == 1 else f"{spec.kind}_{seen[spec.kind]}"
        if spec.kind == "judge":
            functions.append(_judged(name, spec, judge, log))
        else:
            functions.append(_batched(name, _scorer(spec)))
        weights.append(spec.weight)
    if reward_file:
        functions.append(load_reward_file(Path(reward_file)))
        weights.append(1.0)
    return functions, weights


WEIGHT_SUFFIX = re.compile(r"\*(\d+(?:\.\d+)?)$")


def parse_reward_option(text: str) -> RewardSpec:
    r"""One reward as the CLI's ``--reward`` and the form's lines write it:
    ``KIND[=ARG][*WEIGHT]``, e.g. ``number_match``, ``regex=^Answer: \d+$*0.5``,
    ``length=10-200``, ``json={"type": "object"}``, ``judge=Is it polite?`` (the endpoint of
    ``EVAL_JUDGE_URL``), ``judge=URL|MODEL|CRITERION``. ``JobError`` for anything else."""
    body, weight = text.strip(), None
    if found := WEIGHT_SUFFIX.search(body):
        body, weight = body[: found.start()], float(found.group(1))
    kind, _, argument = body.partition("=")
    values: dict[str, Any] = {"kind": kind.strip()}
    if weight is not None:
        values["weight"] = weight
    if argument and kind == "regex":
        values["pattern"] = argument
    elif argument and kind == "json":
        values["json_schema"] = argument
    elif argument and kind == "length":
        low, _, high = argument.partition("-")
        values["min_chars"] = int(low) if low.strip().isdigit() else None
        values["max_chars"] = int(high) if high.strip().isdigit() else None
    elif argument and kind == "judge":
        values.update(judge_values(argument))
    try:
        return RewardSpec.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        detail = str(first["msg"]).removeprefix("Value error, ")
        if tuple(first["loc"]) == ("kind",):
            detail = f"unknown kind {kind.strip()[:40]!r}"
        raise JobError(
            f"Reward {text.strip()[:80]!r}: {detail[:200]}.",
            hint=f"Write KIND[=ARG][*WEIGHT], KIND one of {', '.join(REWARD_KINDS)}.",
        ) from exc


def judge_values(argument: str) -> dict[str, Any]:
    """A judge line's argument: ``CRITERION``, or ``URL|MODEL|CRITERION`` (criterion optional)."""
    if not argument.strip().startswith(URL_START):
        return {"criterion": argument.strip() or None}
    parts = [part.strip() for part in argument.split("|", 2)]
    url, model, criterion = (*parts, "", "")[:3]
    return {"judge_url": url, "judge_model": model or None, "criterion": criterion or None}


def reward_option(spec: RewardSpec) -> str:
    """The inverse of ``parse_reward_option``."""
    judge = spec.criterion or ""
    if spec.judge_url:
        judge = f"{spec.judge_url}|{spec.judge_model}|{judge}"
    argument = {
        "regex": spec.pattern,
        "json": spec.json_schema,
        "length": f"{spec.min_chars or ''}-{spec.max_chars or ''}",
        "judge": judge,
    }.get(spec.kind)
    weight = "" if spec.weight == 1.0 else f"*{spec.weight:g}"
    return f"{spec.kind}{'=' + argument if argument else ''}{weight}"
