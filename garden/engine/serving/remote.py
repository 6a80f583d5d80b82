"""The ``remote`` chat backend: any OpenAI-compatible endpoint (``model-garden serve``, a vLLM
cluster, a hosted API) through the official ``openai`` client.

Answers stream as :class:`ChatDelta` steps like the local engines'; ``abort(request_id)`` from
another thread closes the stream, and the server (vLLM) drops a request whose client left.
Redirects are not followed, so an allowed host cannot forward a request elsewhere.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from garden.engine.serving.types import AnswerStats, ChatDelta, GenerationConfig, message_text
from garden.errors import ServingError

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 300.0
URL_HINT = "Type the endpoint's base URL, e.g. http://127.0.0.1:8000/v1."


@dataclass(frozen=True)
class RemoteEndpoint:
    """An OpenAI-compatible server: its base URL (``…/v1``) and an optional API key."""

    base_url: str
    api_key: str | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``); other names may resolve
    anywhere, so they are not."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def endpoint_url(text: str) -> str:
    """A base URL from what a person typed: http(s) with a host; ``/v1`` when no path is given."""
    url = (text or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServingError(f"{url[:80]!r} is not an http(s) URL with a host.", hint=URL_HINT)
    if parts.username or parts.password:
        raise ServingError(
            "The endpoint URL carries a user name or password.",
            hint="Give the key in the API key field (or --api-key) instead.",
        )
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def openai_client(endpoint: RemoteEndpoint) -> Any:
    """An ``openai`` client for the endpoint: its own key only, no retries, no redirects."""
    from openai import DefaultHttpxClient, OpenAI, Timeout

    timeout = Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    return OpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key or "none",  # never the caller's OPENAI_API_KEY
        max_retries=0,
        timeout=timeout,
        http_client=DefaultHttpxClient(follow_redirects=False, timeout=timeout),
    )


@contextmanager
def _translated(endpoint: RemoteEndpoint, model: str | None = None) -> Iterator[None]:
    """The ``openai`` client's errors as one-line ``ServingError``s that say what to do."""
    import openai

    url = endpoint.base_url
    try:
        yield
    except openai.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        raise ServingError(
            f"Cannot reach {url}: {type(cause).__name__}: {str(cause)[:200] or 'no answer'}.",
            hint="Check the URL and that the server is running (model-garden serve prints it).",
        ) from exc
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise ServingError(
            f"{url} refused the API key (HTTP {exc.status_code}).",
            hint="Give the key the server was started with (vLLM: --api-key).",
        ) from exc
    except openai.NotFoundError as exc:
        raise _not_found(endpoint, model) from exc
    except openai.APIStatusError as exc:
        raise ServingError(
            f"{url} answered HTTP {exc.status_code}: {_error_text(exc)[:300]}",
            hint="Check the model name and the generation settings, then retry.",
        ) from exc
    except openai.OpenAIError as exc:
        raise ServingError(
            f"{url} failed: {str(exc)[:300]}", hint="Retry, or check the server."
        ) from exc


def ask_once(
    client: Any, endpoint: RemoteEndpoint, model: str, prompt: str, max_tokens: int
) -> str:
    """``model``'s greedy reply to one user message (a judge's verdict, a teacher's pairs);
    the client's errors as one-line ``ServingError``s."""
    with _translated(endpoint, model):
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            temperature=0.0,
            max_tokens=max_tokens,
        )
    return str(reply.choices[0].message.content or "")


def _error_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return str(body.get("message") or body)
    return str(getattr(exc, "message", exc))


def _not_found(endpoint: RemoteEndpoint, model: str | None) -> ServingError:
    try:
        served = list_models(endpoint)
    except ServingError:
        served = []
    if model and served:
        return ServingError(
            f"{endpoint.base_url} does not serve a model named {model!r}.",
            hint=f"Pick one it serves: {', '.join(served)}.",
        )
    return ServingError(
        f"{endpoint.base_url} has no OpenAI API there (HTTP 404).",
        hint="Check the base URL; vLLM's ends with /v1.",
    )


def list_models(endpoint: RemoteEndpoint) -> list[str]:
    """The names of the models the endpoint serves (GET /v1/models)."""
    with _translated(endpoint):
        return [model.id for model in openai_client(endpoint).models.list()]


