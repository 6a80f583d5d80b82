"""A hub model's weights, sized from the hub's metadata before anything is downloaded.

A web visitor may name any hub id as a base model; the engines would then download it whole.
``check_download`` reads the weight files' sizes first and refuses a model over
``MAX_BASE_MODEL_GB`` or one that would not fit on the disk. A model already in the local hub
cache, or an offline hub, needs no download and is not checked here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from garden.config import Settings
from garden.data.limits import check_free_space
from garden.errors import ModelLoadError

GB = 1024**3
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
METADATA_TIMEOUT_S = 10.0


def _offline() -> bool:
    return any(os.environ.get(name) == "1" for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def cached(hub_id: str) -> bool:
    """Whether the local hub cache already holds this model's config."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)


def weights_bytes(siblings: list[Any]) -> int:
    """The bytes a loader downloads: the safetensors files when there are any (loaders prefer
    them), else the other weight files."""
    weights = [s for s in siblings if str(s.rfilename).endswith(WEIGHT_SUFFIXES)]
    safetensors = [s for s in weights if str(s.rfilename).endswith(".safetensors")]
    return sum(int(s.size or 0) for s in (safetensors or weights))


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def check_download(hub_id: str, settings: Settings) -> None:
    """``ModelLoadError`` for a hub model too large to download, or whose size cannot be read;
    ``DiskFullError`` when its weights would not fit in the hub cache's file system."""
    if _offline() or cached(hub_id):
        return
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(hub_id, files_metadata=True, timeout=METADATA_TIMEOUT_S)
    except Exception as exc:  # a network, auth or not-found error: one line, no download
        raise ModelLoadError(
            f"Cannot read the size of {hub_id} from the hub ({type(exc).__name__}).",
            hint="Check the model id and the network, or download it first "
            "(`huggingface-cli download`).",
        ) from exc
    size = weights_bytes(list(info.siblings or []))
    cap = settings.max_base_model_gb
    if size > cap * GB:
        raise ModelLoadError(
            f"{hub_id} has {size / GB:.1f} GB of weights, over the {cap:g} GB this app allows.",
            hint="Pick a smaller model, or raise MAX_BASE_MODEL_GB.",
        )
    check_free_space(hub_cache_dir(), size, f"the weights of {hub_id}")
