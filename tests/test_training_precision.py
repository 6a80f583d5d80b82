"""Which precision a CPU run trains in: bf16 only where torch's kernels may use the CPU's bf16
instructions (none of this imports torch)."""

from __future__ import annotations

import pytest

from garden.engine.training import backends

BF16_CPU = "flags : fpu sse avx2 fma avx512f avx512_bf16\n"
AVX2_CPU = "flags : fpu sse avx2 fma\n"


def test_bf16_needs_the_instructions() -> None:
    assert backends.cpu_supports_bf16(BF16_CPU)
    assert backends.cpu_supports_bf16("flags : avx2 amx_bf16\n")
    assert not backends.cpu_supports_bf16(AVX2_CPU)


@pytest.mark.parametrize(
    ("environ", "capped"),
    [
        ({}, None),
        ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "ONEDNN_MAX_CPU_ISA=AVX2"),
        ({"DNNL_MAX_CPU_ISA": "avx512_core"}, "DNNL_MAX_CPU_ISA=avx512_core"),
        ({"ATEN_CPU_CAPABILITY": "avx2"}, "ATEN_CPU_CAPABILITY=avx2"),
        ({"ATEN_CPU_CAPABILITY": "default"}, "ATEN_CPU_CAPABILITY=default"),
        # oneDNN's DEFAULT is "no cap"; ATen's avx512 keeps the bf16 kernels.
        ({"ONEDNN_MAX_CPU_ISA": "DEFAULT", "ATEN_CPU_CAPABILITY": "avx512"}, None),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, None),
    ],
)
def test_kernels_capped_below_bf16_are_named(environ: dict[str, str], capped: str | None) -> None:
    assert backends.bf16_capped(environ) == capped


def test_auto_trains_in_fp32_where_the_kernels_are_capped(monkeypatch) -> None:
    """Emulating the AVX2 class on an AVX-512 BF16 CPU (docs/benchmarks.md) trains as that
    class does: bf16 there would be emulated, slower than fp32."""
    monkeypatch.setattr(backends, "cpu_supports_bf16", lambda: True)
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(name, raising=False)
    assert backends.choose_precision("auto", "cpu")[0] == "bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    precision, reason = backends.choose_precision("auto", "cpu")
    assert precision == "fp32" and "ONEDNN_MAX_CPU_ISA=AVX2" in reason
    assert backends.choose_precision("bf16", "cpu") == ("bf16", "requested")
    monkeypatch.setattr(backends, "cpu_supports_bf16", lambda: False)
    assert backends.choose_precision("auto", "cpu") == ("fp32", "CPU lacks native bf16: fp32")
