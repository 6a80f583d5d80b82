"""The cluster recipes under deploy/ render with sample values into valid files that run the
right command, and bench/gpu_check.sh is sound shell whose dry run prints its one JSON line."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from garden.deploy import APP_COMMAND, HEALTH_PATH, fill, render
from garden.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
GPU_CHECK = ROOT / "bench" / "gpu_check.sh"
SLURM_VALUES = {
    "nodes": "3",
    "gpus_per_node": "4",
    "partition": "a100",
    "time_limit": "1-00:00:00",
    "dataset": "/shared/data/chats.jsonl",
    "run_name": "support-bot",
    "max_steps": "500",
    "main_process_port": "29555",
    "workdir": "/shared/model-garden",
    "storage_root": "/scratch/garden",
}
K8S_VALUES = {
    "name": "garden",
    "namespace": "ml",
    "image": "registry.example/model-garden:cuda",
    "gpus": "2",
    "storage_size": "100Gi",
    "run_name": "support-bot",
    "dataset": "/data/storage/datasets/raw/chats.jsonl",
    "strategy": "fsdp",
}


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{name} is missing: `uv sync` installs it with the dev group"
    return str(path)


def shell_ok(path: Path) -> None:
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    lint = subprocess.run([tool("shellcheck"), str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_slurm_recipe_runs_one_launcher_per_node_with_its_rank(tmp_path: Path) -> None:
    (text,) = render("slurm", SLURM_VALUES).values()
    assert "{{" not in text and "}}" not in text
    for directive in ("--nodes=3", "--gpus-per-node=4", "--partition=a100", "--ntasks-per-node=1"):
        assert f"#SBATCH {directive}\n" in text
    (line,) = [line.strip() for line in text.splitlines() if "model-garden train" in line]
    args = shlex.split(line.removeprefix("exec "))
    assert args[:5] == ["uv", "run", "--no-sync", "model-garden", "train"]
    options = dict(zip(args[5::2], args[6::2], strict=True))
    assert options == {
        "--dataset": "/shared/data/chats.jsonl",
        "--name": "support-bot",
        "--max-steps": "500",
        "--strategy": "ddp",
        "--num-processes": "4",
        "--num-machines": "3",
        "--backend": "trl_peft",
        "--main-process-port": "29555",
        "--machine-rank": "$SLURM_NODEID",
        "--main-process-ip": "$MASTER_ADDR",
    }
    from click.testing import CliRunner

    from garden.cli.main import main

    train_help = CliRunner().invoke(main, ["train", "--help"], terminal_width=200).output
    assert all(option in train_help for option in options), "the CLI takes every flag it runs"
    assert 'cd "/shared/model-garden"' in text
    assert 'STORAGE_ROOT="/scratch/garden/node-$SLURM_NODEID"' in text
    script = tmp_path / "train.sbatch"
    script.write_text(text)
    shell_ok(script)


def test_kubernetes_recipe_is_valid_yaml_that_runs_the_image() -> None:
    files = render("k8s", K8S_VALUES)
    assert set(files) == {"k8s/app.yaml", "k8s/train-job.yaml"}
    assert not any("{{" in text for text in files.values())
    claim, deployment, service = yaml.safe_load_all(files["k8s/app.yaml"])
    assert [claim["kind"], deployment["kind"], service["kind"]] == [
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
    ]
    assert claim["spec"]["resources"]["requests"]["storage"] == "100Gi"
    pod = deployment["spec"]["template"]["spec"]
    (app,) = pod["containers"]
    assert app["image"] == "registry.example/model-garden:cuda"
    assert tuple(app["command"]) == APP_COMMAND
    assert app["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert app["volumeMounts"][0]["mountPath"] == "/data/storage"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert app["livenessProbe"]["httpGet"]["path"] == HEALTH_PATH
    env = {item["name"]: item for item in app["env"]}
    assert env["ENABLE_AUTH"]["value"] == "true"
    assert env["AUTH_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "model-garden-auth"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {doc["metadata"]["namespace"] for doc in (claim, deployment, service)} == {"ml"}

    job = yaml.safe_load(files["k8s/train-job.yaml"])
    assert job["kind"] == "Job" and job["metadata"]["name"] == "garden-train-support-bot"
    (train,) = job["spec"]["template"]["spec"]["containers"]
    command = train["command"]
    assert command[:5] == ["uv", "run", "--no-sync", "model-garden", "train"]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--num-processes"] == "2" and options["--strategy"] == "fsdp"
    assert options["--backend"] == "trl_peft"
    assert options["--dataset"] == "/data/storage/datasets/raw/chats.jsonl"
    claim_name = job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
    assert claim_name["claimName"] == claim["metadata"]["name"]


@pytest.mark.parametrize(
    ("recipe", "values", "named"),
    [
        ("slurm", {"nodes": "0"}, "nodes"),
        ("slurm", {"dataset": "my data.jsonl"}, "dataset"),
        ("slurm", {"gpus": "2"}, "gpus"),
        ("k8s", {"name": "Model_Garden"}, "name"),
        ("k8s", {"strategy": "mpi"}, "strategy"),
        ("helm", {}, "helm"),
    ],
)
def test_bad_values_are_one_line_errors_naming_them(recipe: str, values: dict, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render(recipe, values)
    message = str(caught.value)
    assert named in message and "\n" not in message


def test_a_placeholder_without_a_value_is_named() -> None:
    with pytest.raises(ConfigError, match="nodes"):
        fill("#SBATCH --nodes={{nodes}}\n", {}, "train.sbatch")
    assert fill("echo $HOME ${USER} {{x}}", {"x": "1"}, "t") == "echo $HOME ${USER} 1"


def test_command_line_writes_the_files_and_refuses_bad_input(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "garden.deploy", "k8s", "--set", "gpus=1", "--out"]
    done = subprocess.run([*command, str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.yaml", "train-job.yaml"]
    bad = subprocess.run(
        [sys.executable, "-m", "garden.deploy", "slurm", "--set", "nodes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "key=value" in bad.stderr


def test_gpu_check_is_sound_shell_and_its_dry_run_prints_one_json_line() -> None:
    shell_ok(GPU_CHECK)
    done = subprocess.run(
        ["bash", str(GPU_CHECK), "--dry-run", "--steps", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    figures = json.loads(line)
    assert figures["dry_run"] is True
    for key in ("trl_tok_s", "unsloth_tok_s", "unsloth_peak_allocated_mib", "vllm_tok_s"):
        assert figures[key] is None, "a dry run invents no figure"
    assert set(figures["errors"]) == {"trl_peft", "unsloth", "serve"}
    assert "--backend unsloth --steps 5" in done.stderr
    assert "--no-group cpu --extra gpu" in done.stderr
    bad = subprocess.run(["bash", str(GPU_CHECK), "--fast"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_gpu_report_names_a_failed_step_and_keeps_the_others(tmp_path: Path) -> None:
    (tmp_path / "train_trl_peft.txt").write_text('noise\n{"tok_s": 100.0, "steps": 5}\n')
    (tmp_path / "train_unsloth.txt").write_text("RuntimeError: CUDA out of memory\n")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu_bench.py"), "report", str(tmp_path), "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(done.stdout)
    assert figures["trl_tok_s"] == 100.0 and figures["unsloth_tok_s"] is None
    assert figures["errors"] == {
        "unsloth": "RuntimeError: CUDA out of memory",
        "serve": "not run",
    }
