"""Settings read from the environment and `.env`, and the storage layout they imply."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from garden.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Experiment trackers a run may report to (REPORT_TO, `--report-to`); "none" stands for none.
TRACKERS = ("tensorboard", "mlflow", "wandb")
MIN_PASSWORD_CHARS = 12


class Settings(BaseSettings):
    """Every setting of Model Garden; env var names are the upper-case field names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    storage_root: Path = Path("./storage")
    models_dir: Path | None = Field(None, description="default: STORAGE_ROOT/models")
    datasets_dir: Path | None = Field(None, description="default: STORAGE_ROOT/datasets")
    logs_dir: Path | None = Field(None, description="default: STORAGE_ROOT/logs")
    log_level: str = "INFO"

    api_host: str = "127.0.0.1"
    api_port: int = Field(7860, ge=1, le=65535)

    max_concurrent_jobs: int = Field(1, ge=1)
    checkpoint_interval: int = Field(100, ge=1, description="steps between checkpoints")
    max_upload_mb: int = Field(512, ge=1, description="largest dataset file accepted")

    vllm_gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    vllm_max_num_seqs: int = Field(256, ge=1)
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="devices each layer is split over")
    vllm_pipeline_parallel_size: int = Field(
        1, ge=1, description="devices the layers are spread over"
    )
    vllm_data_parallel_size: int = Field(1, ge=1, description="replicas of the model")
    remote_endpoints_allowed: str = Field(
        "", description="hosts the Chat tab may call (comma list, * = any); default loopback"
    )
    max_loaded_models: int = Field(2, ge=1, description="chat engines kept loaded (LRU evicted)")
    onnx_chat_enabled: bool = Field(
        True, description="auto chat backend answers single streams from an int4 ONNX copy"
    )
    chat_pauses_training: bool = Field(
        True, description="CPU training runs pause while a chat answer streams (at most 60 s)"
    )
    onnx_threads: int = Field(
        0, ge=0, description="CPU threads of the onnx backend (0 = every CPU it may use)"
    )

    carbon_tracking_enabled: bool = True
    carbon_tracking_interval: float = Field(15.0, gt=0.0, description="seconds")
    carbon_country_code: str = Field("USA", min_length=3, max_length=3)
    carbon_region: str = "california"

    enable_auth: bool = False
    auth_username: str = "admin"
    auth_password: SecretStr = SecretStr("")
    login_max_failures: int = Field(5, ge=1, description="failed logins before a lockout")
    login_lockout_seconds: float = Field(300.0, gt=0.0, description="lockout after failures")
    allowed_hosts: str = Field(
        "", description="Host headers answered (comma list, * any; empty: loopback + bound host)"
    )
    login_trust_loopback: bool = Field(
        True, description="a login from loopback is never locked out (off behind a local proxy)"
    )
    jwt_secret_key: SecretStr = SecretStr("")
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_expiration_minutes: float = Field(60.0, gt=0.0, description="REST API token lifetime")

    queue_max_size: int = Field(64, ge=1, description="events waiting in the Gradio queue")
    chat_concurrency: int = Field(32, ge=1, description="chat answers generated at once")
    import_concurrency: int = Field(2, ge=1, description="dataset inspects/imports at once")
    ws_max_followers: int = Field(64, ge=1, description="live /ws/jobs streams open at once")
    ws_max_followers_per_client: int = Field(
        8, ge=1, description="live /ws/jobs streams one client address may hold open"
    )
    upload_cache_hours: float = Field(24.0, gt=0.0, description="age of purged Gradio uploads")
    max_base_model_gb: float = Field(
        20.0, gt=0.0, description="largest hub base model downloaded (GB of weights)"
    )
    upload_cache_max_mb: int = Field(
        2048, ge=1, description="Gradio uploads a public app keeps within UPLOAD_CACHE_HOURS"
    )

    hf_token: SecretStr = Field(SecretStr(""), description="Hugging Face token for pushes")

    warm_workers: bool = Field(
        True, description="start training workers from a fork server that imported torch once"
    )

    report_to: str = Field(
        "", description="experiment trackers: tensorboard, mlflow, wandb (comma list; none)"
    )

    eval_after_training: bool = Field(True, description="evaluate every completed run")
    eval_max_prompts: int = Field(16, ge=1, description="held-out prompts answered per eval")
    eval_max_new_tokens: int = Field(64, ge=1, description="tokens per answer in an eval")
    eval_judge_url: str = Field("", description="OpenAI-compatible judge endpoint (optional)")
    eval_judge_model: str = Field("", description="the judge endpoint's model name")
    eval_judge_api_key: SecretStr = Field(SecretStr(""), description="the judge's API key")

    public_demo: bool = Field(False, description="public without auth, with demo limits")
    public_demo_max_steps: int = Field(50, ge=1, description="training steps cap in a demo")
    public_demo_max_upload_mb: int = Field(10, ge=1, description="upload cap in a demo")
    public_demo_max_base_model_gb: float = Field(
        1.0, gt=0.0, description="largest hub base model a demo downloads (GB of weights)"
    )
    public_demo_max_jobs_per_visitor: int = Field(
        1, ge=1, description="runs one demo visitor may have queued or running"
    )
    public_demo_max_active_jobs: int = Field(
        4, ge=1, description="runs queued or running in a demo, all visitors together"
    )
    public_demo_max_datasets_per_visitor: int = Field(
        5, ge=1, description="datasets one demo visitor may import"
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, value: str) -> str:
        return ",".join(parse_trackers(value))

    @field_validator("carbon_country_code")
    @classmethod
    def _iso3(cls, value: str) -> str:
        if not value.isalpha():
            raise ValueError("expected an ISO-3 code such as USA or FRA")
        return value.upper()

    @model_validator(mode="after")
    def _demo_caps_uploads(self) -> Settings:
        """A public demo accepts only small uploads and base models, whatever MAX_UPLOAD_MB and
        MAX_BASE_MODEL_GB say."""
        if self.public_demo:
            self.max_upload_mb = min(self.max_upload_mb, self.public_demo_max_upload_mb)
            self.max_base_model_gb = min(self.max_base_model_gb, self.public_demo_max_base_model_gb)
        return self

    @property
    def trackers(self) -> tuple[str, ...]:
        """The experiment trackers every run reports to unless it names its own."""
        return parse_trackers(self.report_to)

    @property
    def models_path(self) -> Path:
        return (self.models_dir or self.storage_root / "models").resolve()

    @property
    def datasets_path(self) -> Path:
        return (self.datasets_dir or self.storage_root / "datasets").resolve()

    @property
    def logs_path(self) -> Path:
        return (self.logs_dir or self.storage_root / "logs").resolve()

    @property
    def base_models_path(self) -> Path:
        return self.models_path / "base"

    @property
    def finetuned_models_path(self) -> Path:
        return self.models_path / "finetuned"

    @property
    def raw_datasets_path(self) -> Path:
        return self.datasets_path / "raw"

    @property
    def processed_datasets_path(self) -> Path:
        return self.datasets_path / "processed"

    @property
    def checkpoints_path(self) -> Path:
        return self.storage_root.resolve() / "checkpoints"

    @property
    def exports_root(self) -> Path:
        return self.storage_root.resolve() / "exports"

    @property
    def temp_path(self) -> Path:
        return self.storage_root.resolve() / "temp"

    @property
    def db_path(self) -> Path:
        return self.storage_root.resolve() / "garden.db"

    def storage_dirs(self) -> list[Path]:
        return [
            self.base_models_path,
            self.finetuned_models_path,
            self.raw_datasets_path,
            self.processed_datasets_path,
            self.logs_path,
            self.checkpoints_path,
            self.temp_path,
        ]

    def ensure_storage(self) -> None:
        for path in self.storage_dirs():
            path.mkdir(parents=True, exist_ok=True)


