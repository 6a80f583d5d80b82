"""Render the cluster recipes under ``deploy/`` (Slurm, Kubernetes) with a user's values.

    uv run python -m garden.deploy slurm --set nodes=2 --set dataset=data/chats.jsonl --out run/
    uv run python -m garden.deploy k8s --set image=registry.example/model-garden:cuda --out k8s/

Templates use ``{{name}}`` placeholders, so shell variables (``$SLURM_NODEID``) pass through.
Every placeholder must be filled: a missing or unknown value is a one-line ``ConfigError``.

    uv run python -m garden.deploy requirements

writes the Space's ``requirements.txt`` from uv's resolution (see ``space_requirements``).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import string
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from garden.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = ROOT / "deploy"
REQUIREMENTS = ROOT / "requirements.txt"
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


# The Space's requirements.txt: every pin of the CPU variant's runtime ----------------------

# The project's dependencies and its `cpu` group, every transitive pin, no hashes or registry.
EXPORT_COMMAND = (
    "uv",
    "export",
    "--format",
    "requirements.txt",
    "--no-default-groups",
    "--group",
    "cpu",
    "--no-emit-project",
    "--no-hashes",
    "--no-header",
    "--no-annotate",
)
# A Space runs the app on Linux x86_64 with the README front matter's python_version.
SPACE_MARKERS = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
}
# PyPI's torch wheel pulls in NVIDIA's CUDA libraries (and Triton) even for CPU use; the Space
# installs the +cpu build from PyTorch's index, which needs none of them. nvidia-ml-py is a small
# pure-Python NVML binding that codecarbon imports: it stays.
CUDA_ONLY = re.compile(r"^(nvidia-(?!ml-py$).+|cuda-.+|triton)$")
EXPORTED_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;\s*(.+))?$")


def space_requirements(exported: str, current: str) -> str:
    """``requirements.txt`` from ``uv export`` output: ``current``'s opening comments and index
    lines kept, then one ``name==version`` a line, sorted, for what a Space's CPU install gets
    (markers evaluated for ``SPACE_MARKERS``; ``CUDA_ONLY`` packages and ``-e``/index lines out)."""
    from packaging.markers import Marker
    from packaging.utils import canonicalize_name

    preamble = []
    for line in current.splitlines():
        if line.strip() and not line.startswith(("#", "-")):
            break
        preamble.append(line)
    pins: dict[str, str] = {}
    for raw in exported.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "-")):
            continue
        match = EXPORTED_PIN.match(line)
        if match is None:
            raise ConfigError(f"uv export: {line!r} is not a `name==version` pin")
        name, version, marker = match.groups()
        name = canonicalize_name(name)
        # SPACE_MARKERS over this interpreter's environment (Marker.evaluate merges them).
        if marker and not Marker(marker).evaluate(SPACE_MARKERS):
            continue
        if CUDA_ONLY.match(name):
            continue
        if pins.setdefault(name, version) != version:
            raise ConfigError(f"uv export pins {name} twice: {pins[name]} and {version}")
    body = [f"{name}=={pins[name]}" for name in sorted(pins)]
    head = "\n".join(preamble).rstrip()
    return (f"{head}\n\n" if head else "") + "\n".join(body) + "\n"


def write_requirements(target: Path = REQUIREMENTS) -> int:
    """Run ``EXPORT_COMMAND`` in the project and write ``target``; the number of pins."""
    uv = shutil.which("uv")
    if uv is None:
        raise ConfigError("uv is not on PATH: install uv (README) and run this with `uv run`")
    exported = subprocess.run(
        [uv, *EXPORT_COMMAND[1:]], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if exported.returncode != 0:
        raise ConfigError(f"uv export failed: {exported.stderr.strip()[-500:]}")
    current = target.read_text(encoding="utf-8") if target.is_file() else ""
    text = space_requirements(exported.stdout, current)
    target.write_text(text, encoding="utf-8")
    return sum(1 for line in text.splitlines() if "==" in line and not line.startswith("#"))


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
    parser.add_argument("recipe", choices=sorted([*RECIPES, "requirements"]))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder to write (default: print); for `requirements`, the file "
        "(default: the project's requirements.txt)",
    )
    args = parser.parse_args(argv)
    try:
        if args.recipe == "requirements":
            target = args.out or REQUIREMENTS
            print(f"{target}: {write_requirements(target)} pins")
            return 0
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