def _conversation(messages: list[dict[str, Any]], system_prompt: str) -> list[dict[str, str]]:
    """Role/content messages for the API, with ``system_prompt`` replacing any system message."""
    kept = [
        {"role": m["role"], "content": message_text(m.get("content"))}
        for m in messages
        if m.get("role") in ("user", "assistant")
        or (m.get("role") == "system" and not system_prompt)
    ]
    if system_prompt.strip():
        kept.insert(0, {"role": "system", "content": system_prompt.strip()})
    if not kept or kept[-1]["role"] != "user":
        raise ServingError(
            "The conversation must end with a user message.", hint="Type a message first."
        )
    return kept


def _sampling(config: GenerationConfig) -> dict[str, Any]:
    """OpenAI parameters; top-k and repetition penalty are vLLM's extensions, sent only when set."""
    params: dict[str, Any] = {
        "max_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": 1.0 if config.greedy else config.top_p,
    }
    if config.stop:
        params["stop"] = list(config.stop)
    if config.seed is not None:
        params["seed"] = config.seed
    extra: dict[str, Any] = {}
    if config.top_k and not config.greedy:
        extra["top_k"] = config.top_k
    if config.repetition_penalty != 1.0:
        extra["repetition_penalty"] = config.repetition_penalty
    if config.ignore_eos:
        extra["ignore_eos"] = True
    if extra:
        params["extra_body"] = extra
    return params


class RemoteChats:
    """Streams to remote endpoints, by request id, so that another thread can stop one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, Any] = {}
        self._aborted: set[str] = set()

    def abort(self, request_id: str) -> None:
        """Close the request's stream (no-op for an unknown or finished request)."""
        with self._lock:
            stream = self._live.pop(request_id, None)
            if stream is not None:
                self._aborted.add(request_id)
        if stream is not None:
            stream.close()

    def _stopped(self, request_id: str) -> bool:
        with self._lock:
            return request_id in self._aborted

    def stream_chat(
        self,
        endpoint: RemoteEndpoint,
        model: str,
        messages: list[dict[str, Any]],
        config: GenerationConfig,
        request_id: str,
    ) -> Iterator[ChatDelta]:
        """Stream ``model``'s answer from the endpoint; the last step carries the stats."""
        config.validate()
        conversation = _conversation(messages, config.system_prompt)
        stats = AnswerStats(backend="remote", model=model)
        t_start = time.time()
        text, pieces, usage_tokens, finish = "", 0, None, None
        try:
            with _translated(endpoint, model):
                stream = openai_client(endpoint).chat.completions.create(
                    model=model,
                    messages=conversation,
                    stream=True,
                    stream_options={"include_usage": True},
                    **_sampling(config),
                )
                with self._lock:
                    self._live[request_id] = stream
                try:
                    for chunk in stream:
                        if self._stopped(request_id):
                            break
                        if chunk.usage is not None:
                            usage_tokens = chunk.usage.completion_tokens
                            stats.prompt_tokens = chunk.usage.prompt_tokens
                        for choice in chunk.choices:
                            finish = choice.finish_reason or finish
                            delta = choice.delta.content or ""
                            if not delta:
                                continue
                            pieces += 1
                            text += delta
                            if stats.ttft_s is None:
                                stats.ttft_s = round(time.time() - t_start, 4)
                            yield ChatDelta(delta, text, pieces)
                except Exception:
                    if not self._stopped(request_id):
                        raise
        finally:
            aborted = self._finish(request_id)
        t_end = time.time()
        stats.tokens = usage_tokens if usage_tokens is not None else pieces
        stats.duration_s = round(t_end - t_start, 4)
        if t_end > t_start and stats.tokens:
            stats.tokens_per_second = round(stats.tokens / (t_end - t_start), 2)
        stats.finish_reason = "abort" if aborted else (finish or "stop")
        yield ChatDelta("", text, stats.tokens, done=True, stats=stats)

    def _finish(self, request_id: str) -> bool:
        """Forget the stream (closing it); whether it was aborted."""
        with self._lock:
            stream = self._live.pop(request_id, None)
            aborted = request_id in self._aborted
            self._aborted.discard(request_id)
        if stream is not None:
            stream.close()
        return aborted


remote_chats = RemoteChats()
