"""GRPO with verifiable rewards (issue 24): each reward on hand-made completions, an LLM judge
served by a tiny local OpenAI-compatible server (a stand-in for a third-party judge), the rules
the web and the plan enforce, and a real few-step run of the default model on the bundled sample
whose sampled completions reach the job view and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import private_settings

from garden import present
from garden.engine.training.journal import Journal
from garden.engine.training.judge_reward import JudgeTarget, default_judge, parse_score
from garden.engine.training.records import CompletionSample, SamplesEvent
from garden.engine.training.rewards import (
    RewardSpec,
    parse_reward_option,
    reward_functions,
    reward_option,
)
from garden.errors import ConfigError, JobError, ServingError
from garden.services import training
from garden.store import get_store

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


def test_judge_lines_round_trip_and_bad_ones_get_one_line() -> None:
    text = "judge\njudge=Is the answer polite?*0.5\njudge=http://127.0.0.1:9/v1|tiny|Polite?"
    rewards = training.parse_rewards(text)
    assert rewards[0] == {"kind": "judge", "weight": 1.0}
    assert rewards[1]["criterion"] == "Is the answer polite?" and rewards[1]["weight"] == 0.5
    assert rewards[2] == {
        "kind": "judge",
        "weight": 1.0,
        "criterion": "Polite?",
        "judge_url": "http://127.0.0.1:9/v1",
        "judge_model": "tiny",
    }
    assert training.rewards_text(rewards) == text
    with pytest.raises(JobError) as refused:
        training.parse_rewards("judge=http://127.0.0.1:9/v1")
    assert "needs a model name" in str(refused.value) and "\n" not in str(refused.value)
    assert [parse_score(t) for t in ("8", "Score: 7/10", "yes", "No.", "none", "42")] == [
        0.8,
        0.7,
        1.0,
        0.0,
        None,
        None,
    ]


class JudgeHandler(BaseHTTPRequestHandler):
    """OpenAI's chat-completions shape: 8 out of 10, words for GARBLE, HTTP 500 for FAIL."""

    seen: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = body["messages"][0]["content"]
        self.seen.append((content, self.headers.get("Authorization") or ""))
        if "FAIL" in content.split("Answer:")[-1]:
            self.send_response(500)
            self.end_headers()
            return
        reply = "I cannot say" if "GARBLE" in content else "Score: 8/10"
        data = json.dumps(
            {
                "id": "judge-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def judge_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), JudgeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_the_judge_reward_scores_through_a_local_endpoint(judge_url: str) -> None:
    warnings: list[str] = []
    line = f"judge={judge_url}|tiny-judge|Does it give the total?"
    (function,), _ = reward_functions(
        [parse_reward_option(line)], log=lambda level, message: warnings.append(level + message)
    )
    prompt = [{"role": "user", "content": "What is 12 + 6?"}]
    said = ["So 12 + 6 = 18.", "GARBLE", "FAIL"]
    got = function(prompts=[prompt] * 3, completions=said, reference=["Answer: 18"] * 3)
    assert got == [0.8, 0.0, 0.0]
    assert len(warnings) == 1 and "2 of 3 completions scored 0" in warnings[0]
    asked = next(content for content, _ in JudgeHandler.seen if "So 12 + 6" in content)
    assert "What is 12 + 6?" in asked and "Answer: 18" in asked
    assert "Does it give the total?" in asked
    with pytest.raises(JobError) as failed:
        function(prompts=[prompt] * 2, completions=["FAIL", "FAIL"], reference=["18", "18"])
    assert "failed on all 2 completions" in str(failed.value) and "\n" not in str(failed.value)
    # EVAL_JUDGE_URL's key goes to that endpoint only, never to one a line names.
    judge = JudgeTarget(judge_url, "tiny-judge", "owner-key")
    JudgeHandler.seen.clear()
    (own,), _ = reward_functions([RewardSpec(kind="judge")], judge=judge)
    (named,), _ = reward_functions([parse_reward_option(line.replace("/v1", "/v1/"))], judge=judge)
    other = JudgeTarget("http://127.0.0.1:9/v1", "m", "owner-key")
    (elsewhere,), _ = reward_functions([parse_reward_option(line)], judge=other)
    for reward in (own, named, elsewhere):
        assert reward(prompts=[prompt], completions=["18"], reference=["18"]) == [0.8]
    assert [key for _, key in JudgeHandler.seen] == ["Bearer owner-key"] * 2 + ["Bearer none"]


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


def test_a_judge_needs_an_endpoint_and_the_web_only_an_allowed_one(settings: Any) -> None:
    grpo = {"dataset": "garden-math", "objective": "grpo"}
    assert default_judge(settings) is None
    with pytest.raises(JobError, match="A judge reward needs an endpoint, and none is set"):
        training.submit(
            training.build_spec({**grpo, "rewards": [{"kind": "judge"}]}), settings=settings
        )
    remote = {"kind": "judge", "judge_url": "http://judge.example.com/v1", "judge_model": "m"}
    with pytest.raises(ServingError) as refused:
        training.submit_from_web({**grpo, "rewards": [remote]}, settings=settings)
    assert "The web app may not call judge.example.com" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert not training.list_jobs(settings=settings)


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
    assert len(job.samples) == 8 and {s.step for s in job.samples} == {1, 2}
    assert job.samples[0].step == 2  # newest first
    for sample in job.samples:
        assert set(sample.rewards) == {"number_match", "regex"} and sample.prompt
        number, regex = sample.rewards["number_match"], sample.rewards["regex"]
        assert sample.total == pytest.approx((number or 0) + 0.5 * (regex or 0))
    headers, rows = present.sample_table(job)
    assert headers == ["step", "prompt", "completion", "number_match", "regex", "total"]
    assert len(rows) == 8
    env = {**os.environ, "STORAGE_ROOT": str(settings.storage_root)}
    command = [sys.executable, "-m", "garden.cli", "jobs", "show", job.id]
    shown = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env, cwd=MATH.parents[2]
    )
    assert shown.returncode == 0 and "Sampled completions" in shown.stdout, shown.stderr[-2000:]
    assert "number_match" in shown.stdout and "mean reward" in shown.stdout
    # A third logged step keeps the 8 newest samples.
    newer = CompletionSample(step=3, prompt="p", completion="c", rewards={"regex": 1.0}, total=0.5)
    Journal(get_store(settings.db_path)).record(job.id, SamplesEvent(samples=[newer]))
    kept = training.get(job.id, settings=settings).samples
    assert [sample.step for sample in kept] == [3, 2, 2, 2, 2, 1, 1, 1]
