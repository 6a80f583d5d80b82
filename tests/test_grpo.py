"""GRPO with verifiable rewards (issue 24): each reward on hand-made completions, the rules the
web and the plan enforce, and a real few-step run of the default model on the bundled sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import private_settings

from garden.engine.training.rewards import (
    RewardSpec,
    parse_reward_option,
    reward_functions,
    reward_option,
)
from garden.errors import ConfigError, JobError
from garden.services import training

MATH = Path(__file__).resolve().parent.parent / "assets" / "datasets" / "garden_math.jsonl"
WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def scores(option: str, completions: list[Any], **columns: list[Any]) -> list[float]:
    (function,), _ = reward_functions([parse_reward_option(option)])
    return function(prompts=[[]] * len(completions), completions=completions, **columns)


def test_each_reward_scores_hand_made_completions() -> None:
    said = [[{"role": "assistant", "content": text}] for text in ("So 12 + 6 = 18.", "Answer: 17")]
    assert scores("number_match", said, reference=["Answer: 18", "Answer: 18"]) == [1.0, 0.0]
    assert scores("exact_match", ["  answer: 18 ", "18"], reference=["Answer: 18"] * 2) == [1, 0]
    assert scores(r"regex=Answer:\s*\d+$", ["x Answer: 4", "Answer: four"]) == [1.0, 0.0]
    schema = json.dumps({"type": "object", "required": ["city"]})
    answers = ['```json\n{"city": "Oslo"}\n```', '{"town": "Oslo"}', "not json"]
    assert scores(f"json={schema}", answers) == [1.0, 0.0, 0.0]
    assert scores("json", answers) == [1.0, 1.0, 0.0]
    calls = [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
        '<tool_call>\n{"name": "launch", "arguments": {}}\n</tool_call>',
        "It is sunny.",
    ]
    assert scores("tool_call", calls, tools=[WEATHER] * 3) == [1.0, 0.0, 0.0]
    assert scores("length=3-10", ["ok", "just right", "far too long here"]) == [0.0, 1.0, 0.0]


def test_rewards_are_written_as_lines_and_bad_ones_get_one_line() -> None:
    text = "number_match\nregex=Answer:\\s*-?\\d+*0.5\nlength=10-200"
    rewards = training.parse_rewards(text)
    assert [r["kind"] for r in rewards] == ["number_match", "regex", "length"]
    assert rewards[1] == {"kind": "regex", "pattern": "Answer:\\s*-?\\d+", "weight": 0.5}
    assert training.rewards_text(rewards) == text
    for bad, words in (
        ("nope", "unknown kind 'nope'"),
        ("regex=(", "does not compile"),
        ("length", "needs min_chars, max_chars or both"),
    ):
        with pytest.raises(JobError) as refused:
            training.parse_rewards(f"number_match\n{bad}")
        assert words in str(refused.value) and "\n" not in str(refused.value)
    functions, weights = reward_functions(
        [RewardSpec(kind="regex", pattern="a"), RewardSpec(kind="regex", pattern="b", weight=2)]
    )
    assert [f.__name__ for f in functions] == ["regex", "regex_2"] and weights == [1.0, 2.0]
    assert reward_option(RewardSpec(kind="number_match", weight=2)) == "number_match*2"


def test_a_reward_file_runs_from_the_cli_only(tmp_path: Path) -> None:
    script = tmp_path / "my_reward.py"
    script.write_text(
        "def reward(prompt, completion, **row):\n    return float('7' in completion)\n"
    )
    (function,), _ = reward_functions([], str(script))
    assert function(prompts=[[], []], completions=["7 roses", "six"], reference=["", ""]) == [1, 0]
    with pytest.raises(ConfigError) as refused:
        training.submit_from_web({"dataset": "x", "objective": "grpo", "reward_file": str(script)})
    assert "may not name one" in str(refused.value)


@pytest.fixture(scope="module")
def settings(module_tmp: Path, default_model_path: Path) -> Any:
    from garden.data import import_dataset

    settings = private_settings(module_tmp, default_model_path, max_concurrent_jobs=1)
    import_dataset(MATH, "garden-math", settings=settings)
    return settings


def test_grpo_needs_a_reward_and_a_prompt_dataset(settings: Any) -> None:
    with pytest.raises(JobError, match="GRPO needs at least one reward"):
        training.submit(
            training.build_spec({"dataset": "garden-math", "objective": "grpo"}), settings=settings
        )


@pytest.mark.slow
def test_a_short_grpo_run_logs_each_reward_and_is_metered(settings: Any) -> None:
    short = {"max_steps": 2, "batch_size": 4, "num_generations": 2, "max_completion_length": 12}
    spec = training.build_spec({"dataset": "garden-math", **short}, preset="GRPO (CPU quick)")
    job = training.wait(training.submit(spec, settings=settings).id, 600, settings=settings)
    assert job.status == "completed", training.logs(job.id, settings=settings)[-5:]
    points = training.metrics(job.id, settings=settings)
    logged = [p for p in points if p.rewards_by_function]
    assert len(logged) == 2
    assert set(logged[-1].rewards_by_function or {}) == {"number_match", "regex"}
    assert all(p.reward_mean is not None and p.completion_length for p in logged)
    assert job.energy_kwh and job.energy_kwh > 0
