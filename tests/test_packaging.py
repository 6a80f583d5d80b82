"""The installed environment matches the exact pins in pyproject.toml."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^;\s]+)")


def _pins() -> list[tuple[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = list(project["project"]["dependencies"])
    specs += project["dependency-groups"]["cpu"] + project["dependency-groups"]["dev"]
    pins = []
    for spec in specs:
        match = PIN.match(spec)
        assert match, f"{spec!r} in pyproject.toml is not pinned exactly with =="
        pins.append((match.group(1), match.group(2)))
    return pins


@pytest.mark.parametrize(("name", "pinned"), _pins())
def test_installed_version_matches_pin(name: str, pinned: str) -> None:
    installed = version(name)
    assert installed.split("+")[0] == pinned, f"{name}: installed {installed}, pinned {pinned}"


@pytest.mark.parametrize("name", ["llm", "llama-cpp-python"])
def test_default_model_package_brings_no_extra_runtime(name: str) -> None:
    with pytest.raises(PackageNotFoundError):
        version(name)


def test_lock_file_is_not_tracked() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "uv.lock" in ignored
    tracked = subprocess.run(
        ["git", "ls-files", "uv.lock"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout
    assert tracked.strip() == ""


def test_cli_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "garden.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("model-garden, version ")
