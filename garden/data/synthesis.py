"""Question/answer pairs from a person's documents: passages, the teacher's prompt, parsing the
teacher's replies, and the checks a pair must pass (no duplicate, an answer its passage supports).

Support is checked by string overlap, not by a second teacher call: an answer's *support* is
the share of its content words (lower-cased words that are not stop words) found in its
passage; a pair under :data:`SUPPORT_THRESHOLD` is dropped as ``unsupported``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from garden.errors import DatasetError

DOCUMENT_TYPES = (".txt", ".md", ".pdf")
PASSAGE_CHARS = 1000
MAX_PAIRS_PER_PASSAGE = 5
SUPPORT_THRESHOLD = 0.6
DROP_REASONS = ("duplicate", "unsupported", "over_n")

TEACHER_PROMPT = """Write {k} questions about the passage, each with its answer taken from the passage. Use this form:
Q: question
A: answer

Passage: The Old Mill stands on the river Brede. It was built in 1820 by Anna Holt, a miller's daughter.
Q: Where does the Old Mill stand?
A: The Old Mill stands on the river Brede.
Q: Who built the Old Mill?
A: It was built in 1820 by Anna Holt, a miller's daughter.

Passage: {passage}
"""

STOP_WORDS_TEXT = """a an and are as at be been but by can do does did for from had has have he her his how i
    if in into is it its me my no not of on or our she so than that the their them then there
    these they this those to too us was we were what when where which who whom why will with
