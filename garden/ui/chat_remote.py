"""The Chat tab's "Remote endpoint" accordion: Model A answers from an OpenAI-compatible server.

A URL typed here makes the server send requests (SSRF), so every endpoint passes
``services.endpoints.check_endpoint`` (``REMOTE_ENDPOINTS_ALLOWED``) before it is called.
"""

from __future__ import annotations

from typing import Any, Protocol

import gradio as gr

from garden.config import Settings
from garden.errors import ServingError
from garden.services.endpoints import Endpoint, check_endpoint, endpoint_models
from garden.ui.boundary import guard, plain

URL_PLACEHOLDER = "http://127.0.0.1:8000/v1"


class RemoteFields(Protocol):
    """What the Chat tab's form holds about the remote endpoint."""

    @property
    def remote_on(self) -> bool: ...

    @property
    def remote_url(self) -> str: ...

    @property
    def remote_key(self) -> str: ...


class RemotePanel:
    """The accordion's components; ``inputs()`` are the form's remote fields, in order."""

    def __init__(self) -> None:
        with gr.Accordion("Remote endpoint", open=False):
            gr.Markdown(
                "Chat with a model on any OpenAI-compatible server (`model-garden serve`, a "
                "vLLM cluster). With **Use for Model A** on, Model A's answers come from it."
            )
            with gr.Row():
                self.url = gr.Textbox(
                    label="Base URL",
                    placeholder=URL_PLACEHOLDER,
                    scale=3,
                    elem_id="chat-remote-url",
                )
                self.key = gr.Textbox(
                    label="API key (optional)", type="password", scale=2, elem_id="chat-remote-key"
                )
            with gr.Row():
                self.list_btn = gr.Button("List models", size="sm", scale=0)
                self.model = gr.Dropdown(
                    [],
                    value=None,
                    label="Remote model",
                    allow_custom_value=True,
                    scale=3,
                    elem_id="chat-remote-model",
                )
                self.use = gr.Checkbox(False, label="Use for Model A", elem_id="chat-remote-on")
            self.status = gr.Markdown(elem_id="chat-remote-status")

    def inputs(self) -> tuple[gr.Checkbox, gr.Textbox, gr.Textbox, gr.Dropdown]:
        return self.use, self.url, self.key, self.model

    def bind(self, settings: Settings) -> None:
        def list_models(url: str, key: str) -> tuple[Any, str]:
            endpoint = checked(url, key, settings)
            names = endpoint_models(endpoint)
            text = f"{endpoint.remote().base_url} serves: {', '.join(names)}"
            return gr.update(choices=names, value=names[0]), plain(text)

        keep = gr.update()
        listed = guard(
            "listing the endpoint's models", lambda m: (keep, f"❌ {plain(m)}"), settings
        )
        self.list_btn.click(
            listed(list_models),
            [self.url, self.key],
            [self.model, self.status],
            api_name="remote_models",
        )


def checked(url: str, key: str, settings: Settings) -> Endpoint:
    """The typed endpoint, once the web may call it (one-line ``ServingError`` otherwise)."""
    if not (url or "").strip():
        raise ServingError(
            "No endpoint URL typed.", hint=f"Type its base URL, e.g. {URL_PLACEHOLDER}."
        )
    endpoint = Endpoint(base_url=url.strip(), api_key=(key or "").strip() or None)
    return check_endpoint(endpoint, settings=settings)


def endpoint_of(form: RemoteFields, settings: Settings) -> Endpoint | None:
    """The endpoint Model A chats through, or None when the remote endpoint is off."""
    if not form.remote_on:
        return None
    return checked(form.remote_url, form.remote_key, settings)
