"""What a training job is: its spec, the presets, its statuses and the flag files that steer it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from garden.config import parse_trackers
from garden.engine.training.rewards import RewardSpec
from garden.errors import JobError
from garden.models import DEFAULT_MODEL_NAME

ACTIVE_STATUSES = ("queued", "running", "stopping")
TERMINAL_STATUSES = ("completed", "stopped", "failed", "cancelled", "interrupted")
RESUMABLE_STATUSES = ("stopped", "interrupted", "failed")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
STOP_FLAG = "STOP"
CANCEL_FLAG = "CANCEL"

PRESETS: dict[str, dict[str, Any]] = {
    # Budget-based: the time budget ends it (epochs is only a ceiling), on any supported CPU.
    # Batch 1: twice the updates of batch 2 in the same time, which a slow CPU needs to learn
    # the facts in its budget (recall per CPU class in docs/benchmarks.md).
    "Quick CPU demo": {
        "method": "lora",
        "epochs": 100.0,
        "time_budget_s": 285.0,
        "max_steps": None,
        "learning_rate": 2e-3,
        "lr_scheduler": "cosine",
        "batch_size": 1,
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

OBJECTIVES = ("sft", "dpo", "orpo", "kto", "grpo")
# Short runs of the default model on the CPU; the GPU variants go through the Unsloth backend.
_PREFERENCE_CPU: dict[str, Any] = {
    "method": "lora",
    "epochs": 1.0,
    "max_steps": 8,
    "learning_rate": 2e-4,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "batch_size": 4,
    "gradient_accumulation": 1,
    "max_seq_len": 256,
    "lora_r": 16,
    "lora_alpha": 32,
    "precision": "auto",
    "backend": "trl_peft",
}
_PREFERENCE_GPU: dict[str, Any] = {
    **_PREFERENCE_CPU,
    "epochs": 1.0,
    "max_steps": None,
    "learning_rate": 5e-5,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.1,
    "batch_size": 8,
    "gradient_accumulation": 2,
    "max_seq_len": 1024,
    "backend": "unsloth",
}
PRESETS.update(
    {
        "DPO (CPU quick)": {**_PREFERENCE_CPU, "objective": "dpo", "beta": 0.1},
        "ORPO (CPU quick)": {**_PREFERENCE_CPU, "objective": "orpo", "beta": 0.1},
        "KTO (CPU quick)": {**_PREFERENCE_CPU, "objective": "kto", "beta": 0.1},
        "DPO (GPU, Unsloth)": {**_PREFERENCE_GPU, "objective": "dpo", "beta": 0.1},
        "ORPO (GPU, Unsloth)": {**_PREFERENCE_GPU, "objective": "orpo", "beta": 0.1},
        "KTO (GPU, Unsloth)": {**_PREFERENCE_GPU, "objective": "kto", "beta": 0.1},
        "GRPO (CPU quick)": {
            **_PREFERENCE_CPU,
            "objective": "grpo",
            "max_steps": 40,
            "learning_rate": 5e-4,
            "batch_size": 8,
            "max_seq_len": 256,
            "num_generations": 4,
            "max_completion_length": 40,
            "generation_temperature": 1.0,
            "rewards": [
                {"kind": "number_match", "weight": 1.0},
                {"kind": "regex", "pattern": r"Answer:\s*-?\d+", "weight": 0.5},
            ],
        },
    }
)


def preset_objective(name: str) -> str:
    """The objective a preset trains with (``sft`` unless it names one)."""
    return str(PRESETS.get(name, {}).get("objective", "sft"))


class JobSpec(BaseModel):
    """What to train and how. Stored with the job (``jobs.spec_json``)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    base_model: str = DEFAULT_MODEL_NAME
    dataset: str
    method: Literal["lora", "qlora", "full"] = "lora"
    objective: Literal["sft", "dpo", "orpo", "kto", "grpo"] = "sft"
    beta: float = Field(
        0.1,
        gt=0,
        le=100,
        description="DPO/KTO deviation from the reference; ORPO's odds-ratio weight (lambda)",
    )
    rewards: list[RewardSpec] = Field(
        default_factory=list, description="GRPO: the reward rules, weighted (see rewards.py)"
    )
    reward_file: str | None = Field(
        None, description="GRPO, CLI only: a .py file defining reward(prompt, completion, **row)"
    )
    num_generations: int = Field(4, ge=2, le=64, description="GRPO: completions per prompt")
    max_completion_length: int = Field(64, ge=4, le=8192, description="GRPO: tokens per completion")
    generation_temperature: float = Field(1.0, gt=0, le=2, description="GRPO: sampling temperature")
    init_from_run: str | None = Field(
        None, description="A completed run whose fine-tuned model this run starts from"
    )
    backend: Literal["auto", "trl_peft", "unsloth"] = "auto"
    epochs: float = Field(1.0, gt=0, le=1000)
    max_steps: int | None = Field(None, ge=1)
    time_budget_s: float | None = Field(
        None, gt=0, description="Seconds of training at most: the step count is fitted to it"
    )
    co2_budget_g: float | None = Field(
        None, gt=0, description="Grams of CO₂-equivalent at most for the job (metered)"
    )
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
    torch_compile: bool | None = Field(
        False,
        description="SFT on a CPU: compile the decoder layers (torch.compile). Steps run about "
        "1.2x faster in bf16 (AMX / AVX-512 BF16 CPUs) after 10-60 s of compiling. None (auto): "
        "a bf16 run without a budget compiles once its first steps show 5 minutes or more to go; "
        "needs a C++ compiler (g++)",
    )
    int8_matmuls: bool | None = Field(
        None,
        description="SFT with LoRA in fp32 on a CPU: multiply the frozen base weights in int8 "
        "(each token's activations and gradients at 8 bits, the weights per channel at 7; the "
        "adapters stay fp32). None (auto) and on: wherever that applies; off: fp32 throughout",
    )
    gradient_checkpointing: bool | None = Field(
        None,
        description="Recompute each layer's activations in the backward pass (less memory, "
        "slower); default on the CPU: on when the run would not fit memory_limit_gb without",
    )
    memory_limit_gb: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="CPU: GB at most for the run's processes on one machine "
        "(default: 80 % of the memory free when it is submitted)",
    )
    eval_steps: int | None = Field(None, ge=1)
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    checkpoint_interval: int | None = Field(None, ge=1)
    save_total_limit: int = Field(2, ge=1, le=100)
    logging_steps: int = Field(1, ge=1)
    num_processes: int = Field(1, ge=1, le=1024, description="Training processes per machine")
    num_machines: int = Field(1, ge=1, le=1024)
    machine_rank: int = Field(0, ge=0)
    main_process_ip: str | None = None
    main_process_port: int | None = Field(None, ge=1, le=65535)
    strategy: Literal["auto", "ddp", "fsdp", "deepspeed"] = "auto"
    report_to: list[str] | None = Field(
        None,
        description="Experiment trackers (tensorboard, mlflow, wandb; [] none); "
        "default: the REPORT_TO setting",
    )

    @property
    def world_size(self) -> int:
        """Training processes on all machines together."""
        return self.num_processes * self.num_machines

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def prompt_groups(self) -> int:
        """GRPO: the prompts a batch holds, each as a whole group of ``num_generations``
        completions (at least one, however small the batch)."""
        return max(1, -(-self.batch_size // self.num_generations))

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

    @field_validator("init_from_run")
    @classmethod
    def _run_given(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("main_process_ip")
    @classmethod
    def _ip_given(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @model_validator(mode="after")
    def _machines_agree(self) -> JobSpec:
        if self.machine_rank >= self.num_machines:
            raise ValueError(
                f"machine_rank {self.machine_rank} must be below num_machines "
                f"{self.num_machines} (machines count from 0)"
            )
        if self.num_machines > 1 and (self.main_process_ip is None or not self.main_process_port):
            raise ValueError(
                "a run on several machines needs main_process_ip and main_process_port "
                "(the address of machine 0, the same on every machine)"
            )
        return self

    @model_validator(mode="after")
    def _compile_fits(self) -> JobSpec:
        if not self.torch_compile:
            return self
        if self.objective != "sft":
            raise ValueError("torch_compile is for SFT runs only; turn it off for this objective")
        if self.time_budget_s is not None or self.co2_budget_g is not None:
            raise ValueError(
                "torch_compile and a time or CO₂ budget do not mix yet (compiling spends 10-60 s "
                "of the budget, which its plan does not weigh); drop the budget or torch_compile"
            )
        if self.distributed:
            raise ValueError("torch_compile trains in one process; set num_processes to 1")
        return self

    @field_validator("report_to", mode="before")
    @classmethod
    def _trackers(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, (str, list, tuple)):
            raise ValueError("expected a comma list or a list of tracker names")
        return list(parse_trackers(value))

    @field_validator("lora_target_modules", mode="before")
    @classmethod
    def _modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value or ["all-linear"]


def parse_spec(data: JobSpec | Mapping[str, Any], preset: str | None = None) -> JobSpec:
    """A ``JobSpec`` from values over an optional preset, or ``JobError`` naming every bad field."""
    if isinstance(data, JobSpec) and preset is None:
        return data
    values = data.model_dump(exclude_unset=True) if isinstance(data, JobSpec) else dict(data)
    if preset is not None:
        if preset not in PRESETS:
            raise JobError(f"Unknown preset {preset!r}.", hint="Use one of: " + ", ".join(PRESETS))
        values = {**PRESETS[preset], **values}
    try:
        return JobSpec.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "spec"
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise JobError(
            "Invalid training settings: " + "; ".join(problems) + ".",
            hint="Fix the listed fields and start again.",
        ) from exc
