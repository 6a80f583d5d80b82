"""Planning a job before launch: resolve the model and dataset, check lengths, disk and GPU memory."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from garden.config import Settings, get_settings
from garden.data.kinds import OBJECTIVES_BY_KIND, DatasetKind, row_kind
from garden.engine.training import int8_frozen
from garden.engine.training.backends import choose_precision, cuda_present
from garden.engine.training.compiled_layers import cpp_compiler
from garden.engine.training.distributed import Layout, plan_layout
from garden.engine.training.memory_plan import MemoryPlan, plan_cpu_memory
from garden.engine.training.micro_batch import GB, model_config
from garden.engine.training.queries import get_job
from garden.engine.training.records import PlannedRun
from garden.engine.training.spec import ACTIVE_STATUSES, JobSpec, parse_spec
from garden.errors import DatasetError, DiskFullError, JobError, ModelLoadError, OutOfMemoryError
from garden.hub_weights import check_download
from garden.models import ModelInfo, resolve_model
from garden.store import get_store


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
    layout: Layout = field(default_factory=lambda: Layout("single", 1, 1, "cpu"))
    notes: list[str] = field(default_factory=list)  # how it was planned, for the job's log

    def layout_line(self) -> str | None:
        """How the run is spread over processes, with its global batch; None for one process."""
        layout, spec = self.layout, self.spec
        if layout.world_size == 1:
            return None
        return (
            f"{layout.strategy.upper()} on {layout.device}: {layout.num_processes} process(es) "
            f"per machine x {layout.num_machines} machine(s); global batch = {spec.batch_size} "
            f"per process x {layout.world_size} x {spec.gradient_accumulation} accumulation = "
            f"{spec.batch_size * layout.world_size * spec.gradient_accumulation} examples per step"
        )

    def planned_run(self) -> PlannedRun:
        """What the job row keeps of this plan (``jobs.plan_json``)."""
        eval_path = self.dataset.eval_path
        return PlannedRun(
            model_id=self.model.id,
            model_path=self.model_path,
            train_path=str(self.dataset.train_path),
            eval_path=str(eval_path) if eval_path else None,
            dataset_id=self.dataset.id,
            dataset_name=self.dataset.name,
            data_format=self.dataset.format,
            strategy=self.layout.strategy,
            num_processes=self.layout.num_processes,
            num_machines=self.layout.num_machines,
            global_batch=self.spec.batch_size
            * self.layout.world_size
            * self.spec.gradient_accumulation,
        )


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
        record = import_dataset(path, _free_import_name(path, settings), settings=settings)
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


def _free_import_name(path: Path, settings: Settings) -> str:
    """``STEM-<unix time>`` for a dataset file a run imports, with ``-2``, ``-3`` … when a run
    started in the same second took it."""
    from garden.data.catalog import check_name

    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-")[:80] or "dataset"
    base = f"{stem}-{int(time.time())}"
    for number in range(1, 100):
        name = base if number == 1 else f"{base}-{number}"
        try:
            return check_name(name, settings)
        except DatasetError:
            continue
    return base  # the import itself then says the name is taken


def _first_row(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                if isinstance(row, dict):
                    return row
                break
    raise DatasetError(f"{path} is empty.", hint="Import a dataset with at least one row.")


def _sniff_format(path: Path) -> str:
    kind = row_kind(_first_row(path))
    return "openai" if kind == "chat" else kind


KIND_NAMES: dict[DatasetKind, str] = {
    "chat": "chat data",
    "text": "plain text",
    "preference": "preference pairs (prompt/chosen/rejected)",
    "feedback": "answers labelled good or bad (prompt/completion/label)",
}
OBJECTIVE_NEEDS = {
    "sft": "chat or text rows",
    "dpo": KIND_NAMES["preference"],
    "orpo": KIND_NAMES["preference"],
    "kto": KIND_NAMES["feedback"],
    "grpo": "chat or text rows (their user turns are the prompts)",
}


def dataset_kind(dataset: DatasetRef) -> DatasetKind:
    """The kind of a dataset's processed rows, by its first training row."""
    return row_kind(_first_row(dataset.train_path))