def parse_trackers(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Tracker names from a comma list (or a list), in the order of ``TRACKERS``, repeats
    dropped; ``none`` or nothing means none. ``ValueError`` names an unknown one."""
    parts = value.split(",") if isinstance(value, str) else list(value or ())
    names = {str(part).strip().lower() for part in parts} - {"", "none"}
    unknown = sorted(names - set(TRACKERS))
    if unknown:
        raise ValueError(
            f"unknown tracker {', '.join(unknown)}: use any of {', '.join(TRACKERS)} "
            "(comma-separated), or none"
        )
    return tuple(name for name in TRACKERS if name in names)


def load_settings() -> Settings:
    """Read the settings; a bad value becomes a one-line :class:`ConfigError` naming it."""
    try:
        return Settings()
    except ValidationError as exc:
        raise settings_error(exc) from None


def settings_error(exc: ValidationError) -> ConfigError:
    problems = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
        value = error.get("input")
        secret = "PASSWORD" in name or "SECRET" in name
        shown = f" (got {value!r})" if isinstance(value, (str, int, float)) and not secret else ""
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{name}: {message}{shown}")
    return ConfigError(
        f"Invalid setting: {'; '.join(problems)}.",
        hint="Fix it in the environment or .env (see .env.example).",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, with storage folders created."""
    settings = load_settings()
    settings.ensure_storage()
    return settings
