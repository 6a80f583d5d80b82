"""Calling the app's tabs as a browser session does (``gradio_client``), for the security tests."""

from __future__ import annotations

import json
from typing import Any

from gradio_client import Client


def shown(result: Any) -> str:
    """Everything an endpoint sent back, as one string."""
    return json.dumps(result, default=str)


def call(client: Client, *args: Any, **kwargs: Any) -> str:
    """The endpoint's output, or the error Gradio answered with (both must be clean)."""
    try:
        return shown(client.predict(*args, **kwargs))
    except Exception as exc:  # gradio_client raises the app's refusal as AppError
        return str(exc)


def inspect_args(kind: str, **values: Any) -> dict[str, Any]:
    return {
        "kind_value": kind,
        "upload_value": None,
        "bundled_value": None,
        "hub_value": "",
        "imported_value": None,
        "model_value": "SmolLM2-135M-Instruct",
        "seq_value": 2048,
        "mapping_value": "",
        **values,
    }
