"""Render the cluster recipes under ``deploy/`` (Slurm, Kubernetes) with a user's values.

    uv run python -m garden.deploy slurm --set nodes=2 --set dataset=data/chats.jsonl --out run/
    uv run python -m garden.deploy k8s --set image=registry.example/model-garden:cuda --out k8s/

Templates use ``{{name}}`` placeholders, so shell variables (``$SLURM_NODEID``) pass through.
Every placeholder must be filled: a missing or unknown value is a one-line ``ConfigError``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import string
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from garden.errors import ConfigError

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"
APP_COMMAND = ("uv", "run", "app.py", "--host", "0.0.0.0")
HEALTH_PATH = "/api/v1/health"
SAFE_WORD = re.compile(r"^[A-Za-z0-9_./:=@+,-]+$")
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$")
PLACEHOLDER = (
    r"\{\{(?:(?P<escaped>(?!))|(?P<named>[a-z_][a-z0-9_]*)\}\}|(?P<braced>(?!))|(?P<invalid>))"
)
Strategy = Literal["auto", "ddp", "fsdp", "deepspeed"]


class RecipeTemplate(string.Template):
    """``{{name}}`` placeholders; anything else after ``{{`` is an error."""

    delimiter = "{{"
    pattern = PLACEHOLDER  # type: ignore[assignment]  # string.Template compiles it


class TrainRun(BaseModel):
    """One fine-tuning run: what ``model-garden train`` is given on the cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "assets/datasets/garden_facts.jsonl"
    model: str | None = None
    run_name: str = "cluster-run"
    max_steps: int = Field(default=100, ge=1)
    strategy: Strategy = "ddp"
    main_process_port: int = Field(default=29500, ge=1024, le=65535)

    @field_validator("dataset", "model", "run_name")
    @classmethod
    def _one_shell_word(cls, value: str | None) -> str | None:
        if value is not None and not SAFE_WORD.match(value):
            raise ValueError("use letters, digits and . _ / : = @ + , - only (no spaces or quotes)")
        return value

    def train_args(self, processes: int, machines: int) -> list[str]:
        args = ["uv", "run", "--no-sync", "model-garden", "train", "--dataset", self.dataset]
        if self.model:
            args += ["--model", self.model]
        args += ["--name", self.run_name, "--max-steps", str(self.max_steps)]
        args += ["--strategy", self.strategy, "--num-processes", str(processes)]
        args += ["--num-machines", str(machines)]
        if processes * machines > 1:
            args += ["--backend", "trl_peft"]  # Unsloth trains in one process only
        return args


class SlurmValues(TrainRun):
    job_name: str = "model-garden"
    partition: str = "gpu"
    nodes: int = Field(default=2, ge=1)
    gpus_per_node: int = Field(default=4, ge=1)
    cpus_per_task: int = Field(default=16, ge=1)
    time_limit: str = Field(default="04:00:00", pattern=r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")
    workdir: str = "$HOME/model-garden"
    storage_root: str = "$HOME/model-garden/storage"

    @field_validator("job_name", "partition", "workdir", "storage_root")
    @classmethod
    def _no_spaces(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_./:=@+,$-]+$", value):
            raise ValueError("use letters, digits, $ and . _ / : = @ + , - only")
        return value

    def placeholders(self) -> dict[str, str]:
        values = {key: str(value) for key, value in self.model_dump().items()}
        args = self.train_args(self.gpus_per_node, self.nodes)
        args += ["--main-process-port", str(self.main_process_port)]
        return values | {"command": shlex.join(args)}


class KubernetesValues(TrainRun):
    name: str = "model-garden"
    namespace: str = "default"
    image: str = "model-garden:cuda"
    gpus: int = Field(default=1, ge=1)
    storage_size: str = Field(default="50Gi", pattern=r"^\d+(Ki|Mi|Gi|Ti)$")
    secret: str = "model-garden-auth"

    @field_validator("name", "namespace", "secret", "run_name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not DNS_LABEL.match(value):
            raise ValueError("use lower-case letters, digits and - (a DNS label)")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not SAFE_WORD.match(value):
            raise ValueError("an image reference such as registry.example/model-garden:cuda")
        return value

    def placeholders(self) -> dict[str, str]:
        values = {key: str(value) for key, value in self.model_dump().items()}
        return values | {
            "app_command": json.dumps(list(APP_COMMAND)),
            "train_command": json.dumps(self.train_args(self.gpus, 1)),
            "health_path": json.dumps(HEALTH_PATH),
        }


RECIPES: dict[str, tuple[type[SlurmValues] | type[KubernetesValues], tuple[str, ...]]] = {
    "slurm": (SlurmValues, ("slurm/train.sbatch",)),
    "k8s": (KubernetesValues, ("k8s/app.yaml", "k8s/train-job.yaml")),
}


def fill(template: str, values: Mapping[str, str], where: str) -> str:
    """Substitute every placeholder; a missing one is a ``ConfigError`` naming it."""
    recipe = RecipeTemplate(template)
    missing = sorted(set(recipe.get_identifiers()) - set(values))
    if missing or not recipe.is_valid():
        raise ConfigError(
            f"{where}: placeholder(s) {', '.join(missing) or 'malformed'} have no value; "
            "write them as {{name}} and give each a value"
        )
    return recipe.substitute(values)


def render(recipe: str, settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """The recipe's files (path under ``deploy/`` → text), with ``settings`` over the defaults."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    values_type, paths = RECIPES[recipe]
    try:
        values = values_type.model_validate(dict(settings or {}))
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "value"
        known = ", ".join(values_type.model_fields)
        raise ConfigError(f"{recipe} recipe, {field}: {error['msg']} (values: {known})") from None
    placeholders = values.placeholders()
    return {
        path: fill((DEPLOY_DIR / path).read_text(encoding="utf-8"), placeholders, path)
        for path in paths
    }


def _parse_sets(pairs: Sequence[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: write it as key=value, e.g. --set nodes=2")
        settings[key.strip()] = value
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m garden.deploy", description=__doc__)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=None, help="folder to write (default: print)")
    args = parser.parse_args(argv)
    try:
        files = render(args.recipe, _parse_sets(args.set))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, text in files.items():
        if args.out is None:
            print(f"# ---- {path}\n{text}")
            continue
        target = args.out / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
