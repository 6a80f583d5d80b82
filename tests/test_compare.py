"""Compare runs: the session's short run and one more tiny run, side by side in one storage
(service, CLI, REST and the Fine-tune tab's handler), and the Pareto front on plain numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import FACTS, SHORT_RUN, SHORT_RUN_VALUES, copy_run, private_settings

from garden.errors import ConfigError
from garden.services import compare, training
from garden.services.compare import UnknownRunError, pareto_front

TINY_RUN = "compare-tiny"
TINY_PROMPTS = 2


@dataclass
class Runs:
    settings: Any
    short: Any  # JobView of the session's short run (copied into this storage)
    tiny: Any  # JobView of the tiny run trained here


@pytest.fixture(scope="module")
def runs(short_run, module_tmp: Path, default_model_path: Path) -> Runs:
    """The session's short run (4 held-out prompts evaluated) and a 2-step run on the same data,
    evaluated at its end on its first 2 held-out prompts, in one storage."""
    settings = private_settings(
        module_tmp,
        default_model_path,
        eval_after_training=True,
        eval_max_prompts=TINY_PROMPTS,
        eval_max_new_tokens=12,
    )
    copy_run(short_run.settings, settings, short_run.job.id)
    values = {**SHORT_RUN_VALUES, "name": TINY_RUN, "max_steps": 2, "batch_size": 2}
    values.update(max_seq_len=64, lora_r=4, lora_alpha=8, eval_steps=None, dataset=str(FACTS))
    spec = training.build_spec(values, preset="Quick CPU demo")
    tiny = training.wait(training.submit(spec, settings=settings).id, 600, settings=settings)
    assert tiny.status == "completed", tiny.error
    return Runs(settings, training.get(short_run.job.id, settings=settings), tiny)


@pytest.fixture
def as_default(runs: Runs, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The runs' storage as the process's settings (what the CLI and REST read)."""
    from garden.config import get_settings

    monkeypatch.setenv("STORAGE_ROOT", str(runs.settings.storage_root))
    monkeypatch.setenv("MODELS_DIR", str(runs.settings.models_dir))
    get_settings.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_the_pareto_front_on_plain_numbers() -> None:
    assert pareto_front({}) == []
    assert pareto_front({"a": (0.5, 1.0)}) == ["a"]
    # b beats a on both; c is better but dearer than b; d equals b (neither beats the other)
    points = {"a": (0.4, 2.0), "b": (0.5, 1.0), "c": (0.9, 3.0), "d": (0.5, 1.0)}
    assert pareto_front(points) == ["b", "c", "d"]
    # as good for less, or better for as much, beats
    assert pareto_front({"x": (0.5, 1.0), "y": (0.5, 0.9)}) == ["y"]
    assert pareto_front({"x": (0.5, 1.0), "y": (0.6, 1.0)}) == ["y"]
    # a run missing a figure is never on the front, and never beats another
    assert pareto_front({"e": (None, 0.1), "f": (0.9, None), "g": (0.1, 5.0)}) == ["g"]


def test_energy_per_answer_reads_a_metered_evaluation() -> None:
    """An evaluation on demand stores its energy: over its answers, the run's and the base's."""
    assert compare._answer_energy({"energy_kwh": 0.002, "n": 4}) == pytest.approx(0.25)
    assert compare._answer_energy({"energy_kwh": None, "n": 4}) is None  # at a run's end
    assert compare._answer_energy({"energy_kwh": 0.002, "n": 0}) is None


