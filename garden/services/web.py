"""What the web may name: imported datasets, listed models and strict hub ids, never a host path.

The web front ends (UI, REST) check every free-text value with these before a service reads
anything; the CLI, run by the machine's owner, may still pass local paths. ``safe_text`` keeps
absolute server paths out of what a browser is shown.
"""

from __future__ import annotations

import contextlib
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

from garden.config import Settings
from garden.data.hub import HUB_REPO, is_strict_hub_id
from garden.errors import DatasetError, GardenError, ModelLoadError
from garden.services.base import resolve

MODEL_HUB_ID = re.compile(rf"^{HUB_REPO}$")
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"`<>()\[\],;|]+")
HUB_HINT = "Type a hub id such as org/name, org/name:split or org/name@subset:split."


def check_hub_dataset(value: str | None) -> str:
    """A hub dataset id the web may pass on; ``DatasetError`` for anything path-like."""
    text = (value or "").strip().removeprefix("hf://").removeprefix("hub:")
    if not text:
        raise DatasetError("No hub id typed.", hint=HUB_HINT)
    if not is_strict_hub_id(text):
        raise DatasetError(f"{text[:80]!r} is not a hub dataset id.", hint=HUB_HINT)
    return text


def check_model(value: str | None, *, settings: Settings | None = None) -> str | None:
    """A listed model's id, or a strict hub id that names no local folder; None = the default."""
    from garden.models import list_models

    text = (value or "").strip()
    if not text:
        return None
    try:
        listed = {key for m in list_models(resolve(settings)) for key in (m.id, m.name)}
    except GardenError:
        listed = set()
    if text in listed:
        return text
    if MODEL_HUB_ID.match(text) and ".." not in text and not Path(text).exists():
        return text
    raise ModelLoadError(
        f"{text[:80]!r} is not a listed model or a hub id.",
        hint="Pick a model in the list (↻ refreshes it), or type a hub id such as org/name.",
    )


def check_dataset(value: str | None, *, settings: Settings | None = None) -> str:
    """The id of the imported dataset named ``value`` (id or name); never a file."""
    from garden.data import get_dataset

    text = (value or "").strip()
    if not text:
        raise DatasetError("No dataset picked.", hint="Pick one imported in the Data tab.")
    if "/" in text or "\\" in text or text.startswith("."):
        raise DatasetError(
            f"{text[:80]!r} is not an imported dataset.",
            hint="The web accepts only datasets imported in the Data tab (upload a file there).",
        )
    return get_dataset(text, resolve(settings)).id


def relative_path(path: str | Path | None, *, settings: Settings | None = None) -> str | None:
    """``path`` relative to STORAGE_ROOT when inside it, else only its last part."""
    if path is None:
        return None
    target = Path(path)
    root = resolve(settings).storage_root
    for base in (root, root.resolve()):
        try:
            return str(target.relative_to(base))
        except ValueError:
            continue
    return target.name


def safe_text(text: str, *, settings: Settings | None = None) -> str:
    """``text`` with each absolute path made relative to STORAGE_ROOT, or cut to its last part."""

    def shorten(match: re.Match[str]) -> str:
        path = match.group(0).rstrip(".:")
        return (relative_path(path, settings=settings) or "") + match.group(0)[len(path) :]

    return ABSOLUTE_PATH.sub(shorten, text)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def request_hosts(
    bound: str,
    *,
    share: bool = False,
    space_host: str | None = None,
    settings: Settings | None = None,
) -> list[str]:
    """The ``Host`` names the app answers (lower case; ``*`` any, ``.suffix`` a domain):
    ``ALLOWED_HOSTS`` when set, else loopback, the bound host (this machine's names and
    addresses when bound to all interfaces), the Space's host and Gradio's share domain."""
    listed = [h.strip().lower() for h in resolve(settings).allowed_hosts.split(",") if h.strip()]
    if listed:
        return listed
    hosts = [*LOOPBACK_NAMES, bound.strip("[]").lower()]
    if bound in ("0.0.0.0", "::", ""):
        name = socket.gethostname()
        hosts += [name.lower(), socket.getfqdn(name).lower()]
        with contextlib.suppress(OSError):
            hosts += [str(info[4][0]).lower() for info in socket.getaddrinfo(name, None)]
    if space_host:
        hosts += [h.strip().lower() for h in space_host.split(",") if h.strip()]
    if share:
        hosts.append(".gradio.live")
    return sorted(set(hosts))


def host_allowed(host_header: str, hosts: list[str]) -> bool:
    """True when the request's ``Host`` (its port ignored) is one the app answers."""
    if "*" in hosts:
        return True
    name = (urlsplit(f"//{host_header}").hostname or "").lower()
    return bool(name) and any(name == h or (h.startswith(".") and name.endswith(h)) for h in hosts)


def foreign_origin(origin: str | None, host_header: str, hosts: list[str]) -> bool:
    """True when a browser sent the request from another site: its ``Origin`` is neither this
    host nor one listed by name (``*`` does not count: it would let any site in)."""
    if origin is None:
        return False  # not a browser's cross-origin request
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return True  # "null" (a sandboxed frame, a file) and anything odd
    if parts.netloc.lower() == host_header.lower():
        return False
    # Listed by exact name only: a ``.suffix`` (the share domain) names other people's apps too.
    return not host_allowed(parts.netloc, [h for h in hosts if h != "*" and not h.startswith(".")])


def cross_site(headers: dict[bytes, str], hosts: list[str], method: str = "GET") -> bool:
    """True when another site's page sent the request (lower-case header names). Opening the
    app from another site (a link, or the Space page's frame) is a navigation, not a request a
    page can read or use to change state, so a ``GET`` navigation without ``Origin`` passes."""
    navigation = headers.get(b"sec-fetch-mode") == "navigate" and b"origin" not in headers
    if navigation and method in ("GET", "HEAD"):
        return False
    if headers.get(b"sec-fetch-site") == "cross-site":
        return True
    return foreign_origin(headers.get(b"origin"), headers.get(b"host", ""), hosts)
