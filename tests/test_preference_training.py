"""Preference tuning: real short DPO, ORPO and KTO runs of the default model (LoRA, CPU).

The rows are written directly in the ``garden.data.kinds`` shapes, in folders with a
``train.jsonl`` and an ``eval.jsonl``. The session's short SFT run starts the DPO run (SFT then
DPO).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import test_training_engine
from conftest import copy_run

from garden.errors import JobError

settings = test_training_engine.settings  # a private storage and models folder for this module

FACTS = [
    ("What is the capital of France?", "Paris.", "Berlin."),
    ("What is the capital of Japan?", "Tokyo.", "Madrid."),
    ("What is 2 + 2?", "4.", "5."),
    ("What colour is the sky on a clear day?", "Blue.", "Green."),
    ("How many legs does a spider have?", "Eight.", "Six."),
    ("What is the largest planet?", "Jupiter.", "Mars."),
    ("What do bees make?", "Honey.", "Milk."),
    ("What is frozen water called?", "Ice.", "Steam."),
    ("How many days are in a week?", "Seven.", "Ten."),
    ("What is the capital of Italy?", "Rome.", "Oslo."),
    ("Which animal barks?", "A dog.", "A fish."),
    ("What is 3 times 3?", "9.", "12."),
    ("Which star does the Earth orbit?", "The Sun.", "The Moon."),
    ("What gas do plants take in?", "Carbon dioxide.", "Helium."),
    ("How many hours are in a day?", "24.", "30."),
    ("What is the capital of Spain?", "Madrid.", "Lisbon."),
    ("What is the opposite of hot?", "Cold.", "Loud."),
    ("What is 10 minus 3?", "7.", "4."),
    ("Which ocean is the largest?", "The Pacific.", "The Arctic."),
    ("What shape has three sides?", "A triangle.", "A square."),
]
TINY = {
    "batch_size": 4,
    "max_seq_len": 64,
    "lora_r": 8,
    "lora_alpha": 16,
    "warmup_ratio": 0.0,
    "lr_scheduler": "constant",
    "checkpoint_interval": 100,
}


def _turn(role: str, text: str) -> dict[str, str]:
    return {"role": role, "content": text}


def _write(folder: Path, train: list[dict], evaluation: list[dict] | None = None) -> Path:
    folder.mkdir(parents=True)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", evaluation)):
        if rows:
            (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


@pytest.fixture(scope="module")
def data(module_tmp) -> dict[str, Path]:
    chat = [{"messages": [_turn("user", q), _turn("assistant", good)]} for q, good, _ in FACTS]
    pairs = [
        {
            "prompt": [_turn("user", q)],
            "chosen": [_turn("assistant", good)],
            "rejected": [_turn("assistant", bad)],
        }
        for q, good, bad in FACTS
    ]
    feedback = [
        {
            "prompt": [_turn("user", q)],
            "completion": [_turn("assistant", good if i % 2 else bad)],
            "label": bool(i % 2),
        }
        for i, (q, good, bad) in enumerate(FACTS)
    ]
    return {
        "chat": _write(module_tmp / "chat", chat[:8]),
        "prefs": _write(module_tmp / "prefs", pairs[:16], pairs[16:]),
        "one-batch-prefs": _write(module_tmp / "one-batch-prefs", pairs[:4]),
        "feedback": _write(module_tmp / "feedback", feedback[:8]),
    }


def _run(settings, **values):
    from garden.services import training

    job = training.submit(training.build_spec({**TINY, **values}), settings=settings)
    done = training.wait(job.id, timeout=900, settings=settings)
    assert done.status == "completed", (done.error, training.logs(job.id, settings=settings)[-5:])
    return done


@pytest.fixture(scope="module")
def sft_then_dpo(settings, data, short_run):
    """The session's short SFT run (its rows copied into this storage), then a DPO run that
    starts from it (shared by several tests).

    DPO sees the same batch of four pairs at every step, so its margin rises steadily."""
    from garden.services import training

    copy_run(short_run.settings, settings, short_run.job.id)
    sft = training.get(short_run.job.id, settings=settings)
    dpo = _run(
        settings,
        name="facts-dpo",
        dataset=str(data["one-batch-prefs"]),
        objective="dpo",
        init_from_run=sft.id,
        max_steps=6,
        learning_rate=5e-4,
    )
    return sft, dpo


@pytest.mark.slow
def test_dpo_after_sft_raises_the_reward_margin(settings, sft_then_dpo):
    from garden.services import training

    sft, dpo = sft_then_dpo
    points = training.metrics(dpo.id, settings=settings)
    margins = [p.reward_margin for p in points if p.reward_margin is not None]
    assert len(margins) == 6
    assert margins[-1] > margins[0] + 0.01, margins
    assert dpo.objective == "dpo"
    assert dpo.reward_margin is not None
    assert dpo.energy_kwh is not None
    job = training.get(dpo.id, settings=settings)
    assert job.init_from_run == sft.id
    assert (Path(job.output_dir or "") / "config.json").is_file()


@pytest.mark.slow
def test_kto_runs_and_logs_its_rewards(settings, data):
    from garden.services import training

    kto = _run(
        settings,
        name="facts-kto",
        dataset=str(data["feedback"]),
        objective="kto",
        max_steps=2,
        learning_rate=1e-3,
    )
    points = training.metrics(kto.id, settings=settings)
    assert any(p.reward_chosen is not None for p in points)
    assert kto.step == 2


@pytest.mark.slow
def test_orpo_runs_and_the_next_plan_forecasts_its_steps(settings, data):
    from garden.engine.training import queries
    from garden.services import run_plan, training
    from garden.store import get_store

    values = {**TINY, "dataset": str(data["prefs"]), "objective": "orpo"}
    before = run_plan.plan(training.build_spec({**values, "max_steps": 4}), settings=settings)
    assert before.forecast.startswith("No forecast yet: no completed lora ORPO run of "), before
    assert before.forecast.endswith("(about 4 steps to train)."), before.forecast
    orpo = _run(
        settings, name="facts-orpo", dataset=str(data["prefs"]), objective="orpo", max_steps=2
    )
    points = training.metrics(orpo.id, settings=settings)
    assert any(p.reward_margin is not None for p in points)
    # The same run again, twice as long: its pace in steps, from the run just made.
    planned = run_plan.plan(training.build_spec({**values, "max_steps": 4}), settings=settings)
    finished = queries.get_job(get_store(settings.db_path), orpo.id).result
    assert planned.forecast.startswith("Forecast: ≈ "), planned.forecast
    assert "about 4 steps at " in planned.forecast
    assert "the pace of 1 earlier run of SmolLM2-135M-Instruct (lora ORPO) here" in planned.forecast
    assert planned.forecast_steps == 4 and planned.forecast_tokens is None
    assert planned.lines()[0].startswith("A run (named when it starts): lora ORPO of ")
    assert planned.forecast_s is not None and finished is not None
    assert planned.forecast_s == pytest.approx(2 * finished.train_seconds, rel=0.01)


def test_the_plan_refuses_dpo_on_chat_data(settings, data):
    from garden.services import training

    spec = training.build_spec({"dataset": str(data["chat"]), "objective": "dpo"})
    with pytest.raises(JobError) as caught:
        training.submit(spec, settings=settings)
    message = caught.value.message
    assert "DPO needs preference pairs (prompt/chosen/rejected)" in message
    assert "is chat data" in message
    assert "SFT" in (caught.value.hint or "")
    assert "\n" not in message


def test_the_plan_refuses_sft_on_pairs_and_an_unknown_start_run(settings, data):
    from garden.services import training

    with pytest.raises(JobError, match="SFT needs chat or text rows"):
        training.submit(training.build_spec({"dataset": str(data["prefs"])}), settings=settings)
    spec = training.build_spec(
        {"dataset": str(data["prefs"]), "objective": "dpo", "init_from_run": "no-such-run"}
    )
    with pytest.raises(JobError, match="does not exist"):
        training.submit(spec, settings=settings)


def test_objectives_follow_the_dataset_kind(settings, data):
    from garden.services import training

    assert training.objectives_for(str(data["prefs"]), settings=settings).objectives == [
        "dpo",
        "orpo",
    ]
    fits = training.objectives_for(str(data["feedback"]), settings=settings)
    assert fits.objectives == ["kto"]
    assert fits.presets and all("KTO" in name for name in fits.presets)
    assert training.objectives_for(str(data["chat"]), settings=settings).objectives == [
        "sft",
        "grpo",
    ]


def _cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "STORAGE_ROOT": str(settings.storage_root),
        "MODELS_DIR": str(settings.models_dir),
    }
    command = [str(Path(sys.executable).parent / "model-garden"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_cli_shows_reward_margins_and_refuses_dpo_on_chat_data(settings, data, sft_then_dpo):
    sft, dpo = sft_then_dpo
    shown = _cli(settings, "jobs", "show", dpo.id)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "reward margin" in shown.stdout and "at step 1" in shown.stdout
    assert f"dpo from {sft.id}" in shown.stdout
    listed = json.loads(_cli(settings, "jobs", "list", "--json").stdout)
    assert {job["job_id"]: job.get("objective") for job in listed}[dpo.id] == "dpo"
    refused = _cli(settings, "train", "--dataset", str(data["chat"]), "--objective", "dpo")
    assert refused.returncode == 2
    assert "DPO needs preference pairs" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_tab_fits_objectives_to_the_data_and_offers_dpo_from_a_run(
    settings, data, sft_then_dpo
):
    import gradio as gr

    from garden.services import training
    from garden.ui import finetune_tab, run_charts, run_view

    with gr.Blocks():
        form = finetune_tab.RunForm(settings)
        view = run_view.run_view()
    tab = finetune_tab.FineTuneTab(settings, form, view)
    objective, preset = tab.fit_to_dataset(str(data["feedback"]), "sft", "Quick CPU demo")
    assert objective["choices"] == ["kto"] and objective["value"] == "kto"
    assert preset["value"] == "KTO (CPU quick)"
    sft, dpo = sft_then_dpo
    filled = tab.follow_up(sft.id)
    assert filled[form.objective] == "dpo" and filled[form.init_from_run] == sft.id
    assert filled[form.preset] == "DPO (CPU quick)"
    assert tab.follow_up("no-such-job") == {}
    rewards, _ = run_charts.curves(training.metrics(dpo.id, settings=settings))
    assert rewards.layout.title.text == "Rewards"
    assert "reward margin" in finetune_tab.status_markdown(training.get(dpo.id, settings=settings))
