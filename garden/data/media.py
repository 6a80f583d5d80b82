"""Images, audio and video in rows: this app trains text models.

The rule: a row with media keeps its text and leaves the media out, with a visible warning;
a row (or turn) that holds nothing but media is an error.
"""

from __future__ import annotations

import re
from typing import Any

MEDIA_FIELDS = ("images", "image", "audios", "audio", "videos", "video", "image_url")
MEDIA_PART_TYPES = ("image_url", "image", "input_image", "input_audio", "audio", "video")
PLACEHOLDER = re.compile(r"<(?:image|audio|video)>")
MEDIA_WARNING = (
    "has {what}: this app trains text models, so only the text is kept and the media are left "
    "out; drop the media column (or the row) to silence this"
)
ONLY_MEDIA = (
    "has only images/audio as {what}; this app trains text models: drop this row or give it a text"
)


def is_media_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") in MEDIA_PART_TYPES


def strip_placeholders(text: str) -> str:
    return PLACEHOLDER.sub("", text).strip() if PLACEHOLDER.search(text) else text


def find_media(row: dict[str, Any]) -> str | None:
    """What media a raw row carries (for the warning), or None."""
    columns = [name for name in MEDIA_FIELDS if row.get(name) not in (None, "", [])]
    if columns:
        return f"a media column ({', '.join(repr(c) for c in columns)})"
    if _has(row, lambda value: isinstance(value, list) and any(map(is_media_part, value))):
        return "image/audio content parts"
    if _has(row, lambda value: isinstance(value, str) and bool(PLACEHOLDER.search(value))):
        return "<image>/<audio> placeholders"
    return None


def _has(value: Any, test: Any, depth: int = 0) -> bool:
    if test(value):
        return True
    if depth > 4:
        return False
    if isinstance(value, dict):
        return any(_has(item, test, depth + 1) for item in value.values())
    if isinstance(value, list):
        return any(_has(item, test, depth + 1) for item in value[:200])
    return False
