"""The Data tab's sample previews: pairs as prompt | chosen | rejected, labelled answers with
their label, tool conversations with their tools and calls, each rendered as trained; an
answer's reasoning trace folded in a ``<details>`` block."""

from __future__ import annotations

import html

from garden.services.datasets import InspectView, SamplePreview
from garden.ui.boundary import code, code_block, plain

CELL_CHARS = 600
RENDERED_CHARS = 4000


def _cell(text: str) -> str:
    short = text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + "…"
    return plain(short).replace("|", "\\|").replace("\n", "<br>") or " "


def reasoning_block(reasoning: str) -> str:
    """The reasoning folded (one HTML block: escaped, its line breaks as ``<br>``), or ""."""
    if not reasoning.strip():
        return ""
    words = len(reasoning.split())
    short = reasoning if len(reasoning) <= RENDERED_CHARS else reasoning[:RENDERED_CHARS] + "…"
    body = html.escape(short).replace("\n", "<br>")
    return f"<details><summary>Reasoning ({words:,} words)</summary><div>{body}</div></details>"


def _pair(number: int, preview: SamplePreview) -> str:
    table = (
        "| prompt | chosen ✅ | rejected ❌ |\n|---|---|---|\n"
        f"| {_cell(preview.prompt)} | {_cell(preview.chosen)} | {_cell(preview.rejected)} |"
    )
    prompt = code_block(preview.rendered_prompt[:RENDERED_CHARS])
    parts = [f"**Pair {number}**", table, reasoning_block(preview.reasoning)]
    return "\n\n".join(filter(None, [*parts, f"The prompt as the model sees it:\n{prompt}"]))


def _titled(number: int, preview: SamplePreview) -> str:
    title = f"**Sample {number}**"
    if preview.kind == "feedback":
        title += " — label: " + ("👍 good (true)" if preview.label else "👎 bad (false)")
    if preview.tools:
        title += " — tools: " + ", ".join(code(name) for name in preview.tools)
    if preview.calls:
        title += "\n\nCalls: " + ", ".join(code(call[:200]) for call in preview.calls)
    if preview.tools and not any(name in preview.rendered for name in preview.tools):
        title += "\n\n_This model's chat template does not show the tools._"
    if folded := reasoning_block(preview.reasoning):
        title += f"\n\n{folded}\n"
    return f"{title}\n{code_block(preview.rendered[:RENDERED_CHARS])}"


def samples_markdown(view: InspectView | None, start: int, end: int) -> str:
    """The samples ``start``..``end`` of an inspection, previewed by their kind."""
    if view is None:
        return ""
    if not view.previews:
        return "\n\n".join(
            f"**Sample {start + i + 1}**\n{code_block(sample[:RENDERED_CHARS])}"
            for i, sample in enumerate(view.rendered[start:end])
        )
    return "\n\n".join(
        (_pair if preview.kind == "preference" else _titled)(start + i + 1, preview)
        for i, preview in enumerate(view.previews[start:end])
    )