@pytest.mark.slow
def test_two_real_runs_side_by_side(runs: Runs) -> None:
    view = compare.compare_runs([SHORT_RUN, runs.tiny.id], settings=runs.settings)
    short, tiny = view.runs
    assert (short.job_id, tiny.job_id) == (runs.short.id, runs.tiny.id)
    for row, job in ((short, runs.short), (tiny, runs.tiny)):
        assert row.status == "completed" and row.evaluation == "completed" and row.note is None
        assert row.base_model == "SmolLM2-135M-Instruct" and row.objective == "sft"
        assert row.dataset and row.steps == job.step and row.final_loss == job.loss
        assert (row.rouge_l, row.exact_match) == (job.eval_rouge_l, job.eval_exact_match)
        assert row.perplexity == job.eval_perplexity and row.eval_loss is not None
        assert row.energy_kwh == job.energy_kwh and row.emissions_kg == job.emissions_kg
        assert row.model == f"finetuned/{job.name}"
    # Evaluated at its run's end only (inside the training meter): no energy per answer.
    assert tiny.kwh_per_1000_answers is None
    assert (short.steps, tiny.steps, short.answered, tiny.answered) == (4, 2, 4, TINY_PROMPTS)
    assert short.emissions_kg and tiny.emissions_kg and short.rouge_l is not None
    expected = pareto_front({r.job_id: (r.rouge_l, r.emissions_kg) for r in view.runs})
    assert view.pareto == expected and expected
    assert [r.pareto for r in view.runs] == [r.job_id in expected for r in view.runs]
    # the held-out prompts both evaluations answered: the tiny run's first two
    assert len(view.answers) == TINY_PROMPTS
    for answer in view.answers:
        assert answer.prompt and answer.reference
        assert (
            list(answer.base) == ["SmolLM2-135M-Instruct"] and answer.base["SmolLM2-135M-Instruct"]
        )
        assert set(answer.tuned) == {short.job_id, tiny.job_id}
    names = ", ".join(r.name for r in view.runs if r.pareto)
    assert view.status == (
        f"Compared 2 runs (2 evaluated) on {TINY_PROMPTS} shared prompts; "
        f"Pareto front (ROUGE-L vs CO₂): {names}."
    )
    if short.kwh_per_1000_answers is None:  # test_evaluation's on-demand evaluation fills it
        assert compare.NO_ANSWER_ENERGY in view.notes
    headers, rows = compare.fact_table(view)
    assert headers == ["", SHORT_RUN, TINY_RUN] and rows[0] == ["run", SHORT_RUN, TINY_RUN]
    assert all(len(row) == 3 for row in rows)
    headers, rows = compare.answer_table(view)
    assert headers == ["prompt", "reference", "base: SmolLM2-135M-Instruct", SHORT_RUN, TINY_RUN]
    assert len(rows) == TINY_PROMPTS


@pytest.mark.slow
def test_a_run_without_an_evaluation_shows_how_to_get_one(runs: Runs) -> None:
    from garden.engine.evaluation.storage import save_failure
    from garden.store import get_store, new_id

    store = get_store(runs.settings.db_path)
    copied = {**(store.get("jobs", runs.tiny.id) or {}), "id": new_id("job"), "name": "unscored"}
    store.insert("jobs", copied)
    view = compare.compare_runs([runs.tiny.id, copied["id"]], settings=runs.settings)
    assert [r.evaluation for r in view.runs] == ["completed", "not evaluated"]
    missing = view.runs[1]
    assert missing.rouge_l is None and missing.perplexity is None and not missing.pareto
    assert missing.note and f"model-garden eval {copied['id']}" in missing.note
    assert f"unscored: {missing.note}" in view.notes
    assert view.pareto == [runs.tiny.id] and len(view.answers) == TINY_PROMPTS
    save_failure(store, copied["id"], None, "the model folder is gone")
    failed = compare.compare_runs([runs.tiny.id, copied["id"]], settings=runs.settings).runs[1]
    assert failed.note and failed.note.startswith("Its evaluation failed: the model folder")


@pytest.mark.slow
def test_bad_requests_are_one_actionable_line(runs: Runs) -> None:
    cases: list[tuple[list[str], type[Exception], str]] = [
        ([], ConfigError, "Pick at least 2 runs to compare (0 given)"),
        ([SHORT_RUN], ConfigError, "Pick at least 2 runs"),
        ([SHORT_RUN, "no-such-run"], UnknownRunError, "Unknown run 'no-such-run'"),
        ([SHORT_RUN, runs.short.id], ConfigError, f"Run {runs.short.id} ({SHORT_RUN}) is listed"),
        ([f"r{i}" for i in range(9)], ConfigError, "At most 8 runs can be compared at once"),
    ]
    for names, error, message in cases:
        with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
            compare.compare_runs(names, settings=runs.settings)
        assert exc.value.hint and "\n" not in str(exc.value)


