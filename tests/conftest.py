"""Test set-up: offline hubs, one throw-away storage root per test session, the real default model.

The environment is set before any garden module reads its settings, so `get_settings()` in
engine code and in the app both point at the session's storage.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

SESSION_ROOT = Path(tempfile.mkdtemp(prefix="garden-tests-"))

os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TOKENIZERS_PARALLELISM": "false",
        "STORAGE_ROOT": str(SESSION_ROOT / "storage"),
        "CARBON_TRACKING_INTERVAL": "1",
    }
)
for name in [key for key in os.environ if key.startswith("CODECARBON_")]:
    del os.environ[name]


@pytest.fixture(scope="session")
def session_root() -> Path:
    return SESSION_ROOT


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The embedded default model, converted once per test session (real weights)."""
    from garden.models import prepare_default_model

    return prepare_default_model()


@pytest.fixture
def isolated_settings(tmp_path: Path, default_model_path: Path):
    """Settings with a private storage root that still sees the session's prepared models."""
    from garden.config import Settings

    settings = Settings(
        _env_file=None,
        storage_root=tmp_path / "storage",
        models_dir=default_model_path.parent.parent,
    )
    settings.ensure_storage()
    return settings
