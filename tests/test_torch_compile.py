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


def test_auto_compiles_only_long_unbudgeted_bf16_sft_runs_on_the_cpu(monkeypatch) -> None:
    from garden.engine.training import compiled_layers

    monkeypatch.setattr(compiled_layers, "cpp_compiler", lambda: "/usr/bin/g++")
    assert training.build_spec({"dataset": "x"}).torch_compile is False  # off unless asked
    plain = training.build_spec({"dataset": "x", "torch_compile": None})  # auto
    assert compiled_layers.auto_compiles(plain, "cpu", "bf16")
    assert not compiled_layers.auto_compiles(plain, "cpu", "fp32")  # +2 %: not worth it
    assert not compiled_layers.auto_compiles(plain, "cuda", "bf16")
    demo = training.build_spec({"dataset": "x", "torch_compile": None}, preset="Quick CPU demo")
    assert demo.time_budget_s
    assert not compiled_layers.auto_compiles(demo, "cpu", "bf16")  # budgeted: stays eager
    dpo = training.build_spec({"dataset": "x", "objective": "dpo", "torch_compile": None})
    assert not compiled_layers.auto_compiles(dpo, "cpu", "bf16")
    monkeypatch.setattr(compiled_layers, "cpp_compiler", lambda: None)
    assert not compiled_layers.auto_compiles(plain, "cpu", "bf16")
    with pytest.raises(JobError, match="do not mix"):
        training.build_spec({"dataset": "x", "torch_compile": True}, preset="Quick CPU demo")


@pytest.mark.parametrize(("max_steps", "compiled"), [(100, True), (20, False)])
def test_auto_decides_once_after_the_timed_steps(monkeypatch, max_steps, compiled) -> None:
    """10 s a step: 96 steps to go are 16 min (compile), 16 steps 160 s (stay eager)."""
    import torch
    from conftest import Clock
    from transformers import TrainerControl, TrainerState

    from garden.engine.training import compiled_layers

    clock = Clock()
    monkeypatch.setattr(compiled_layers.time, "monotonic", clock)
    model = torch.nn.Sequential(torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)]))
    logged: list[str] = []
    compiler = compiled_layers.LayerCompiler(model, logged.append)
    callback = compiled_layers.auto_compile_callback(compiler)
    state, control = TrainerState(max_steps=max_steps), TrainerControl()
    for step in range(1, 9):
        state.global_step = step
        callback.on_step_end(None, state, control)
        clock.now += 10.0
        layers_compiled = [layer._compiled_call_impl is not None for layer in model[0]]
        assert layers_compiled == [compiled and step >= 4] * 3, step
    assert len(logged) == (1 if compiled else 0)
    if compiled:
        assert "auto: ≈16 min of eager training to go" in logged[0]
    compiler.restore()
    assert all(layer._compiled_call_impl is None for layer in model[0])


def test_the_tab_submits_each_compile_choice_as_chosen() -> None:
    from garden.ui.finetune_tab import form_values, spec_values

    assert form_values(training.preset_values("Quick CPU demo"))["torch_compile"] == "off"
    for shown, meant in (("auto", None), ("on", True), ("off", False)):
        given = spec_values({"dataset": "x", "torch_compile": shown})
        assert given == {"dataset": "x", "torch_compile": meant}
        assert training.build_spec(given).torch_compile is meant


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
    assert "--torch-compile [off|on|auto]" in shown
    refused = CliRunner().invoke(
        train, ["--dataset", "x", "--torch-compile", "on", "--time-budget", "5m"]
    )
    assert refused.exit_code != 0 and "do not mix" in refused.output, refused.output


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
    assert any(
        line.startswith("Compiling 30 decoder layers (torch.compile, asked)") for line in logs
    )
    assert job.step == 3 and job.loss is not None
    saved = Path(job.output_dir or "")
    assert (saved / "adapter" / "adapter_model.safetensors").is_file()
    config = json.loads((saved / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["LlamaForCausalLM"]  # merged and saved as a plain model
