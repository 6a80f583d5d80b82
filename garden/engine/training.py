"""Fine-tuning jobs: spec, pre-launch checks, a queue, supervising threads and worker processes.

A job is a row in ``jobs``. ``JobManager.submit`` validates the spec and queues it; at most
``MAX_CONCURRENT_JOBS`` run at once. Each running job has a supervising thread in this process
that starts a worker process (multiprocessing "spawn"), reads its events from a queue and
persists them (``jobs``, ``job_metrics``, ``job_logs``). The worker trains with a backend from
``garden.engine.backends`` under a carbon meter, and writes the run's outputs under
``finetuned_models_path/<name>``. A worker that dies marks its job failed with the reason; the
app keeps going. Stop, cancel and resume work from any process through flag files and pids.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import re
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from garden.config import Settings, get_settings
from garden.engine.backends import (
    BACKENDS,
    TrainContext,
    choose_precision,
    cuda_present,
    run_backend,
    select_backend,
)
from garden.errors import (
    DatasetError,
    DiskFullError,
    GardenError,
    JobError,
    ModelLoadError,
    OutOfMemoryError,
)
from garden.models import DEFAULT_MODEL_NAME, ModelInfo, resolve_model
from garden.store import Store, get_store, new_id, now

ACTIVE_STATUSES = ("queued", "running", "stopping")
TERMINAL_STATUSES = ("completed", "stopped", "failed", "cancelled", "interrupted")
RESUMABLE_STATUSES = ("stopped", "interrupted", "failed")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
STOP_FLAG = "STOP"
CANCEL_FLAG = "CANCEL"

PRESETS: dict[str, dict[str, Any]] = {
    "Quick CPU demo": {
        "method": "lora",
        "epochs": 3.0,
        "max_steps": None,
        "learning_rate": 1e-3,
        "lr_scheduler": "cosine",
        "batch_size": 8,
        "gradient_accumulation": 1,
        "max_seq_len": 256,
        "lora_r": 16,
        "lora_alpha": 32,
        "precision": "auto",
    },
    "LoRA": {
        "method": "lora",
        "epochs": 3.0,
        "max_steps": None,
        "learning_rate": 2e-4,
        "lr_scheduler": "cosine",
        "batch_size": 8,
        "gradient_accumulation": 2,
        "max_seq_len": 1024,
        "lora_r": 16,
        "lora_alpha": 32,
        "precision": "auto",
    },
    "QLoRA": {
        "method": "qlora",
        "epochs": 3.0,
        "max_steps": None,
        "learning_rate": 2e-4,
        "lr_scheduler": "cosine",
        "batch_size": 4,
        "gradient_accumulation": 4,
        "max_seq_len": 2048,
        "lora_r": 16,
        "lora_alpha": 32,
        "precision": "auto",
    },
}


class JobSpec(BaseModel):
    """What to train and how. Stored with the job (``jobs.spec_json``)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    base_model: str = DEFAULT_MODEL_NAME
    dataset: str
    method: Literal["lora", "qlora", "full"] = "lora"
    backend: Literal["auto", "trl_peft", "unsloth"] = "auto"
    epochs: float = Field(1.0, gt=0, le=1000)
    max_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(2e-4, gt=0, le=1)
    lr_scheduler: Literal[
        "linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"
    ] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, le=1)
    batch_size: int = Field(8, ge=1, le=4096)
    gradient_accumulation: int = Field(1, ge=1, le=4096)
    max_seq_len: int = Field(512, ge=32, le=262144)
    lora_r: int = Field(16, ge=1, le=4096)
    lora_alpha: int = Field(32, ge=1, le=65536)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] = Field(default_factory=lambda: ["all-linear"])
    assistant_only_loss: bool | None = None
    packing: bool = True
    eval_steps: int | None = Field(None, ge=1)
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    checkpoint_interval: int | None = Field(None, ge=1)
    save_total_limit: int = Field(2, ge=1, le=100)
    logging_steps: int = Field(1, ge=1)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not NAME_PATTERN.match(value):
            raise ValueError(
                "use 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset_given(cls, value: str) -> str:
        if not value or not value.strip():
            raise ValueError("pick a dataset (an imported dataset id or name, or a file path)")
        return value.strip()

    @field_validator("lora_target_modules", mode="before")
    @classmethod
    def _modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value or ["all-linear"]


def parse_spec(data: JobSpec | dict[str, Any]) -> JobSpec:
    """A ``JobSpec`` from a dict, or ``JobError`` listing every bad field in plain words."""
    if isinstance(data, JobSpec):
        return data
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "spec"
            problems.append(f"{where}: {err['msg']}")
        raise JobError(
            "Invalid training settings: " + "; ".join(problems) + ".",
            hint="Fix the listed fields and start again.",
        ) from exc


@dataclass
class DatasetRef:
    id: str
    name: str
    format: str
    train_path: Path
    eval_path: Path | None
    train_rows: int = 0
    token_stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobPlan:
    """A validated spec with everything resolved; what ``submit`` stores."""

    spec: JobSpec
    model: ModelInfo
    model_path: str
    dataset: DatasetRef
    output_dir: Path
    warnings: list[str] = field(default_factory=list)


def _dataset_from_record(record: Any) -> DatasetRef:
    eval_path = Path(record.eval_path)
    return DatasetRef(
        id=record.id,
        name=record.name,
        format=record.format,
        train_path=Path(record.train_path),
        eval_path=eval_path if eval_path.is_file() and eval_path.stat().st_size > 0 else None,
        train_rows=int(record.train_rows or 0),
        token_stats=dict(record.token_stats or {}),
    )


def resolve_dataset(ref: str, settings: Settings) -> DatasetRef:
    """An imported dataset (id or name), or a file that is imported on the way."""
    from garden.data import get_dataset, import_dataset

    path = Path(ref).expanduser()
    if path.is_file():
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-") or "dataset"
        record = import_dataset(path, f"{name}-{int(time.time())}", settings=settings)
        return _dataset_from_record(record)
    if path.is_dir() and (path / "train.jsonl").is_file():
        return DatasetRef(
            id=path.name,
            name=path.name,
            format=_sniff_format(path / "train.jsonl"),
            train_path=path / "train.jsonl",
            eval_path=path / "eval.jsonl" if (path / "eval.jsonl").is_file() else None,
        )
    looks_like_file = path.suffix.lower() in (".jsonl", ".json", ".csv", ".tsv", ".parquet")
    if looks_like_file and not path.exists():
        raise DatasetError(
            f"Dataset file {path} does not exist.",
            hint="Check the path, or pass the id or name of an imported dataset.",
        )
    return _dataset_from_record(get_dataset(ref, settings))


def _sniff_format(path: Path) -> str:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                return "text" if "text" in json.loads(line) else "openai"
    raise DatasetError(f"{path} is empty.", hint="Import a dataset with at least one row.")


def _model_weight_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.safetensors")) or sum(
        p.stat().st_size for p in path.glob("*.bin")
    )


