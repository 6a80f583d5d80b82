"""What to chat with: a model reference resolved to a base model folder plus an optional LoRA
adapter, and the checks that an adapter belongs to the base model it is served on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from garden.config import Settings, get_settings
from garden.errors import GardenError, ModelLoadError, ServingError
from garden.models import ModelInfo, list_models, read_json, resolve_model, validate_model_dir


@dataclass(frozen=True)
class ChatTarget:
    """What to chat with: a base model folder, plus a LoRA adapter for fine-tuned runs."""

    model_id: str
    label: str
    base_path: str
    adapter_path: str | None = None
    kind: str = "base"

    def shown(self, base_model: str) -> str:
        """The model picked, as a status line names it: ``facts-run (LoRA on
        SmolLM2-135M-Instruct)`` for a run served as an adapter on its base model's engine."""
        return f"{self.label} (LoRA on {base_model})" if self.adapter_path else self.label


def _model_key(ref: str | None) -> str:
    """Last path component, lower-case: paths and hub ids of the same model compare equal."""
    return (ref or "").rstrip("/").replace("\\", "/").split("/")[-1].lower()


def same_model(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return _model_key(a) == _model_key(b)


def adapter_base(adapter_dir: Path) -> str | None:
    """The base model an adapter was trained on (adapter_config.json, else garden.json)."""
    base = read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    if not base:
        base = read_json(adapter_dir.parent / "garden.json").get("base_model")
    return base or None


def adapter_run_name(adapter_dir: Path) -> str:
    """The name of the run an adapter belongs to (``<run>/adapter``, or the folder itself)."""
    return adapter_dir.parent.name if adapter_dir.name == "adapter" else adapter_dir.name


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks


def fitting_lora_rank(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that serves adapters of ``rank``."""
    return next((r for r in VLLM_LORA_RANKS if r >= rank), VLLM_LORA_RANKS[-1])


def adapter_rank(adapter_dir: Path) -> int:
    config = read_json(adapter_dir / "adapter_config.json")
    ranks = [int(config.get("r") or 8)]
    ranks.extend(int(v) for v in (config.get("rank_pattern") or {}).values())
    return max(ranks)


def resolve_target(ref: str | None, settings: Settings | None = None) -> ChatTarget:
    """Turn a model reference into a :class:`ChatTarget`.

    A fine-tuned run with an adapter whose base model is available is served as the adapter
    on that base; otherwise its merged model is loaded directly.
    """
    settings = settings or get_settings()
    info = _listed_adapter_run(ref, settings) or resolve_model(ref, settings)
    if info.kind == "hub" or not info.path:
        raise ModelLoadError(
            f"{info.id} is a hub id, and the chat engine serves local models only (offline).",
            hint="Download it to a folder first, then pick that folder.",
        )
    path = Path(info.path)
    if info.adapter_path:
        adapter_dir = Path(info.adapter_path)
        base_ref = adapter_base(adapter_dir) or info.base_model
        merged = (path / "config.json").is_file()
        try:
            base = resolve_model(base_ref, settings) if base_ref else None
        except GardenError:
            base = None
        if base is not None and base.path and (Path(base.path) / "config.json").is_file():
            check_adapter(adapter_dir, base.path)
            return ChatTarget(info.id, info.name, base.path, str(adapter_dir), info.kind)
        if not merged:
            raise ModelLoadError(
                f"Adapter {info.name} was trained on {base_ref or 'an unknown base'}, "
                "which is not available here, and the run has no merged model.",
                hint="Prepare or copy its base model into models/base, then retry.",
            )
    return ChatTarget(info.id, info.name, str(path), None, info.kind)


def _listed_adapter_run(ref: str | None, settings: Settings) -> ModelInfo | None:
    """A fine-tuned run that has an adapter (its folder may hold no merged model)."""
    if not ref:
        return None
    for info in list_models(settings):
        if info.kind == "finetuned" and info.adapter_path and ref.strip() in (info.id, info.name):
            return info
    return None


def check_adapter(adapter_dir: Path, base_path: str) -> None:
    """Raise ``ServingError`` unless the adapter belongs to the base model being served."""
    validate_model_dir(adapter_dir)
    declared = {
        ref
        for ref in (
            read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path"),
            read_json(adapter_dir.parent / "garden.json").get("base_model"),
        )
        if ref
    }
    base_name = read_json(Path(base_path) / "config.json").get("_name_or_path")
    for ref in declared:
        if not (same_model(ref, base_path) or same_model(ref, base_name)):
            raise ServingError(
                f"Adapter {adapter_dir} was trained on {ref}, not on {Path(base_path).name}.",
                hint="Chat with it on its own base model (pick the fine-tuned run itself), "
                "or retrain it on this base.",
            )
