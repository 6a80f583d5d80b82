"""The CPU flags every kernel choice reads (``garden/engine/cpu_flags.py``; no torch)."""

from __future__ import annotations

from garden.engine.cpu_flags import first_field, has_native_bf16, parse_flags

ICE_LAKE = (
    "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor @ 2.80GHz\n"
    "flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_vbmi2\n\n"
    "processor\t: 1\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_vbmi2\n"
)


def test_the_flags_are_whole_words_of_the_flags_line() -> None:
    flags = parse_flags(ICE_LAKE)
    assert {"avx2", "fma", "avx512f", "avx512_vnni"} <= flags
    assert "avx512" not in flags  # a prefix of avx512f is not a flag
    assert "Intel(R)" not in flags  # the model name is not read as flags
    assert parse_flags("") == frozenset()


def test_native_bf16_needs_amx_or_avx512_bf16() -> None:
    assert not has_native_bf16(parse_flags(ICE_LAKE))  # AVX-512 without BF16 trains in fp32
    assert has_native_bf16(frozenset({"avx512f", "avx512_bf16"}))
    assert has_native_bf16(frozenset({"amx_bf16"}))
    assert not has_native_bf16(frozenset())


def test_the_model_name_is_the_first_processor_s() -> None:
    assert first_field(ICE_LAKE, "model name") == "Intel(R) Xeon(R) Processor @ 2.80GHz"
    assert first_field("flags\t: avx2\n", "model name") is None
