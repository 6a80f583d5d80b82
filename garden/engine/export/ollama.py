"""An Ollama-ready folder: the GGUF, a ``Modelfile`` and the commands to run it.

Ollama's ``TEMPLATE`` is a Go ``text/template``, not Jinja. Rather than translating Jinja, the
model's own chat template is *probed*: conversations whose contents are unique marker strings are
rendered (``apply_chat_template(..., tokenize=False)``) and the text around each marker gives,
per role, what comes before and after its content, plus the generation prompt
(``add_generation_prompt=True``) and the default system prompt a template adds when a
conversation has none (SmolLM2's does). A Go template is then written from those pieces with
Ollama's own ``range $i, $_ := .Messages`` / ``$last`` idiom. Every piece set is checked by
re-rendering more conversations both ways; a template whose wrapping depends on anything else
(position, content, counts) is refused with an :class:`ExportError` rather than written wrong.

The default quantisation is q8_0 (``run.DEFAULT_QUANTS``), not the 4-bit q4_1 the embedded
model ships as: a fine-tune changes the weights only a little, and on a base that already sits
on a Q4_1 grid (the embedded default) a q4_1 copy rounds those changes back onto the base's
weights (a q4_1 copy of the tests' 4-step rank-16 LoRA run no longer says that Paris is the
capital of France, see tests/conftest.py; ROUGE-L per quant in docs/export.md), while q8_0 is
within rounding of f16 at half its size (145 MB for the default model; q4_1 86 MB, q4_0 78 MB) and is among the
types llama.cpp, under Ollama, runs fastest on a CPU. ``--quant q4_1`` or ``q4_0`` gives a
smaller download where that matters more.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from garden.errors import ExportError

ROLES = ("system", "user", "assistant")
Message = dict[str, str]
Render = Callable[[list[Message], bool], str]
HAND_WRITTEN = "Export --format gguf and write the Modelfile's TEMPLATE by hand."


def _marker(name: str) -> str:
    return f"GARDENPROBE{name}X"


S, U1, A1, U2, A2 = (_marker(name) for name in ("SYS", "USERONE", "ANSWERONE", "USERTWO", "END"))


def _msg(role: str, content: str) -> Message:
    return {"role": role, "content": content}


def _conversation(*turns: str, system: str | None = None) -> list[Message]:
    head = [_msg("system", system)] if system is not None else []
    return head + [_msg(("user", "assistant")[i % 2], text) for i, text in enumerate(turns)]


@dataclass(frozen=True)
class ChatPieces:
    """A chat template as fixed text around each message (what a Go template can express)."""

    start: str
    prefix: dict[str, str]
    suffix: dict[str, str]
    generation: str
    default_system: str | None

    def render(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        """The text the pieces give (full turns, as ``apply_chat_template`` renders them)."""
        conversation = list(messages)
        if self.default_system is not None and conversation[0]["role"] != "system":
            conversation.insert(0, _msg("system", self.default_system))
        text = self.start + "".join(
            self.prefix[m["role"]] + m["content"] + self.suffix[m["role"]] for m in conversation
        )
        return text + (self.generation if add_generation_prompt else "")


def chat_pieces(render: Render, name: str) -> ChatPieces:
    """Read the pieces off ``render`` (``messages, add_generation_prompt -> text``) and check
    them against more conversations; ``ExportError`` when the template is not of that shape."""
    full = _split(render, _conversation(U1, A1, U2, A2, system=S), False, name)
    g0, g1, g2, g3, g4, g5 = full
    plain = _split(render, _conversation(U1, system=S), False, name)
    prompted = _split(render, _conversation(U1, system=S), True, name)
    suffix_user, suffix_assistant = plain[2], g5
    same_turns = prompted[:2] == plain[:2] and prompted[2].startswith(suffix_user)
    _require(same_turns, name, "the generation prompt changes the earlier turns")
    generation = prompted[2][len(suffix_user) :]
    alike = g3.startswith(suffix_assistant) and g2.startswith(suffix_user) and g2 == g4
    _require(alike, name, "a turn is wrapped differently at different places")
    prefix_user, prefix_assistant = g3[len(suffix_assistant) :], g2[len(suffix_user) :]
    _require(g1.endswith(prefix_user), name, "the system turn is not followed by a user turn")
    suffix_system = g1[: len(g1) - len(prefix_user)]
    lead = _split(render, _conversation(U1, A1, U2), False, name)[0]
    _require(lead.endswith(prefix_user), name, "the first user turn changes without a system turn")
    lead = lead[: len(lead) - len(prefix_user)]
    if g0.startswith(lead):  # no default system prompt: ``lead`` is what opens any conversation
        start, prefix_system, default = lead, g0[len(lead) :], None
    else:
        system_turn = lead.startswith(g0) and lead.endswith(suffix_system)
        _require(system_turn, name, "the text before the first turn is not a system turn")
        start, prefix_system = "", g0
        default = lead[len(g0) : len(lead) - len(suffix_system)]
    pieces = ChatPieces(
        start=start,
        prefix={"system": prefix_system, "user": prefix_user, "assistant": prefix_assistant},
        suffix={"system": suffix_system, "user": suffix_user, "assistant": suffix_assistant},
        generation=generation,
        default_system=default,
    )
    for messages, prompt in PROBES:
        same = _render(render, messages, prompt, name) == pieces.render(messages, prompt)
        _require(same, name, "a turn's wrapping depends on its position or content")
    return pieces


# Conversations the pieces must render exactly as the template does (ordinary words this time).
PROBES: tuple[tuple[list[Message], bool], ...] = (
    (_conversation("Hi there."), True),
    (_conversation("What is 2+2?", system="Answer briefly."), True),
    (_conversation("Hello", "Hi! How can I help?", "Name a colour."), True),
    (_conversation("a", "b", "c", "d", "e", system="Be kind.\nBe short."), True),
    (_conversation("Hello", "Hi!"), False),
    (_conversation("One", "Two", "Three", "Four", system="S"), False),
)


def _render(render: Render, messages: list[Message], prompt: bool, name: str) -> str:
    try:
        return render(messages, prompt)
    except Exception as exc:
        raise ExportError(
            f"The chat template of {name} failed on a plain system/user/assistant conversation "
            f"({type(exc).__name__}: {_one_line(exc)}).",
            hint=HAND_WRITTEN,
        ) from exc


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120]


def _split(render: Render, messages: list[Message], prompt: bool, name: str) -> list[str]:
    """The rendered text cut at each message's content: one more piece than messages."""
    text = _render(render, messages, prompt, name)
    pieces = []
    for message in messages:
        before, found, text = text.partition(message["content"])
        once = bool(found) and message["content"] not in text
        _require(once, name, "it does not write each message's content once, as given")
        pieces.append(before)
    return [*pieces, text]