you your"""
STOP_WORDS = frozenset(STOP_WORDS_TEXT.split())
WORD = re.compile(r"[a-z0-9]+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
QA_LINE = re.compile(
    r"^\s*(?:\d+[.)]\s*)?(?:\*\*)?(q|question|a|answer)\s*\d*\s*:\s*(?:\*\*)?\s*", re.I
)


@dataclass(frozen=True)
class Passage:
    """A few paragraphs of one document: its file name and 1-based number there."""

    source: str
    number: int
    text: str


@dataclass
class SynthPair:
    """One pair the teacher wrote, its passage, its support score and why it was dropped."""

    source: str
    passage: int
    question: str
    answer: str
    support: float = 0.0
    dropped: str | None = None


def read_document(path: Path, name: str | None = None) -> str:
    """The text of a ``.txt``, ``.md`` or ``.pdf`` file; ``DatasetError`` for any other."""
    shown = name or path.name
    suffix = Path(shown).suffix.lower()
    if suffix not in DOCUMENT_TYPES:
        raise DatasetError(
            f"{shown!r} is not a .txt, .md or .pdf document.",
            hint="Convert it to text or PDF first.",
        )
    if suffix != ".pdf":
        return path.read_text(encoding="utf-8", errors="replace")
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, OSError, ValueError) as exc:
        raise DatasetError(
            f"{shown!r} cannot be read as a PDF ({type(exc).__name__}).",
            hint="Check that the file opens in a PDF reader, or save it as text.",
        ) from exc


def _pieces(paragraph: str, limit: int) -> list[str]:
    """A paragraph as pieces of at most ``limit`` characters, cut between sentences."""
    if len(paragraph) <= limit:
        return [paragraph]
    pieces: list[str] = []
    current = ""
    for sentence in SENTENCE_END.split(paragraph):
        while len(sentence) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:limit])
            sentence = sentence[limit:]
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    return [*pieces, current] if current else pieces


def split_passages(text: str, source: str, max_chars: int = PASSAGE_CHARS) -> list[Passage]:
    """Paragraphs (split at blank lines, whitespace folded) grouped up to ``max_chars``."""
    paragraphs = [" ".join(block.split()) for block in re.split(r"\n\s*\n", text)]
    passages: list[str] = []
    current = ""
    for paragraph in paragraphs:
        for piece in _pieces(paragraph, max_chars) if paragraph else []:
            if current and len(current) + 2 + len(piece) > max_chars:
                passages.append(current)
                current = ""
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        passages.append(current)
    return [Passage(source, number, body) for number, body in enumerate(passages, 1)]


def plan_prompts(passages: list[Passage], n: int) -> list[tuple[Passage, int]]:
    """The passages to ask about (spread over all of them) and how many pairs to ask of each,
    so that about ``n`` pairs are asked for in all."""
    if not passages or n <= 0:
        return []
    per = min(MAX_PAIRS_PER_PASSAGE, max(1, math.ceil(n / len(passages))))
    count = min(len(passages), math.ceil(n / per))
    chosen = sorted({round(i * len(passages) / count) for i in range(count)})
    return [(passages[i], per) for i in chosen]


def teacher_prompt(passage: Passage, k: int) -> str:
    return TEACHER_PROMPT.format(k=k, passage=passage.text)


def _clean(text: str) -> str:
    return " ".join(text.replace("**", "").split()).strip(" \"'")


def _json_pairs(reply: str) -> list[tuple[str, str]] | None:
    start = min((i for i in (reply.find("["), reply.find("{")) if i >= 0), default=-1)
    if start < 0:
        return None
    try:
        value: Any = json.loads(reply[start : max(reply.rfind("]"), reply.rfind("}")) + 1])
    except json.JSONDecodeError:
        return None
    if isinstance(value, dict):
        value = value.get("pairs", [value])
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if isinstance(item, dict):
            question = item.get("question", item.get("q", ""))
            answer = item.get("answer", item.get("a", ""))
            if isinstance(question, str) and isinstance(answer, str):
                out.append((_clean(question), _clean(answer)))
    return [pair for pair in out if all(pair)] or None


def parse_reply(reply: str) -> list[tuple[str, str]]:
    """The ``(question, answer)`` pairs in a teacher's reply, written as ``Q: … A: …`` lines
    (numbered, bold or spelled out too) or as JSON; ``[]`` when it holds none."""
    found = _json_pairs(reply)
    if found:
        return found
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    answer: list[str] = []

    def close() -> None:
        if question and _clean(" ".join(answer)):
            pairs.append((question, _clean(" ".join(answer))))

    for line in reply.splitlines():
        match = QA_LINE.match(line)
        if match is None:
            continue
        text = _clean(line[match.end() :])
        if match.group(1).lower().startswith("q"):
            close()
            question, answer = text or None, []
        elif question is not None and not answer:
            answer = [text]
    close()
    return pairs


def content_words(text: str) -> list[str]:
    return [word for word in WORD.findall(text.lower()) if word not in STOP_WORDS]


def support_score(answer: str, passage: str) -> float:
    """The share of the answer's content words found in the passage (a plural ``s`` aside)."""
    words = content_words(answer)
    if not words:
        return 0.0
    known = set(WORD.findall(passage.lower()))
    found = sum(1 for w in words if w in known or w.rstrip("s") in known or f"{w}s" in known)
    return found / len(words)


def normalised_question(question: str) -> str:
    return " ".join(WORD.findall(question.lower()))


def check_pairs(
    pairs: list[SynthPair],
    passages: dict[tuple[str, int], Passage],
    n: int,
    threshold: float = SUPPORT_THRESHOLD,
) -> list[SynthPair]:
    """Score each pair against its passage and mark why it is dropped: a question seen before
    (``duplicate``), an answer under ``threshold`` (``unsupported``), or past ``n`` kept."""
    seen: set[str] = set()
    kept = 0
    for pair in pairs:
        pair.support = round(
            support_score(pair.answer, passages[pair.source, pair.passage].text), 3
        )
        key = normalised_question(pair.question)
        if key in seen:
            pair.dropped = "duplicate"
        elif pair.support < threshold:
            pair.dropped = "unsupported"
        elif kept >= n:
            pair.dropped = "over_n"
        else:
            kept += 1
        seen.add(key)
    return pairs


def chat_row(question: str, answer: str) -> dict[str, Any]:
    """A kept pair as a chat dataset row."""
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }
