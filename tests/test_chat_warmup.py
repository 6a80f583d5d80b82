"""Background warm-up yields the CPU to live answers: the int4 ONNX builder and a vLLM host
that starts behind another backend (``auto``) run at a lower CPU priority."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from garden.engine.serving.engine import ChatEngine
from garden.engine.serving.onnx_build import BUILD_NICE, _background_process
from garden.engine.serving.vllm_host import WARM_UP_NICE

PRINT_NICE = [sys.executable, "-c", "import os; print(os.nice(0))"]


def test_the_onnx_builder_runs_at_the_lowest_priority() -> None:
    done = subprocess.run(
        PRINT_NICE, capture_output=True, text=True, check=True, preexec_fn=_background_process
    )
    assert int(done.stdout) == min(os.nice(0) + BUILD_NICE, 19)


def test_vllm_warming_up_behind_auto_is_niced_but_vllm_asked_for_is_not(tmp_path: Path) -> None:
    auto = ChatEngine(str(tmp_path), "auto")._vllm_backend()
    named = ChatEngine(str(tmp_path), "vllm")._vllm_backend()
    assert auto.nice == WARM_UP_NICE > 0
    assert named.nice == 0


def test_only_the_auto_warm_up_builds_the_onnx_copy_in_the_background(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A copy a person waits for (``onnx`` asked for by name) is built at full priority."""
    from garden.config import Settings
    from garden.engine.serving import onnx_backend

    asked: list[bool] = []

    def record(
        base_path: Any, settings: Any, *, background: bool = False, adapter_path: Any = None
    ) -> Path:
        asked.append(background)
        raise RuntimeError("stop before building")

    monkeypatch.setattr(onnx_backend, "ensure_onnx_copy", record)
    settings = Settings(_env_file=None, storage_root=tmp_path, onnx_chat_enabled=True)
    assert onnx_backend.start_fast_backend(str(tmp_path), settings) is None
    with pytest.raises(RuntimeError):
        onnx_backend.OnnxBackend.started(str(tmp_path), settings)
    assert asked == [True, False]