def plan_job(data: JobSpec | dict[str, Any], settings: Settings | None = None) -> JobPlan:
    """Check a spec before launch: model, dataset, lengths, device, disk. Raises typed errors."""
    settings = settings or get_settings()
    spec = parse_spec(data)
    warnings: list[str] = []
    cuda = cuda_present()
    if spec.method == "qlora" and not cuda:
        raise JobError(
            "QLoRA (4-bit) needs a CUDA GPU, and none was found.",
            hint="Choose LoRA: it trains this model on the CPU.",
        )
    if spec.precision == "fp16" and not cuda:
        raise JobError(
            "fp16 mixed precision needs a CUDA GPU.",
            hint="Choose precision 'auto' (bf16 where the CPU supports it) or 'fp32'.",
        )
    if spec.lora_alpha < spec.lora_r / 16:
        warnings.append("LoRA alpha is far below r: updates will be tiny.")
    model = resolve_model(spec.base_model, settings)
    if model.kind == "hub":
        model_path = model.id
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            warnings.append(f"{model.id} is a hub id and the hub is offline: it must be cached.")
    else:
        model_path = str(model.path)
        if not (Path(model_path) / "config.json").is_file():
            raise ModelLoadError(
                f"{model.name} has only a LoRA adapter, no full model to train from.",
                hint="Resume or rerun that job so it finishes and saves its merged model.",
            )
    dataset = resolve_dataset(spec.dataset, settings)
    if dataset.format == "text" and spec.assistant_only_loss:
        raise JobError(
            f"Dataset {dataset.name} is plain text, so it has no assistant turns to train on.",
            hint="Turn off 'loss on assistant turns only' for text datasets.",
        )
    updates: dict[str, Any] = {}
    if spec.assistant_only_loss is None:
        updates["assistant_only_loss"] = dataset.format != "text"
    if spec.checkpoint_interval is None:
        updates["checkpoint_interval"] = settings.checkpoint_interval
    if spec.name is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        updates["name"] = f"{Path(model.name).name}-{dataset.name}-{stamp}"[:80]
        updates["name"] = re.sub(r"[^A-Za-z0-9._-]+", "-", updates["name"]).strip("-.")
    spec = spec.model_copy(update=updates)
    assert spec.name is not None
    _check_lengths(spec, dataset, warnings)
    output_dir = settings.finetuned_models_path / spec.name
    if output_dir.exists():
        raise JobError(
            f"A fine-tuned model named {spec.name!r} already exists ({output_dir}).",
            hint="Pick another run name, or delete the old model folder.",
        )
    busy = get_store(settings.db_path).query(
        "SELECT id FROM jobs WHERE name = ? AND status IN ('queued','running','stopping')",
        (spec.name,),
    )
    if busy:
        raise JobError(
            f"Job {busy[0]['id']} with the name {spec.name!r} is already queued or running.",
            hint="Pick another run name.",
        )
    _check_disk(spec, model_path, settings)
    if cuda:
        _check_gpu_memory(spec, model_path)
    return JobPlan(spec, model, model_path, dataset, output_dir, warnings)


