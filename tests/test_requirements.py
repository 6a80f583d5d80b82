"""requirements.txt (what a Space installs with pip) is uv's resolution of the CPU variant, pin for
pin: checked offline against the distributions ``uv sync`` installed in this environment."""

from __future__ import annotations

import importlib.metadata as metadata
import platform
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from garden.deploy import CUDA_ONLY, SPACE_MARKERS, space_requirements

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
REGENERATE = "regenerate it: uv run python -m garden.deploy requirements (README, Development)"


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "-")):
            name, sep, version = line.partition("==")
            assert sep and version, f"requirements.txt: {line!r} is not `name==version`"
            found[canonicalize_name(name)] = version
    return found


def runtime_closure() -> set[str]:
    """The installed distributions that the project's dependencies and its `cpu` group need here,
    following each one's requirements (markers and extras evaluated for this interpreter)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    roots = [*pyproject["project"]["dependencies"], *pyproject["dependency-groups"]["cpu"]]
    # uv's overrides that drop a dependency (a marker that never holds) are never installed.
    dropped = {
        canonicalize_name(r.name)
        for r in map(Requirement, pyproject["tool"]["uv"]["override-dependencies"])
        if r.marker is not None and not r.marker.evaluate()
    }
    seen: dict[str, set[str]] = {}
    direct = [Requirement(spec) for spec in roots]
    todo = [(requirement, "") for requirement in direct]
    while todo:
        requirement, extra = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in dropped or (
            requirement.marker and not requirement.marker.evaluate({"extra": extra})
        ):
            continue
        extras = set(requirement.extras)
        if name in seen and extras <= seen[name]:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            # Not in uv's resolution either (intel-openmp's Linux wheel names
            # intel-cmplr-lib-ur, uv's lock does not); a direct dependency must be there.
            assert requirement not in direct, f"{name} is not installed: run `uv sync`"
            continue
        seen[name] = seen.get(name, set()) | extras
        for spec in dist.requires or []:
            child = Requirement(spec)
            for wanted in ("", *extras):
                if child.marker is None or child.marker.evaluate({"extra": wanted}):
                    todo.append((child, wanted))
                    break
    return set(seen)


def test_the_index_line_and_header_stay() -> None:
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert CPU_INDEX in text.splitlines()
    assert "python -m garden.deploy requirements" in text


def test_every_pin_is_the_installed_version() -> None:
    wrong = {}
    for name, version in pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        # torch 2.13.0 is installed as the PyPI build; the Space gets 2.13.0+cpu: == allows both.
        if installed == "not installed" or installed not in SpecifierSet(f"=={version}"):
            wrong[name] = f"pinned {version}, installed {installed}"
    assert wrong == {}, f"requirements.txt is stale; {REGENERATE}"


@pytest.mark.skipif(
    (platform.python_version_tuple()[:2], sys.platform, platform.machine())
    != (("3", "11"), "linux", "x86_64"),
    reason="the pins are resolved for a Space: CPython 3.11 on Linux x86_64",
)
def test_every_installed_runtime_distribution_is_pinned() -> None:
    needed = {name for name in runtime_closure() if not CUDA_ONLY.match(name)}
    pinned = set(pins())
    assert (sorted(needed - pinned), sorted(pinned - needed)) == ([], []), (
        f"(missing, extra) pins; {REGENERATE}"
    )


def test_the_generator_keeps_the_header_and_drops_what_a_space_must_not_get() -> None:
    current = "# header\n#\n--extra-index-url https://download.pytorch.org/whl/cpu\n\nold==1\n"
    exported = "\n".join(
        [
            "-e .",
            "--index-url https://pypi.org/simple",
            "Zeta_Pkg==2.0",
            "torch==2.13.0",
            "nvidia-cublas==13.1.1.3 ; sys_platform == 'linux'",
            "nvidia-ml-py==13.615.71",
            "cuda-toolkit==13.0.3.0 ; sys_platform == 'linux'",
            "triton==3.7.1 ; sys_platform == 'linux'",
            "numpy==2.3.5 ; python_full_version < '3.13'",
            "numpy==2.4.6 ; python_full_version >= '3.13'",
            "colorama==0.4.6 ; sys_platform == 'win32'",
            "llm==0.36 ; sys_platform == 'never'",
            "    # via something",
        ]
    )
    assert space_requirements(exported, current) == (
        "# header\n#\n--extra-index-url https://download.pytorch.org/whl/cpu\n\n"
        "numpy==2.3.5\nnvidia-ml-py==13.615.71\ntorch==2.13.0\nzeta-pkg==2.0\n"
    )
    assert Marker("python_version == '3.11'").evaluate(SPACE_MARKERS)
