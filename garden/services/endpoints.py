"""Remote OpenAI-compatible endpoints: what the chat may call, and the models one serves.

A URL typed by a visitor of the web app is an outbound request made by the server (SSRF), so
the web front ends pass every endpoint through :func:`check_endpoint` first: a public app
(``ENABLE_AUTH`` or ``PUBLIC_DEMO``) may call only the hosts in ``REMOTE_ENDPOINTS_ALLOWED``,
a local one also loopback by default. The CLI, run by the machine's owner, is not limited.

A process that serves the web app calls :func:`serve_web` when it starts; from then on every
remote answer the chat service streams passes :func:`checked_here` (``check_endpoint``), so no
front end in that process (tab, REST) can skip the check.
"""

from __future__ import annotations

from pydantic import SecretStr

from garden.config import Settings
from garden.engine.serving.remote import (
    RemoteEndpoint,
    endpoint_url,
    is_loopback,
    list_models,
)
from garden.errors import ServingError
from garden.services.base import View, resolve

__all__ = [
    "Endpoint",
    "allowed_hosts",
    "check_endpoint",
    "checked_here",
    "endpoint_models",
    "serve_web",
]

ALLOW_HINT = (
    "Ask the administrator to add the host to REMOTE_ENDPOINTS_ALLOWED (a comma list of hosts)."
)


class Endpoint(View):
    """An OpenAI-compatible server to chat through: its base URL and an optional API key."""

    base_url: str
    api_key: SecretStr | None = None

    def remote(self) -> RemoteEndpoint:
        """The engine's endpoint, with the URL checked and normalised (``/v1`` when bare)."""
        key = self.api_key.get_secret_value().strip() if self.api_key is not None else ""
        return RemoteEndpoint(endpoint_url(self.base_url), key or None)

    @property
    def host(self) -> str:
        return self.remote().host


def allowed_hosts(*, settings: Settings | None = None) -> list[str]:
    """The hosts ``REMOTE_ENDPOINTS_ALLOWED`` names (lower case; ``*`` means any)."""
    text = resolve(settings).remote_endpoints_allowed
    return [host.strip().lower() for host in text.split(",") if host.strip()]


def check_endpoint(endpoint: Endpoint, *, settings: Settings | None = None) -> Endpoint:
    """The endpoint when the web may call it; ``ServingError`` (one line) otherwise."""
    settings = resolve(settings)
    host = endpoint.host.strip("[]").lower()
    listed = allowed_hosts(settings=settings)
    public = settings.enable_auth or settings.public_demo
    if "*" in listed or host in listed:
        return endpoint
    if not listed and not public and is_loopback(host):
        return endpoint
    if listed:
        why = f"it is not in REMOTE_ENDPOINTS_ALLOWED ({', '.join(listed)})"
    elif public:
        why = "this app is public and REMOTE_ENDPOINTS_ALLOWED is empty"
    else:
        why = "only loopback hosts are allowed while REMOTE_ENDPOINTS_ALLOWED is empty"
    raise ServingError(f"The web app may not call {host}: {why}.", hint=ALLOW_HINT)


_web = {"served": False}


def serve_web() -> None:
    """Mark this process as the web app's: its chat checks every remote endpoint it calls."""
    _web["served"] = True


def checked_here(endpoint: Endpoint, *, settings: Settings | None = None) -> Endpoint:
    """``endpoint`` as :func:`check_endpoint` allows it in a process serving the web; as it is
    in any other (the CLI, run by the machine's owner)."""
    return check_endpoint(endpoint, settings=settings) if _web["served"] else endpoint


def endpoint_models(endpoint: Endpoint) -> list[str]:
    """The models the endpoint serves; ``ServingError`` when it cannot be reached or refuses."""
    models = list_models(endpoint.remote())
    if not models:
        raise ServingError(
            f"{endpoint.remote().base_url} serves no model.", hint="Check the server's logs."
        )
    return models
