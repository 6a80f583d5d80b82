"""Distributed training: Accelerate config files, spec validation and the launch command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from garden.errors import JobError

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "accelerate"
GIB = 2**30


def test_every_config_file_loads_in_accelerate():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    from garden.engine.training.distributed import CONFIG_FILES

    expected = {
        "cpu_ddp.yaml": DistributedType.MULTI_GPU,  # torchrun path; use_cpu makes ranks gloo
        "multi_gpu_ddp.yaml": DistributedType.MULTI_GPU,
        "multi_node.yaml": DistributedType.MULTI_GPU,
        "fsdp.yaml": DistributedType.FSDP,
        "deepspeed_zero2.yaml": DistributedType.DEEPSPEED,
    }
    assert set(CONFIG_FILES.values()) == set(expected)
    assert {path.name for path in CONFIGS.glob("*.yaml")} == set(expected)
    for name, kind in expected.items():
        config = load_config_from_file(str(CONFIGS / name))
        assert config.distributed_type == kind, name
    assert load_config_from_file(str(CONFIGS / "cpu_ddp.yaml")).use_cpu is True
    assert load_config_from_file(str(CONFIGS / "multi_node.yaml")).num_machines == 2


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"num_processes": 0}, "num_processes"),
        (
            {
                "num_machines": 2,
                "machine_rank": 2,
                "main_process_ip": "10.0.0.1",
                "main_process_port": 29500,
            },
            "machine_rank 2 must be below num_machines 2",
        ),
        ({"num_machines": 2}, "needs main_process_ip and main_process_port"),
        ({"main_process_port": 70000}, "main_process_port"),
        ({"strategy": "horovod"}, "strategy"),
    ],
)
def test_bad_distributed_settings_are_one_line_errors(values, field):
    from garden.engine.training import parse_spec

    with pytest.raises(JobError) as caught:
        parse_spec({"dataset": "x", **values})
    message = str(caught.value.message)
    assert field in message and "\n" not in message


def _spec(**values):
    from garden.engine.training import parse_spec

    return parse_spec({"dataset": "x", **values})


def test_layout_resolves_strategy_for_the_devices():
    from garden.engine.training.distributed import plan_layout

    single = plan_layout(_spec(), [], 0)
    assert (single.strategy, single.world_size, single.device) == ("single", 1, "cpu")
    cpu = plan_layout(_spec(num_processes=2), [], 0)
    assert (cpu.strategy, cpu.world_size) == ("ddp", 2)
    every_gpu = plan_layout(_spec(), [80 * GIB] * 4, 10 * GIB)
    assert (every_gpu.strategy, every_gpu.num_processes, every_gpu.device) == ("ddp", 4, "cuda")
    too_big = plan_layout(_spec(), [24 * GIB] * 2, 40 * GIB)
    assert too_big.strategy == "fsdp"
    nodes = plan_layout(
        _spec(num_processes=8, num_machines=2, main_process_ip="10.0.0.1", main_process_port=1),
        [80 * GIB] * 8,
        GIB,
    )
    assert (nodes.strategy, nodes.world_size) == ("ddp", 16)


@pytest.mark.parametrize(
    ("values", "gpus", "words"),
    [
        ({"num_processes": 2, "strategy": "fsdp"}, [], "needs CUDA GPUs"),
        ({"num_processes": 2, "strategy": "deepspeed"}, [], "needs CUDA GPUs"),
        ({"num_processes": 2, "backend": "unsloth"}, [80 * GIB] * 2, "Unsloth backend"),
        ({"num_processes": 3}, [80 * GIB] * 2, "2 GPU(s) are visible"),
        ({"num_processes": 1000}, [], "CPU processes and this machine has"),
    ],
)
def test_layout_refuses_what_cannot_run(values, gpus, words):
    from garden.engine.training.distributed import plan_layout

    with pytest.raises(JobError) as caught:
        plan_layout(_spec(**values), gpus, GIB)
    assert words in caught.value.message and caught.value.hint


def test_deepspeed_refused_when_not_installed():
    from garden.engine.training.distributed import deepspeed_installed, plan_layout

    if deepspeed_installed():
        pytest.skip("DeepSpeed is installed here")
    with pytest.raises(JobError, match="DeepSpeed and it is not installed"):
        plan_layout(_spec(num_processes=2, strategy="deepspeed"), [80 * GIB] * 2, GIB)


def test_launch_command_passes_accelerate_flags(tmp_path):
    from garden.engine.training.distributed import RANK_MODULE, launch_command, plan_layout

    spec = _spec(
        num_processes=2,
        num_machines=2,
        machine_rank=1,
        main_process_ip="127.0.0.1",
        main_process_port=29555,
    )
    layout = plan_layout(spec, [], 0)
    command = launch_command(spec, layout, tmp_path / "task.pkl")
    flags = dict(zip(command[3::2], command[4::2], strict=False))
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert Path(flags["--config_file"]).name == "cpu_ddp.yaml"
    assert flags["--num_processes"] == "4"  # accelerate counts all machines' processes
    assert flags["--num_machines"] == "2" and flags["--machine_rank"] == "1"
    assert flags["--main_process_ip"] == "127.0.0.1" and flags["--main_process_port"] == "29555"
    assert command[-3:] == ["-m", RANK_MODULE, str(tmp_path / "task.pkl")]


def test_cli_names_a_bad_machine_setting_in_one_line():
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "model-garden"),
            "train",
            "--dataset",
            "nothing",
            "--num-machines",
            "2",
            "--machine-rank",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "main_process_ip" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
