"""Background warm-up yields the CPU to live answers: the int4 ONNX builder and a vLLM host
that starts behind another backend (``auto``) run at a lower CPU priority."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