@pytest.mark.slow
def test_the_cli_prints_the_table_the_answers_and_json(runs: Runs, as_default: None) -> None:
    from garden.cli import main

    args = ["compare", SHORT_RUN, TINY_RUN]
    shown = CliRunner().invoke(main, args, terminal_width=250)
    assert shown.exit_code == 0, shown.output
    for needle in ("Runs compared", "ROUGE-L", "training CO₂e", "Pareto front", "Compared 2"):
        assert needle in shown.output
    assert "Answers to the shared held-out prompts" in shown.output
    printed = CliRunner().invoke(main, [*args, "--json"])
    assert printed.exit_code == 0, printed.output
    data = json.loads(printed.output)
    expected = compare.compare_runs([SHORT_RUN, TINY_RUN], settings=runs.settings)
    assert data == expected.model_dump(mode="json")
    refused = CliRunner().invoke(main, ["compare", SHORT_RUN, "[bold]nope"])
    assert refused.exit_code == 2 and "Unknown run '[bold]nope'" in refused.output


NO_TORCH = """
import json, sys
from click.testing import CliRunner
from garden.cli import main

done = CliRunner().invoke(main, ["compare", *sys.argv[1:], "--json"])
assert done.exit_code == 0, done.output
print(json.dumps({"runs": len(json.loads(done.output)["runs"]), "torch": "torch" in sys.modules}))
"""


@pytest.mark.slow
def test_compare_needs_no_torch(runs: Runs) -> None:
    env = {
        **os.environ,
        "STORAGE_ROOT": str(runs.settings.storage_root),
        "MODELS_DIR": str(runs.settings.models_dir),
    }
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, SHORT_RUN, TINY_RUN],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"runs": 2, "torch": False}


@pytest.mark.slow
def test_rest_compares_and_maps_bad_input(runs: Runs, as_default: None) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from garden.api import errors, router

    client = TestClient(
        FastAPI(routes=router().routes, exception_handlers=errors.EXCEPTION_HANDLERS)
    )
    answer = client.get("/api/v1/compare", params={"runs": [SHORT_RUN, runs.tiny.id]})
    assert answer.status_code == 200, answer.text
    expected = compare.compare_runs([SHORT_RUN, runs.tiny.id], settings=runs.settings)
    assert answer.json() == expected.model_dump(mode="json")
    for params, status, needle in (
        ({"runs": [SHORT_RUN]}, 400, "Pick at least 2 runs"),
        ({"runs": [SHORT_RUN, SHORT_RUN]}, 400, "is listed twice"),
        ({"runs": [SHORT_RUN, "no-such-run"]}, 404, "Unknown run 'no-such-run'"),
        ({"runs": [f"r{i}" for i in range(9)]}, 400, "At most 8 runs"),
        ({}, 422, ""),
    ):
        refused = client.get("/api/v1/compare", params=params)
        assert refused.status_code == status, refused.text
        body = refused.json()
        assert set(body) == {"error", "hint"} and needle in body["error"], body
    schema = client.get("/openapi.json")
    assert schema.status_code == 200 and "/api/v1/compare" in schema.json()["paths"]


@pytest.mark.slow
def test_the_fine_tune_tab_compares_through_the_service(runs: Runs) -> None:
    import gradio as gr

    from garden.ui.compare_panel import ComparePanel, status_markdown
    from garden.ui.finetune_tab import build

    with gr.Blocks():
        panel = ComparePanel(runs.settings)
        build(runs.settings)  # the tab builds with the panel in it
    assert {value for _, value in panel.choices()} >= {runs.tiny.id}
    status, facts, chart, answers = panel.compare([runs.short.id, runs.tiny.id])
    view = compare.compare_runs([runs.short.id, runs.tiny.id], settings=runs.settings)
    assert status == status_markdown(view) and status.startswith("Compared 2 runs")
    assert facts["headers"] == ["", SHORT_RUN, TINY_RUN]
    assert facts["value"] == compare.fact_table(view)[1]
    assert answers["value"] == compare.answer_table(view)[1]
    front = [trace for trace in chart.data if trace.name == "Pareto front"]
    # The front is drawn from the least CO₂ to the most, whichever run that is.
    on_front = sorted((r for r in view.runs if r.pareto), key=lambda r: r.emissions_kg or 0.0)
    assert len(front) == 1 and list(front[0].text) == [r.name for r in on_front]
    # the guarded handler shows the service's one line instead of raising
    from garden.ui.boundary import guard

    refused = guard("comparing runs", panel._failed, runs.settings)(panel.compare)([SHORT_RUN])
    assert refused[0].startswith("Pick at least 2 runs to compare (1 given).")
