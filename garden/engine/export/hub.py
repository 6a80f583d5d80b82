"""Push an export folder to the Hugging Face Hub (huggingface_hub), failing fast offline."""

from __future__ import annotations

import os

from garden.errors import ExportError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
TRUE_WORDS = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    from huggingface_hub import constants

    from_env = any(os.environ.get(name, "").lower() in TRUE_WORDS for name in OFFLINE_VARIABLES)
    return from_env or constants.is_offline_mode()


def check_push(repo_id: str, token: str) -> None:
    """Refuse a push that cannot work, before any export work starts."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ExportError(
            f"{repo_id!r} is not a Hugging Face repository id ({exc}).",
            hint="Use the form user-or-org/name, e.g. alice/facts-run-lora.",
        ) from exc
    if "/" not in repo_id:
        raise ExportError(
            f"{repo_id!r} has no owner.", hint="Use the form user-or-org/name, e.g. alice/my-model."
        )
    if hub_offline():
        raise ExportError(
            "Cannot push to the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE).",
            hint="Unset HF_HUB_OFFLINE on a machine with network access, or use --dry-run to "
            "write the folder that would be pushed.",
        )
    if not token:
        raise ExportError(
            "Cannot push to the Hugging Face Hub: no token.",
            hint="Set HF_TOKEN (a token with write access) in the environment or .env.",
        )
    from huggingface_hub import HfApi

    try:
        HfApi(token=token).whoami()
    except Exception as exc:
        raise ExportError(
            f"Cannot reach the Hugging Face Hub or the token was refused ({type(exc).__name__}).",
            hint="Check the network and HF_TOKEN, or use --dry-run to write the folder only.",
        ) from exc


def push_folder(folder: str, repo_id: str, token: str, private: bool) -> str:
    """Create the repository if needed and upload ``folder``; the repository's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            repo_type="model",
            commit_message="Upload from Model Garden",
        )
    except Exception as exc:
        raise ExportError(
            f"The push to {repo_id} failed ({type(exc).__name__}: {str(exc)[:160]}).",
            hint="Check that HF_TOKEN can write to that repository, then retry.",
        ) from exc
    return str(repo)