def _check_lengths(spec: JobSpec, dataset: DatasetRef, warnings: list[str]) -> None:
    stats = dataset.token_stats or {}
    longest, median = stats.get("max"), stats.get("median")
    if median is not None and median > spec.max_seq_len:
        raise JobError(
            f"Max sequence length {spec.max_seq_len} is shorter than half the examples of "
            f"{dataset.name} (median {median} tokens): most answers would be cut off.",
            hint=f"Raise max sequence length to at least {stats.get('p95', longest)}.",
        )
    if longest is not None and longest > spec.max_seq_len:
        warnings.append(
            f"Some examples are longer than {spec.max_seq_len} tokens (longest {longest}); "
            "they will be truncated."
        )


def _check_disk(spec: JobSpec, model_path: str, settings: Settings) -> None:
    local = Path(model_path)
    weights = _model_weight_bytes(local) if local.is_dir() else 0
    checkpoints = (3 * weights if spec.method == "full" else weights // 20) * spec.save_total_limit
    needed = weights + checkpoints + 50_000_000
    settings.finetuned_models_path.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(settings.finetuned_models_path).free
    if free < needed:
        raise DiskFullError(
            f"Not enough disk space: this run needs about {needed / 1e9:.1f} GB, "
            f"{free / 1e9:.1f} GB is free under {settings.models_path}.",
            hint="Free some space (delete old runs or checkpoints) or point MODELS_DIR elsewhere.",
        )


def estimate_gpu_bytes(spec: JobSpec, weight_bytes: int, fp32_weights: bool = True) -> int:
    """A rough peak-memory estimate for training on a GPU (weights, optimizer, activations)."""
    params = weight_bytes / (4 if fp32_weights else 2)
    if spec.method == "full":
        state = params * 16  # fp32 weights, grads and two Adam moments
    elif spec.method == "qlora":
        state = params * 0.6
    else:
        state = params * 2
    tokens = spec.batch_size * spec.max_seq_len
    activations = tokens * (params**0.5) * 60  # grows with width x depth; generous constant
    return int(state + activations + 1.5e9)


def _gpu_total_bytes() -> int | None:
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(out.split()[0]) * 1024 * 1024
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _check_gpu_memory(spec: JobSpec, model_path: str) -> None:
    local = Path(model_path)
    total = _gpu_total_bytes()
    if total is None or not local.is_dir():
        return
    needed = estimate_gpu_bytes(spec, _model_weight_bytes(local))
    if needed > total:
        smaller = "QLoRA" if spec.method != "qlora" else "a smaller batch or sequence length"
        raise OutOfMemoryError(
            f"This run needs about {needed / 2**30:.1f} GiB of GPU memory and the GPU has "
            f"{total / 2**30:.1f} GiB.",
            hint=f"Lower the batch size or max sequence length, or use {smaller}.",
        )


# ----------------------------------------------------------------------------- worker process


def classify_error(exc: BaseException) -> tuple[str, str, str | None]:
    """``(kind, message, hint)`` for a failure inside the worker."""
    if isinstance(exc, GardenError):
        return exc.kind, exc.message, exc.hint
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    if isinstance(exc, MemoryError) or "out of memory" in lowered or "outofmemory" in lowered:
        oom = OutOfMemoryError(
            "Training ran out of memory.",
            hint="Lower the batch size or max sequence length, use LoRA instead of full "
            "fine-tuning, or QLoRA on a GPU.",
        )
        return oom.kind, oom.message, oom.hint
    if isinstance(exc, OSError) and exc.errno == 28:
        return "disk_full", f"The disk is full ({exc}).", "Free some space and resume the job."
    if isinstance(exc, (KeyError, ValueError)) and ("messages" in lowered or "token" in lowered):
        return "bad_data", text, "Check the dataset in the Data tab and import it again."
    return "error", text, "See the job log for details."


def _watch_parent(flags_dir: Path) -> None:
    """If the app process dies, ask the training loop to save and stop (then exit anyway)."""
    parent = os.getppid()
    while True:
        time.sleep(2.0)
        if os.getppid() != parent:
            (flags_dir / STOP_FLAG).touch()
            time.sleep(180.0)
            os._exit(3)


def _redirect_output(log_file: Path) -> None:
    """Send the libraries' prints (and C-level output) to the job's log file, not the terminal."""
    import sys

    log_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def worker_main(payload: dict[str, Any], events: Any) -> None:
    """Entry of the worker process: train one run of a job and report through ``events``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    job_id = payload["job_id"]
    flags_dir = Path(payload["checkpoint_dir"])

    def emit(event: dict[str, Any]) -> None:
        events.put(event)

    threading.Thread(target=_watch_parent, args=(flags_dir,), daemon=True).start()
    meter = None
    try:
        _redirect_output(Path(payload["log_file"]))
        spec = payload["spec"]
        settings: Settings = payload["settings"]
        backend, reason = select_backend(spec["backend"], spec["method"])
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if spec["method"] == "qlora" and device != "cuda":
            raise JobError("QLoRA needs a CUDA GPU.", hint="Choose LoRA on the CPU.")
        precision, precision_reason = choose_precision(spec["precision"], device)
        if device == "cpu":
            torch.set_num_threads(_physical_cores())
        emit(
            {
                "type": "started",
                "backend": backend,
                "backend_reason": reason,
                "device": device,
                "precision": precision,
                "pid": os.getpid(),
            }
        )
        emit(
            {
                "type": "log",
                "level": "INFO",
                "message": f"Backend {backend} ({reason}); device {device}; precision "
                f"{precision} ({precision_reason}); {torch.get_num_threads()} torch threads",
            }
        )
        prior_kwh, prior_kg = payload.get("prior_energy_kwh", 0.0), payload.get("prior_kg", 0.0)
        meter = _start_meter(job_id, spec["name"], settings, emit)

        def carbon() -> tuple[float | None, float | None]:
            if meter is None or not getattr(meter, "available", False):
                return None, None
            reading = meter.snapshot()
            return prior_kwh + reading.energy_kwh, prior_kg + reading.emissions_kg

        ctx = TrainContext(
            job_id=job_id,
            spec=spec,
            model_path=payload["model_path"],
            train_path=Path(payload["train_path"]),
            eval_path=Path(payload["eval_path"]) if payload.get("eval_path") else None,
            data_format=payload["data_format"],
            output_dir=Path(payload["output_dir"]),
            checkpoint_dir=flags_dir,
            resume_from=Path(payload["resume_from"]) if payload.get("resume_from") else None,
            device=device,
            precision=precision,
            emit=emit,
            should_stop=lambda: (flags_dir / STOP_FLAG).exists(),
            carbon=carbon,
        )
        outcome = run_backend(backend, ctx)
        energy_kwh, emissions_kg = carbon()
        if meter is not None:
            record = meter.stop()
            meter = None
            if record is not None and getattr(record, "energy_kwh", None) is not None:
                energy_kwh = prior_kwh + record.energy_kwh
                emissions_kg = prior_kg + record.emissions_kg
        result = {
            "first_loss": outcome.first_loss,
            "final_loss": outcome.final_loss,
            "final_eval_loss": outcome.final_eval_loss,
            "steps": outcome.steps,
            "train_tokens": outcome.train_tokens,
            "train_seconds": round(outcome.train_seconds, 3),
            "tokens_per_second": round(outcome.tokens_per_second, 2),
            "energy_kwh": energy_kwh,
            "emissions_kg": emissions_kg,
            "output_dir": payload["output_dir"],
            "adapter_dir": str(outcome.adapter_dir) if outcome.adapter_dir else None,
            "merged": outcome.merged_dir is not None,
            "backend": backend,
            "backend_reason": reason,
            "device": device,
            "precision": precision,
        }
        write_run_files(payload, result, stopped=outcome.stopped)
        emit({"type": "done", "status": "stopped" if outcome.stopped else "completed", **result})
    except BaseException as exc:
        kind, message, hint = classify_error(exc)
        emit({"type": "log", "level": "ERROR", "message": traceback.format_exc()[-4000:]})
        emit({"type": "failed", "error_kind": kind, "error": message, "hint": hint})
    finally:
        if meter is not None:
            with contextlib.suppress(Exception):
                meter.stop()
        events.close()
        events.join_thread()


def _start_meter(job_id: str, name: str, settings: Settings, emit: Callable) -> Any:
    try:
        from garden.engine.carbon import CarbonMeter
    except ImportError:
        emit({"type": "log", "level": "WARNING", "message": "Carbon tracking is not available"})
        return None
    meter = CarbonMeter(kind="training", ref_id=job_id, label=name, settings=settings)
    meter.start()
    if not meter.available:
        emit(
            {
                "type": "log",
                "level": "WARNING",
                "message": f"Carbon tracking unavailable: {meter.unavailable_reason}",
            }
        )
    else:
        emit({"type": "carbon", "emission_id": meter.emission_id})
    return meter


def write_run_files(payload: dict[str, Any], result: dict[str, Any], *, stopped: bool) -> None:
    """``garden.json``, ``training_config.json`` and the model card next to the weights."""
    out = Path(payload["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    spec = payload["spec"]
    meta = {
        "base_model": payload["model_path"],
        "base_model_id": payload["model_id"],
        "job_id": payload["job_id"],
        "dataset_id": payload["dataset_id"],
        "dataset_name": payload["dataset_name"],
        "method": spec["method"],
        "hyperparameters": spec,
        "final_loss": result["final_loss"],
        "final_eval_loss": result["final_eval_loss"],
        "first_loss": result["first_loss"],
        "steps": result["steps"],
        "energy_kwh": result["energy_kwh"],
        "emissions_kg": result["emissions_kg"],
        "backend": result["backend"],
        "precision": result["precision"],
        "status": "stopped" if stopped else "completed",
        "created_at": now(),
    }
    (out / "garden.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    config = {
        "spec": spec,
        "backend": result["backend"],
        "device": result["device"],
        "precision": result["precision"],
    }
    (out / "training_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (out / "README.md").write_text(model_card(meta), encoding="utf-8")


def _fmt(value: Any, pattern: str = "{:.4f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def model_card(meta: dict[str, Any]) -> str:
    spec = meta["hyperparameters"]
    rows = "\n".join(
        f"| {key} | {spec[key]} |"
        for key in (
            "method",
            "epochs",
            "max_steps",
            "learning_rate",
            "lr_scheduler",
            "batch_size",
            "gradient_accumulation",
            "max_seq_len",
            "lora_r",
            "lora_alpha",
            "lora_dropout",
            "seed",
        )
    )
    energy = meta["energy_kwh"]
    co2 = meta["emissions_kg"]
    return f"""---
base_model: {meta["base_model_id"]}
library_name: peft
tags: [model-garden, {spec["method"]}, sft]
---
# {spec["name"]}

Fine-tuned with Model Garden from **{meta["base_model_id"]}** on dataset
**{meta["dataset_name"]}** (`{meta["dataset_id"]}`), job `{meta["job_id"]}`
({meta["status"]}, {meta["steps"]} steps, backend {meta["backend"]}, {meta["precision"]}).

| result | value |
|---|---|
| first train loss | {_fmt(meta["first_loss"])} |
| final train loss | {_fmt(meta["final_loss"])} |
| final eval loss | {_fmt(meta["final_eval_loss"])} |
| energy | {_fmt(energy * 1000 if energy is not None else None, "{:.3f}")} Wh |
| CO₂ | {_fmt(co2 * 1000 if co2 is not None else None, "{:.3f}")} g |

| hyperparameter | value |
|---|---|
{rows}

Files: `adapter/` (LoRA adapter), merged weights (`model.safetensors`), `training_config.json`,
`metrics.jsonl`.
"""


# ----------------------------------------------------------------------------- job manager


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    if not checkpoint_dir.is_dir():
        return None
    found = []
    for entry in checkpoint_dir.glob("checkpoint-*"):
        suffix = entry.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and (entry / "trainer_state.json").is_file():
            found.append((int(suffix), entry))
    return max(found)[1] if found else None


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class JobManager:
    """Process-wide queue and supervisor of training jobs (use ``get_job_manager``)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.settings.ensure_storage()
        self.store: Store = get_store(self.settings.db_path)
        self._lock = threading.RLock()
        self._threads: dict[str, threading.Thread] = {}
        self._procs: dict[str, Any] = {}
        self._poller: threading.Thread | None = None
        self.recovered = self.recover()

    # --- queries ---------------------------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any]:
        row = self.store.get("jobs", job_id)
        if row is None:
            raise JobError(
                f"Unknown job {job_id!r}.", hint="Run `model-garden jobs list` to see job ids."
            )
        return row

    def list(self, limit: int = 100, status: str | None = None) -> list[dict[str, Any]]:
        where = {"status": status} if status else None
        return self.store.list("jobs", where=where, order_by="created_at DESC", limit=limit)

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        return self.store.query(
            "SELECT * FROM job_metrics WHERE job_id = ? ORDER BY step, id", (job_id,)
        )

    def logs(self, job_id: str, after_id: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        rows = self.store.query(
            "SELECT * FROM job_logs WHERE job_id = ? AND id > ? ORDER BY id DESC LIMIT ?",
            (job_id, after_id, limit),
        )
        return rows[::-1]

    def active_job(self) -> dict[str, Any] | None:
        """The most recent running (or else queued) job, for views that follow one live."""
        for status in ("running", "stopping", "queued"):
            rows = self.list(limit=1, status=status)
            if rows:
                return rows[0]
        return None

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.5) -> dict[str, Any]:
        """Block until the job ends (or ``timeout`` seconds pass); returns its row."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = self.get(job_id)
            if row["status"] in TERMINAL_STATUSES:
                thread = self._threads.get(job_id)
                if thread is not None:
                    thread.join(timeout=10)
                return self.get(job_id)
            if deadline is not None and time.monotonic() > deadline:
                return row
            time.sleep(poll)

    # --- commands --------------------------------------------------------------------------

    def submit(self, data: JobSpec | dict[str, Any]) -> str:
        """Validate and queue a job; returns its id. Raises typed errors for bad specs."""
        plan = plan_job(data, self.settings)
        job_id = new_id("job")
        checkpoint_dir = self.settings.checkpoints_path / job_id
        self.store.insert(
            "jobs",
            {
                "id": job_id,
                "name": plan.spec.name,
                "kind": "train",
                "status": "queued",
                "spec_json": plan.spec.model_dump(),
                "progress_json": {
                    "step": 0,
                    "model_path": plan.model_path,
                    "model_id": plan.model.id,
                    "dataset_id": plan.dataset.id,
                    "dataset_name": plan.dataset.name,
                    "data_format": plan.dataset.format,
                    "train_path": str(plan.dataset.train_path),
                    "eval_path": str(plan.dataset.eval_path) if plan.dataset.eval_path else None,
                },
                "output_dir": str(plan.output_dir),
                "checkpoint_dir": str(checkpoint_dir),
                "owner_pid": os.getpid(),
                "created_at": now(),
            },
        )
        self._log(job_id, f"Queued {plan.spec.name} ({plan.spec.method} on {plan.model.name})")
        for warning in plan.warnings:
            self._log(job_id, warning, "WARNING")
        self._schedule()
        return job_id

    def stop(self, job_id: str) -> dict[str, Any]:
        """Graceful stop: the worker saves a checkpoint and the adapter, then ends 'stopped'."""
        row = self.get(job_id)
        if row["status"] == "queued":
            self.store.update("jobs", job_id, {"status": "stopped", "finished_at": now()})
            self._log(job_id, "Stopped before it started")
            return self.get(job_id)
        if row["status"] not in ("running", "stopping"):
            raise JobError(
                f"Job {job_id} is {row['status']}, not running.", hint="Only running jobs stop."
            )
        flags = Path(row["checkpoint_dir"])
        flags.mkdir(parents=True, exist_ok=True)
        (flags / STOP_FLAG).touch()
        self.store.update("jobs", job_id, {"status": "stopping"})
        self._log(job_id, "Stop requested: finishing the current step and saving a checkpoint")
        return self.get(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Hard stop: kill the worker now; nothing more is saved."""
        row = self.get(job_id)
        if row["status"] in TERMINAL_STATUSES:
            raise JobError(f"Job {job_id} already ended ({row['status']}).")
        flags = Path(row["checkpoint_dir"])
        flags.mkdir(parents=True, exist_ok=True)
        (flags / CANCEL_FLAG).touch()
        if row["status"] == "queued":
            self.store.update("jobs", job_id, {"status": "cancelled", "finished_at": now()})
        else:
            proc = self._procs.get(job_id)
            if proc is not None:
                proc.kill()
            elif _pid_alive(row["pid"]):
                os.kill(row["pid"], signal.SIGKILL)
            else:
                self.store.update("jobs", job_id, {"status": "cancelled", "finished_at": now()})
        self._log(job_id, "Cancelled", "WARNING")
        return self.get(job_id)

    def resume(self, job_id: str) -> dict[str, Any]:
        """Queue a stopped, interrupted or failed job again; it continues from its checkpoint."""
        row = self.get(job_id)
        if row["status"] not in RESUMABLE_STATUSES:
            raise JobError(
                f"Job {job_id} is {row['status']}; only stopped, interrupted or failed jobs resume.",
                hint="Start a new run instead." if row["status"] == "completed" else None,
            )
        checkpoint = last_checkpoint(Path(row["checkpoint_dir"]))
        progress = row.get("progress_json") or {}
        progress["resume_from"] = str(checkpoint) if checkpoint else None
        self.store.update(
            "jobs",
            job_id,
            {
                "status": "queued",
                "owner_pid": os.getpid(),
                "error": None,
                "error_kind": None,
                "finished_at": None,
                "progress_json": progress,
            },
        )
        where = f"checkpoint {checkpoint.name}" if checkpoint else "the start (no checkpoint yet)"
        self._log(job_id, f"Resume queued from {where}")
        self._schedule()
        return self.get(job_id)

    def recover(self) -> list[str]:
        """Mark jobs left active by a dead process 'interrupted' (they can be resumed)."""
        marked = []
        me = os.getpid()
        for row in self.store.query(
            "SELECT * FROM jobs WHERE status IN ('queued','running','stopping')"
        ):
            owner = row.get("owner_pid")
            if owner and owner != me and _pid_alive(owner):
                continue
            if owner == me and row["id"] in self._threads:
                continue
            if row["status"] == "queued" and owner == me:
                continue
            if _pid_alive(row["pid"]) and row["status"] != "queued":
                with contextlib.suppress(OSError):
                    Path(row["checkpoint_dir"], STOP_FLAG).touch()
            self.store.update(
                "jobs",
                row["id"],
                {
                    "status": "interrupted",
                    "error": "The app stopped while this job was active.",
                    "error_kind": "interrupted",
                    "finished_at": now(),
                },
            )
            self._log(row["id"], "Interrupted: the app stopped; resume to continue", "WARNING")
            marked.append(row["id"])
        return marked

    # --- internals -------------------------------------------------------------------------

    def _log(self, job_id: str, message: str, level: str = "INFO") -> None:
        self.store.insert(
            "job_logs", {"job_id": job_id, "ts": now(), "level": level, "message": message}
        )

    def _running_count(self) -> int:
        rows = self.store.query(
            "SELECT id, owner_pid FROM jobs WHERE status IN ('running','stopping')"
        )
        return sum(1 for r in rows if r["owner_pid"] == os.getpid() or _pid_alive(r["owner_pid"]))

    def _schedule(self) -> None:
        with self._lock:
            queued = self.store.query(
                "SELECT id FROM jobs WHERE status = 'queued' AND owner_pid = ? ORDER BY created_at",
                (os.getpid(),),
            )
            slots = self.settings.max_concurrent_jobs - self._running_count()
            for row in queued[: max(0, slots)]:
                self._start(row["id"])
            if len(queued) > max(0, slots):
                self._ensure_poller()

    def _ensure_poller(self) -> None:
        if self._poller is not None and self._poller.is_alive():
            return

        def poll() -> None:
            while True:
                time.sleep(2.0)
                left = self.store.query(
                    "SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued' AND owner_pid = ?",
                    (os.getpid(),),
                )[0]["n"]
                if not left:
                    return
                self._schedule()

        self._poller = threading.Thread(target=poll, name="garden-job-queue", daemon=True)
        self._poller.start()

    def _start(self, job_id: str) -> None:
        row = self.get(job_id)
        flags = Path(row["checkpoint_dir"])
        flags.mkdir(parents=True, exist_ok=True)
        for flag in (STOP_FLAG, CANCEL_FLAG):
            (flags / flag).unlink(missing_ok=True)
        self.store.update(
            "jobs",
            job_id,
            {"status": "running", "started_at": row["started_at"] or now(), "pid": None},
        )
        thread = threading.Thread(
            target=self._supervise, args=(job_id,), name=f"garden-job-{job_id}", daemon=True
        )
        self._threads[job_id] = thread
        thread.start()

    def _payload(self, row: dict[str, Any]) -> dict[str, Any]:
        progress = row.get("progress_json") or {}
        result = row.get("result_json") or {}
        return {
            "job_id": row["id"],
            "spec": row["spec_json"],
            "settings": self.settings,
            "model_path": progress["model_path"],
            "model_id": progress["model_id"],
            "dataset_id": progress["dataset_id"],
            "dataset_name": progress["dataset_name"],
            "data_format": progress["data_format"],
            "train_path": progress["train_path"],
            "eval_path": progress.get("eval_path"),
            "output_dir": row["output_dir"],
            "checkpoint_dir": row["checkpoint_dir"],
            "log_file": str(self.settings.logs_path / f"{row['id']}.log"),
            "resume_from": progress.get("resume_from"),
            "prior_energy_kwh": progress.get("energy_kwh") or result.get("energy_kwh") or 0.0,
            "prior_kg": progress.get("emissions_kg") or result.get("emissions_kg") or 0.0,
        }

    def _supervise(self, job_id: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        final: dict[str, Any] | None = None
        proc = None
        try:
            row = self.get(job_id)
            payload = self._payload(row)
            proc = ctx.Process(
                target=worker_main, args=(payload, events), name=f"garden-train-{job_id}"
            )
            proc.daemon = True
            proc.start()
            self._procs[job_id] = proc
            self.store.update("jobs", job_id, {"pid": proc.pid})
            self._log(
                job_id, f"Worker process {proc.pid} started (raw output: {payload['log_file']})"
            )
            while True:
                try:
                    event = events.get(timeout=0.5)
                except queue.Empty:
                    if not proc.is_alive():
                        break
                    continue
                except (EOFError, OSError):
                    break
                if event.get("type") in ("done", "failed"):
                    final = event
                self._handle(job_id, event)
            proc.join(timeout=30)
            if final is None:
                self._died(job_id, proc.exitcode)
        except Exception as exc:  # the supervisor itself must never take the app down
            self.store.update(
                "jobs",
                job_id,
                {
                    "status": "failed",
                    "error": f"Supervisor error: {exc}",
                    "error_kind": "error",
                    "finished_at": now(),
                },
            )
            if proc is not None and proc.is_alive():
                proc.kill()
        finally:
            self._procs.pop(job_id, None)
            self._threads.pop(job_id, None)
            with contextlib.suppress(Exception):
                events.close()
            self._schedule()

    def _died(self, job_id: str, exitcode: int | None) -> None:
        row = self.get(job_id)
        cancelled = Path(row["checkpoint_dir"], CANCEL_FLAG).exists()
        if exitcode is not None and exitcode < 0:
            how = f"killed by {_signal_name(exitcode)}"
        else:
            how = f"exited with code {exitcode}"
        if cancelled:
            fields = {"status": "cancelled", "error": f"Cancelled (worker {how})"}
            fields["error_kind"] = "cancelled"
        else:
            hint = (
                " It was probably out of memory (the kernel OOM killer) or killed by someone;"
                " try a smaller batch size or max sequence length, then resume."
                if exitcode == -signal.SIGKILL
                else " See the job log; resume to continue from the last checkpoint."
            )
            fields = {
                "status": "failed",
                "error": f"The training worker process died ({how}).{hint}",
                "error_kind": "killed" if exitcode and exitcode < 0 else "crash",
            }
        fields["finished_at"] = now()
        self.store.update("jobs", job_id, fields)
        self._log(job_id, fields["error"], "ERROR" if fields["status"] == "failed" else "WARNING")

    def _handle(self, job_id: str, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "log":
            self._log(job_id, str(event.get("message", "")), str(event.get("level", "INFO")))
        elif kind == "started":
            self.store.update(
                "jobs",
                job_id,
                {
                    "backend": event["backend"],
                    "backend_reason": event["backend_reason"],
                    "device": f"{event['device']} ({event['precision']})",
                    "pid": event["pid"],
                },
            )
        elif kind in ("progress", "metrics", "carbon"):
            row = self.get(job_id)
            progress = row.get("progress_json") or {}
            progress.update({k: v for k, v in event.items() if k != "type"})
            progress["updated_at"] = now()
            self.store.update("jobs", job_id, {"progress_json": progress})
            if kind == "metrics":
                extra = {k: event.get(k) for k in ("eta_s", "train_tokens", "total_steps")}
                self.store.insert(
                    "job_metrics",
                    {
                        "job_id": job_id,
                        "ts": now(),
                        "step": int(event.get("step", 0)),
                        "epoch": event.get("epoch"),
                        "loss": event.get("loss"),
                        "eval_loss": event.get("eval_loss"),
                        "learning_rate": event.get("learning_rate"),
                        "grad_norm": event.get("grad_norm"),
                        "tokens_per_second": event.get("tokens_per_second"),
                        "energy_kwh": event.get("energy_kwh"),
                        "emissions_kg": event.get("emissions_kg"),
                        "data_json": extra,
                    },
                )
        elif kind == "done":
            result = {k: v for k, v in event.items() if k not in ("type", "status")}
            row = self.get(job_id)
            progress = row.get("progress_json") or {}
            progress.update(
                {
                    "step": result["steps"],
                    "energy_kwh": result["energy_kwh"],
                    "emissions_kg": result["emissions_kg"],
                    "eta_s": 0.0,
                }
            )
            self.store.update(
                "jobs",
                job_id,
                {
                    "status": event["status"],
                    "result_json": result,
                    "progress_json": progress,
                    "finished_at": now(),
                },
            )
            self._log(job_id, f"Job {event['status']} at step {result['steps']}")
        elif kind == "failed":
            hint = event.get("hint")
            error = event["error"] + (f" {hint}" if hint else "")
            self.store.update(
                "jobs",
                job_id,
                {
                    "status": "failed",
                    "error": error,
                    "error_kind": event.get("error_kind"),
                    "finished_at": now(),
                },
            )
            self._log(job_id, f"Failed: {error}", "ERROR")


_managers: dict[Path, JobManager] = {}
_managers_lock = threading.Lock()


def get_job_manager(settings: Settings | None = None) -> JobManager:
    """The process-wide job manager for ``settings`` (one per database)."""
    settings = settings or get_settings()
    key = settings.db_path
    with _managers_lock:
        if key not in _managers:
            _managers[key] = JobManager(settings)
        return _managers[key]


__all__ = [
    "ACTIVE_STATUSES",
    "BACKENDS",
    "PRESETS",
    "RESUMABLE_STATUSES",
    "TERMINAL_STATUSES",
    "JobManager",
    "JobPlan",
    "JobSpec",
    "get_job_manager",
    "last_checkpoint",
    "parse_spec",
    "plan_job",
]
