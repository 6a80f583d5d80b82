"""``torch_compile``: regional compilation of the decoder layers for one SFT run on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FACTS, private_settings

from garden.errors import JobError
from garden.services import training


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"time_budget_s": 300}, "do not mix"),
        ({"co2_budget_g": 1.0}, "do not mix"),
        ({"objective": "dpo"}, "SFT runs only"),
        ({"num_processes": 2}, "num_processes to 1"),
    ],
)
def test_what_compiling_cannot_do_is_refused_in_one_line(values, words) -> None:
    with pytest.raises(JobError) as caught:
        training.build_spec({"dataset": "anything", "torch_compile": True, **values})
    assert words in caught.value.message and "\n" not in caught.value.message
    training.build_spec({"dataset": "anything", "torch_compile": False, **values})


def test_the_quick_demo_stays_uncompiled_and_a_budgetless_preset_can_compile() -> None:
    assert training.preset_values("Quick CPU demo")["torch_compile"] is False
    with pytest.raises(JobError, match="do not mix"):
        training.build_spec({"dataset": "x", "torch_compile": True}, preset="Quick CPU demo")
    assert training.build_spec({"dataset": "x", "torch_compile": True, "time_budget_s": None})


def test_no_cpp_compiler_is_refused_at_submit(tmp_path, monkeypatch) -> None:
    from garden.config import Settings

    settings = Settings(_env_file=None, storage_root=tmp_path / "storage")
    settings.ensure_storage()
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    spec = training.build_spec({"dataset": "anything", "torch_compile": True})
    with pytest.raises(JobError) as caught:
        training.submit(spec, settings=settings)
    assert "C++ compiler" in caught.value.message and "g++" in (caught.value.hint or "")
    assert training.list_jobs(settings=settings) == []


def test_the_cli_offers_the_switch() -> None:
    from garden.cli.train import train

    shown = CliRunner().invoke(train, ["--help"], terminal_width=200).output
    assert "--torch-compile / --no-torch-compile" in shown


@pytest.mark.slow
def test_a_compiled_run_trains_and_saves_its_model(
    tmp_path: Path, default_model_path: Path
) -> None:
    """A real 3-step compiled LoRA run of the default model, through the service."""
    settings = private_settings(tmp_path, default_model_path)
    values = {"dataset": str(FACTS), "name": "compiled", "torch_compile": True, "max_steps": 3}
    values |= {"batch_size": 2, "max_seq_len": 96, "warmup_ratio": 0.0}
    spec = training.build_spec(values)
    job = training.wait(training.submit(spec, settings=settings).id, timeout=900, settings=settings)
    logs = [line.message for line in training.logs(job.id, settings=settings)]
    assert job.status == "completed", (job.error, logs[-5:])
    assert any(line.startswith("Compiling 30 decoder layers") for line in logs), logs
    assert job.step == 3 and job.loss is not None
    saved = Path(job.output_dir or "")
    assert (saved / "adapter" / "adapter_model.safetensors").is_file()
    config = json.loads((saved / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["LlamaForCausalLM"]  # merged and saved as a plain model
