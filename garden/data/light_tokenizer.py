"""A model's tokenizer without transformers: ``tokenizer.json`` through the ``tokenizers`` package
and the chat template through Jinja2, so counting tokens and rendering samples imports no torch.

It offers what the data engine uses of a transformers tokenizer (``chat_template``,
``apply_chat_template(..., tokenize=False)`` and ``tokenizer(texts, add_special_tokens=False)``)
and renders templates the way transformers does (``utils/chat_template_utils.py``): an
``ImmutableSandboxedEnvironment`` with ``trim_blocks``/``lstrip_blocks``, the ``loopcontrols``
extension, a ``tojson`` filter that keeps non-ASCII text, ``raise_exception`` and
``strftime_now``, and the named special tokens (``bos_token``, ``eos_token``…) as variables.
A model folder without ``tokenizer.json`` keeps the transformers tokenizer (``garden.data.tokens``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

# transformers' SpecialTokensMixin.SPECIAL_TOKENS_ATTRIBUTES: passed to every template render.
SPECIAL_TOKENS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


def has_tokenizer_json(folder: str | Path) -> bool:
    return Path(folder, "tokenizer.json").is_file()


def _token_text(value: Any) -> str | None:
    """A special token as written in ``tokenizer_config.json``: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def _chat_templates(folder: Path, config: Mapping[str, Any]) -> str | dict[str, str] | None:
    """The folder's chat template(s), found as transformers finds them: ``chat_template.jinja``
    and ``additional_chat_templates/*.jinja`` when there are any (they replace the config's),
    else ``chat_template`` in ``tokenizer_config.json`` (a string or a list of named ones)."""
    templates: dict[str, str] = {}
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        templates["default"] = jinja.read_text(encoding="utf-8")
    extra = folder / "additional_chat_templates"
    if extra.is_dir():
        for path in sorted(extra.glob("*.jinja")):
            templates[path.stem] = path.read_text(encoding="utf-8")
    if not templates:
        configured = config.get("chat_template")
        if isinstance(configured, str):
            templates["default"] = configured
        elif isinstance(configured, list):
            templates.update(
                {item["name"]: item["template"] for item in configured if isinstance(item, dict)}
            )
    if not templates:
        return None
    if list(templates) == ["default"]:
        return templates["default"]
    return templates


@lru_cache(maxsize=8)
def compile_template(source: str) -> Any:
    """A chat template compiled as transformers compiles it (cached per template text)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        value: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: tuple[str, str] | None = None,
        sort_keys: bool = False,
    ) -> str:
        return json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
            sort_keys=sort_keys,
        )  # fmt: skip

    def strftime_now(pattern: str) -> str:
        return datetime.now().strftime(pattern)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


class LightTokenizer:
    """``tokenizer.json`` and the chat template of one model folder (see the module docstring)."""

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.backend = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        config = _read_json(self.folder / "tokenizer_config.json")
        special = {**_read_json(self.folder / "special_tokens_map.json"), **config}
        self.special_tokens_map: dict[str, str] = {
            name: text for name in SPECIAL_TOKENS if (text := _token_text(special.get(name)))
        }
        self.chat_template = _chat_templates(self.folder, config)

    def get_chat_template(self, tools: Sequence[Any] | None = None) -> str:
        """The template to render with (transformers' rule for a folder with several)."""
        template = self.chat_template
        if isinstance(template, dict):
            if tools is not None and "tool_use" in template:
                return template["tool_use"]
            if "default" in template:
                return template["default"]
            raise ValueError(f"{self.folder} has several chat templates and none is the default.")
        if template is None:
            raise ValueError(f"{self.folder} has no chat template.")
        return template

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        tokenize: bool = False,
        add_generation_prompt: bool = False,
        **kwargs: Any,
    ) -> str:
        """The conversation rendered through the chat template, as text (``tokenize=False``)."""
        if tokenize:
            raise NotImplementedError("LightTokenizer renders text; count tokens with __call__.")
        if not conversation:
            raise ValueError("Cannot apply chat template to an empty conversation.")
        template = compile_template(self.get_chat_template(tools))
        return str(
            template.render(
                messages=list(conversation),
                tools=[dict(tool) for tool in tools] if tools is not None else None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **{**self.special_tokens_map, **kwargs},
            )
        )

    def __call__(
        self, texts: str | Sequence[str], add_special_tokens: bool = True
    ) -> dict[str, Any]:
        """``{"input_ids": ...}`` for one text or a batch, like a transformers fast tokenizer."""
        if isinstance(texts, str):
            encoding = self.backend.encode(texts, add_special_tokens=add_special_tokens)
            return {"input_ids": encoding.ids}
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [encoding.ids for encoding in encodings]}
