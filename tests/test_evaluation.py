"""Evaluation of runs: one real short LoRA run of the default model on the bundled facts set,
evaluated automatically at its end, then on demand (service and CLI)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHORT_RUN, SHORT_RUN_PROMPTS

from garden.errors import DatasetError, JobError
from garden.services import carbon, evaluation, training
from garden.ui.carbon_charts import loss_vs_co2
from garden.ui.evaluate_panel import metrics_markdown, pair_rows

JSON_KEYS = {"model", "eval_loss", "perplexity", "rouge_l", "exact_match", "n"}


@pytest.fixture(scope="module")
def settings(short_run):
    return short_run.settings


@pytest.fixture(scope="module")
def run(short_run):
    """The session's short run (conftest): its storage evaluates every run at its end."""
    return short_run.job


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_metrics(view: evaluation.EvaluationView) -> None:
    assert view.status == "completed" and view.model == f"finetuned/{SHORT_RUN}"
    assert view.eval_loss is not None and math.isfinite(view.eval_loss) and view.eval_loss > 0
    assert view.perplexity == pytest.approx(math.exp(view.eval_loss))
    assert view.rouge_l is not None and 0.0 <= view.rouge_l <= 1.0
    assert view.exact_match is not None and 0.0 <= view.exact_match <= 1.0
    assert view.contains_match is not None and 0.0 <= view.contains_match <= 1.0
    assert view.n == SHORT_RUN_PROMPTS == len(view.pairs)
    assert all(pair.prompt and pair.reference and pair.tuned for pair in view.pairs)


@pytest.mark.slow
def test_every_completed_run_is_evaluated_and_stored(settings, run):
    stored = evaluation.get_evaluation(run.id, settings=settings)
    assert stored is not None and stored.in_training_run and stored.error is None
    _check_metrics(stored)
    assert [p.tuned for p in stored.pairs] != [p.base for p in stored.pairs], stored.pairs
    assert (run.eval_rouge_l, run.eval_perplexity) == (stored.rouge_l, stored.perplexity)
    listed = training.list_jobs(settings=settings)[0]
    assert listed.eval_rouge_l == stored.rouge_l and listed.eval_exact_match == stored.exact_match
    logs = [line.message for line in training.logs(run.id, settings=settings)]
    assert any(line.startswith("Evaluation: eval loss") for line in logs), logs[-5:]
    shown = metrics_markdown(stored)
    assert f"ROUGE-L **{stored.rouge_l:.3f}**" in shown and "in the training run" in shown
    assert pair_rows(stored) == [[p.prompt, p.reference, p.base, p.tuned] for p in stored.pairs]
    rows = carbon.report(settings=settings).rows
    assert [row.eval_rouge_l for row in rows if row.ref_id == run.id] == [stored.rouge_l]
    chart = loss_vs_co2(rows)
    assert chart.data[0].name == "ROUGE-L" and list(chart.data[0].y) == [stored.rouge_l]


@pytest.mark.slow
def test_eval_json_with_a_failing_judge_keeps_the_metrics(settings, run):
    env = {
        **os.environ,
        "STORAGE_ROOT": str(settings.storage_root),
        "MODELS_DIR": str(settings.models_dir),
        "EVAL_MAX_PROMPTS": str(SHORT_RUN_PROMPTS),
        "EVAL_MAX_NEW_TOKENS": "24",
        "EVAL_JUDGE_URL": f"http://127.0.0.1:{_closed_port()}/v1",
        "EVAL_JUDGE_MODEL": "judge",
    }
    command = [str(Path(sys.executable).parent / "model-garden"), "eval", SHORT_RUN, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert set(summary) == JSON_KEYS, summary
    stored = evaluation.get_evaluation(run.id, settings=settings)
    assert stored is not None and not stored.in_training_run
    _check_metrics(stored)
    # An evaluation on demand is metered on its own (what a comparison's energy per answer reads).
    assert stored.energy_kwh and stored.energy_kwh > 0 and stored.emissions_kg
    records = carbon.report(since="2000-01-01", kind="other", settings=settings).rows
    assert any(row.label == f"evaluation of {SHORT_RUN}" for row in records), records
    assert summary == stored.summary()
    assert stored.error is not None and stored.error.startswith("Judge not used: Cannot reach")
    assert "\n" not in stored.error


@pytest.mark.slow
def test_errors_are_one_actionable_line(settings, run):
    with pytest.raises(JobError, match="Unknown job 'no-such-run'") as unknown:
        evaluation.evaluate_run("no-such-run", settings=settings)
    assert "jobs list" in str(unknown.value)
    with pytest.raises(DatasetError, match="There is no dataset 'no-such-dataset'") as missing:
        evaluation.evaluate_run(run.id, dataset="no-such-dataset", settings=settings)
    assert "data list" in str(missing.value) and "\n" not in str(missing.value)


@pytest.mark.slow
def test_the_model_card_states_the_evaluation(settings, run):
    from huggingface_hub import ModelCard

    from garden.services import export

    request = export.ExportRequest.model_validate({"model": SHORT_RUN, "format": "adapter"})
    view = export.export(request, settings=settings)
    stored = evaluation.get_evaluation(run.id, settings=settings)
    assert stored is not None and view.card["evaluation"]["rouge_l"] == stored.rouge_l
    card = ModelCard.load(Path(view.folder_abs) / "README.md")
    results = card.data.to_dict()["model-index"][0]["results"]
    metrics = {m["type"]: m["value"] for result in results for m in result["metrics"]}
    assert metrics["rougeL"] == pytest.approx(stored.rouge_l, abs=1e-6)
    assert metrics["perplexity"] == pytest.approx(stored.perplexity, rel=1e-5)
    assert f"ROUGE-L ({stored.n} held-out prompts)" in card.text
