"""The CPU class and emulation every benchmark's JSON line records (``bench/benchenv.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import benchenv


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"], "amx-bf16"),
        (["avx2", "fma", "avx512f", "avx512_bf16"], "avx512-bf16"),
        (["avx2", "fma", "avx512f"], "avx512"),
        (["avx2", "fma"], "avx2-fma"),
        ([], "other"),
    ],
)
def test_the_cpu_class_follows_the_flags(flags: list[str], expected: str) -> None:
    assert benchenv.cpu_class(flags) == expected


def test_a_partial_avx2_emulation_names_the_library_left_uncapped() -> None:
    partial = benchenv.emulation({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert partial["emulated_class"] == "avx2-fma"
    assert partial["emulation_gaps"] == ["MKL (fp32 matmuls)"]
    full = benchenv.emulation(
        {
            "ATEN_CPU_CAPABILITY": "avx2",
            "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        }
    )
    assert full["emulated_class"] == "avx2-fma" and full["emulation_gaps"] == []
    assert benchenv.emulation({}) == {
        "emulating": False,
        "emulation_env": {},
        "emulated_class": None,
        "emulation_gaps": [],
    }