def _check_objective(spec: JobSpec, dataset: DatasetRef) -> None:
    """The objective must fit the dataset's kind of rows, and run in one process."""
    kind = dataset_kind(dataset)
    fits = OBJECTIVES_BY_KIND[kind]
    objective = spec.objective.upper()
    if spec.objective not in fits:
        raise JobError(
            f"{objective} needs {OBJECTIVE_NEEDS[spec.objective]}; dataset {dataset.name} is "
            f"{KIND_NAMES[kind]}.",
            hint=f"Import a dataset of that kind, or choose {' or '.join(fits).upper()}.",
        )
    if spec.objective == "sft":
        return
    if spec.distributed:
        raise JobError(
            f"{objective} runs in one training process for now.",
            hint="Set processes and machines to 1.",
        )
    if spec.objective == "grpo" and not (spec.rewards or spec.reward_file):
        raise JobError(
            "GRPO needs at least one reward.",
            hint="Pick rewards (e.g. number_match and a regex for the answer format), "
            "or a preset that has them.",
        )
    if spec.objective == "grpo" and spec.reward_file and not Path(spec.reward_file).is_file():
        raise JobError(f"No reward file at {spec.reward_file}.", hint="Give an existing .py file.")
    if spec.objective == "kto" and spec.batch_size < 2:
        raise JobError(
            "KTO needs a batch size of at least 2 (it estimates its KL term within a batch).",
            hint="Raise the batch size to 2 or more.",
        )


def _init_model(spec: JobSpec, model: ModelInfo, settings: Settings) -> tuple[JobSpec, str]:
    """The fine-tuned model of ``spec.init_from_run`` to start from, checked; its base kept."""
    store = get_store(settings.db_path)
    ref = spec.init_from_run or ""
    rows = store.query(
        "SELECT id FROM jobs WHERE id = ? OR name = ? ORDER BY created_at DESC LIMIT 1", (ref, ref)
    )
    if not rows:
        raise JobError(
            f"Run {ref!r} to start from does not exist.",
            hint="Run `model-garden jobs list` and pass the id of a completed run.",
        )
    run = get_job(store, rows[0]["id"])
    if run.status != "completed" or run.result is None or not run.result.merged:
        raise JobError(
            f"Run {run.id} ({run.name}) is {run.status}, so it has no finished model to start from.",
            hint="Pick a completed run, or resume that one until it completes.",
        )
    run_base = run.spec.base_model if run.spec else None
    if run_base is not None and "base_model" not in spec.model_fields_set:
        spec = spec.model_copy(update={"base_model": run_base})
    elif run_base is not None and resolve_model(run_base, settings).id != model.id:
        raise JobError(
            f"Run {run.id} was trained from {run_base}, and this run's base model is "
            f"{spec.base_model}.",
            hint=f"Use base model {run_base}, or leave the base model empty.",
        )
    return spec, run.result.output_dir


def _model_weight_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.safetensors")) or sum(
        p.stat().st_size for p in path.glob("*.bin")
    )


MEMORY_SHARE = 0.8  # of the memory free at submit that a CPU run plans on, by default


def plan_job(data: JobSpec | Mapping[str, Any], settings: Settings | None = None) -> JobPlan:
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
    if spec.torch_compile and cpp_compiler() is None:
        raise JobError(
            "torch_compile needs a C++ compiler (g++, or the one CXX names), and none was found.",
            hint="Install g++ (e.g. apt install g++), or turn torch_compile off.",
        )
    if spec.torch_compile and cuda:
        warnings.append("torch_compile applies to CPU training; on the GPU the run trains without.")
    if spec.lora_alpha < spec.lora_r / 16:
        warnings.append("LoRA alpha is far below r: updates will be tiny.")
    model = resolve_model(spec.base_model, settings)
    init_path = None
    if spec.init_from_run:
        spec, init_path = _init_model(spec, model, settings)
        model = resolve_model(spec.base_model, settings)
    if init_path is not None:
        model_path = init_path
    elif model.kind == "hub":
        model_path = model.id
        check_download(model.id, settings)
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
    _check_objective(spec, dataset)
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
    if spec.machine_rank > 0:  # one job per machine: its name must not clash with machine 0's
        base = updates.get("name", spec.name) or ""
        suffix = f"-machine{spec.machine_rank}"
        updates["name"] = base[: 80 - len(suffix)] + suffix
    spec = spec.model_copy(update=updates)
    assert spec.name is not None
    _check_lengths(spec, dataset, warnings)
    output_dir = settings.finetuned_models_path / spec.name
    if output_dir.exists():
        raise JobError(
            f"A fine-tuned model named {spec.name!r} already exists ({output_dir}).",
            hint="Pick another run name, or delete the old model folder.",
        )
    marks = ", ".join("?" for _ in ACTIVE_STATUSES)
    busy = get_store(settings.db_path).query(
        f"SELECT id FROM jobs WHERE name = ? AND status IN ({marks})", (spec.name, *ACTIVE_STATUSES)
    )
    if busy:
        raise JobError(
            f"Job {busy[0]['id']} with the name {spec.name!r} is already queued or running.",
            hint="Pick another run name.",
        )
    _check_disk(spec, model_path, settings)
    layout = _layout(spec, model_path, cuda)
    if cuda and layout.strategy not in ("fsdp", "deepspeed"):
        _check_gpu_memory(spec, model_path)
    notes = []
    if not cuda and spec.objective != "grpo":  # GRPO's batches are its sampled groups
        memory = _plan_cpu_memory(spec, model_path, layout.num_processes)
        spec = spec.model_copy(update={"gradient_checkpointing": memory.checkpointing})
        notes.append(memory.line())
        if not memory.fits:
            warnings.append(
                f"This run may need more memory than its {memory.limit_bytes / GB:.1f} GB "
                "limit: lower the batch size or max_seq_len if it is killed."
            )
    return JobPlan(spec, model, model_path, dataset, output_dir, warnings, layout, notes)


def _plan_cpu_memory(spec: JobSpec, model_path: str, processes: int) -> MemoryPlan:
    if spec.memory_limit_gb is not None:
        limit = spec.memory_limit_gb * GB
    else:
        limit = MEMORY_SHARE * psutil.virtual_memory().available
    path = Path(model_path)
    precision, _ = choose_precision(spec.precision, "cpu")
    return plan_cpu_memory(
        batch_size=spec.batch_size,
        max_seq_len=spec.max_seq_len,
        processes=processes,
        config=model_config(model_path),
        weight_bytes=_model_weight_bytes(path) if path.is_dir() else 0,
        limit_bytes=limit,
        checkpointing=spec.gradient_checkpointing,
        fp32=precision == "fp32",
        int8_copy=int8_frozen.chosen(spec, "cpu", precision),
        full=spec.method == "full",
    )


def _layout(spec: JobSpec, model_path: str, cuda: bool) -> Layout:
    gpus = _gpu_memories() if cuda else []
    local = Path(model_path)
    weights = _model_weight_bytes(local) if local.is_dir() else 0
    layout = plan_layout(spec, gpus, estimate_gpu_bytes(spec, weights))
    return layout


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
    memories = _gpu_memories()
    return memories[0] if memories else None


def _gpu_memories() -> list[int]:
    """Bytes of every GPU this process may use (``CUDA_VISIBLE_DEVICES`` respected)."""
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        memories = [int(line) * 1024 * 1024 for line in out.split()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        wanted = [int(part) for part in visible.split(",") if part.strip().isdigit()]
        memories = [memories[i] for i in wanted if i < len(memories)]
    return memories


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