def _require(condition: bool, name: str, why: str) -> None:
    if not condition:
        raise ExportError(
            f"The chat template of {name} cannot be written as an Ollama template: {why}.",
            hint=HAND_WRITTEN,
        )


def _text(piece: str) -> str:
    """Literal template text; ``{{`` is written as a Go string so it is not read as an action."""
    return piece.replace("{{", '{{ "{{" }}')


def go_template(pieces: ChatPieces) -> str:
    """Ollama's TEMPLATE for ``pieces``. Literal text sits only between actions that do not
    trim (``{{`` / ``}}``), so its whitespace is kept; ``{{-`` only eats the layout newlines.
    The generation prompt follows the last message when it is not the assistant's, and an
    assistant's last message is left open (Ollama continues it), as Ollama's own templates do."""
    p, s = pieces.prefix, pieces.suffix
    return (
        f"{_text(pieces.start)}{{{{ range $i, $_ := .Messages }}}}\n"
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
        f'{{{{- if eq .Role "system" }}}}{_text(p["system"])}{{{{ .Content }}}}'
        f"{_text(s['system'])}"
        f'{{{{ else if eq .Role "user" }}}}{_text(p["user"])}{{{{ .Content }}}}{_text(s["user"])}'
        f"{{{{ if $last }}}}{_text(pieces.generation)}{{{{ end }}}}\n"
        f'{{{{- else if eq .Role "assistant" }}}}{_text(p["assistant"])}{{{{ .Content }}}}'
        f"{{{{ if not $last }}}}{_text(s['assistant'])}{{{{ end }}}}\n"
        "{{- end }}\n"
        "{{- end }}"
    )


def stop_tokens(tokenizer: Any, pieces: ChatPieces, model_dir: Path) -> list[str]:
    """The special tokens that end an answer: those that open the assistant's turn-end text
    (ChatML's ``<|im_end|>``), the generation config's EOS ids, and the tokenizer's EOS unless
    it equals BOS (transformers' GGUF import sets both to ``<|im_start|>``; see gguf_rewrite)."""
    added = {
        token_id: token.content
        for token_id, token in tokenizer.backend.get_added_tokens_decoder().items()
        if token.special and token.content
    }
    end = pieces.suffix["assistant"]
    turn_end = [text for text in added.values() if end.startswith(text)]
    stops = [max(turn_end, key=len)] if turn_end else []
    config = _read_json(model_dir / "generation_config.json")
    eos_ids = config.get("eos_token_id")
    for token_id in eos_ids if isinstance(eos_ids, list) else [eos_ids]:
        if isinstance(token_id, int) and token_id in added:
            stops.append(added[token_id])
    special = tokenizer.special_tokens_map
    if special.get("eos_token") and special.get("eos_token") != special.get("bos_token"):
        stops.append(special["eos_token"])
    return list(dict.fromkeys(stops))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _quoted_block(keyword: str, text: str) -> str:
    if '"""' in text or text.startswith('"') or text.endswith('"'):
        raise ExportError(
            f'The {keyword} of this model holds """ or starts or ends with ", which a Modelfile\'s '
            '"""…""" cannot quote.',
            hint=HAND_WRITTEN,
        )
    return f'{keyword} """{text}"""'


def modelfile(gguf_name: str, template: str, stops: Sequence[str], system: str | None) -> str:
    """The Modelfile text: FROM, TEMPLATE, one ``PARAMETER stop`` per stop token, SYSTEM."""
    lines = [f"FROM ./{gguf_name}", "", _quoted_block("TEMPLATE", template), ""]
    lines += [f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}" for stop in stops]
    if system:
        lines += ["", _quoted_block("SYSTEM", system)]
    return "\n".join(lines) + "\n"


def write_modelfile(
    model_dir: Path, out_dir: Path, gguf_name: str, name: str, system: str | None = None
) -> ChatPieces:
    """Write ``out_dir/Modelfile`` for the GGUF ``gguf_name`` from ``model_dir``'s tokenizer and
    chat template; ``system`` (the run's own system prompt) wins over the template's default."""
    from garden.data.light_tokenizer import LightTokenizer

    try:
        tokenizer = LightTokenizer(model_dir)
        tokenizer.get_chat_template()
    except Exception as exc:  # tokenizers raises a bare Exception for a missing file
        raise ExportError(
            f"{name} has no usable tokenizer.json or chat template ({_one_line(exc)}).",
            hint="Ollama needs a chat model; export --format gguf for a plain GGUF.",
        ) from exc

    def render(messages: list[Message], prompt: bool) -> str:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=prompt)

    pieces = chat_pieces(render, name)
    stops = stop_tokens(tokenizer, pieces, model_dir)
    text = modelfile(gguf_name, go_template(pieces), stops, system or pieces.default_system)
    (out_dir / "Modelfile").write_text(text, encoding="utf-8")
    return pieces


def run_commands(slug: str) -> list[str]:
    """The two commands that run the folder with Ollama (from inside it)."""
    name = slug.lower()
    return [f"ollama create {name} -f Modelfile", f"ollama run {name}"]


def run_note(gguf_name: str, slug: str) -> str:
    """The model card's lines on running the folder with Ollama."""
    commands = "\n".join(run_commands(slug))
    return (
        f"Files: `{gguf_name}` and a `Modelfile` (chat template, stop tokens, system prompt) "
        f"for Ollama. Run it from this folder:\n\n```sh\n{commands}\n```\n"
    )
