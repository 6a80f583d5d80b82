"""`model-garden data synthesize`: a chat dataset from documents, written by a teacher model."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from garden import present
from garden.cli.output import console, fail, print_json
from garden.errors import GardenError


@click.command("synthesize")
@click.argument("documents", nargs=-1, metavar="DOCS…", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="Name to save the dataset under.")
@click.option(
    "--teacher", default=None, metavar="ENDPOINT_OR_MODEL",
    help="A model id or folder (default: the embedded model) or an OpenAI-compatible URL.",
)  # fmt: skip
@click.option("--teacher-model", default=None, help="The endpoint's model (default: its first).")
@click.option("--api-key", default=None, envvar="TEACHER_API_KEY", help="The endpoint's key.")
@click.option("--n", "n", type=int, default=50, show_default=True, help="Pairs wanted (at most).")
@click.option("--max-new-tokens", type=int, default=256, show_default=True)
@click.option("--eval-fraction", type=click.FloatRange(0.0, 0.5), default=0.1, show_default=True)
@click.option(
    "--review", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write the kept pairs to this JSONL file to edit (then `data import` it) and stop.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def synthesize_cmd(
    documents: tuple[str, ...],
    name: str,
    teacher: str | None,
    teacher_model: str | None,
    api_key: str | None,
    n: int,
    max_new_tokens: int,
    eval_fraction: float,
    review: Path | None,
    as_json: bool,
) -> None:
    """Ask a teacher for question/answer pairs about DOCS (.txt, .md, .pdf) and save them."""
    from garden.services import synthesis

    saved, written = None, 0
    try:
        request = synthesis.SynthesisRequest(
            documents=list(documents), name=name, n=n, teacher=teacher,
            teacher_model=teacher_model, api_key=api_key, max_new_tokens=max_new_tokens,
        )  # fmt: skip
        view = synthesis.synthesize(request)
        if review is not None:
            written = synthesis.write_review(view, review)
        else:
            saved = synthesis.save_pairs(view, eval_fraction=eval_fraction) if view.kept else None
    except GardenError as exc:
        fail(exc)
    if as_json:
        print_json(view.model_dump(mode="json") | ({} if review else {"dataset": saved}))
        return
    dropped = ", ".join(f"{count} {why}" for why, count in view.dropped.items() if count)
    console.print(
        f"{view.teacher} wrote {view.generated} pairs about {view.prompts} of {view.passages} "
        f"passages: {view.kept} kept" + (f", dropped {dropped}" if dropped else "")
        + (f"; {view.unparseable} replies held no pair" if view.unparseable else ""),
        markup=False, highlight=False,
    )  # fmt: skip
    cost = present.synthesis_cost(view.energy_kwh, view.emissions_kg, remote=view.remote)
    console.print(f"Synthesis energy: {cost}", markup=False, highlight=False)
    if review is not None:
        console.print(
            f"Wrote {written} pairs to {escape(str(review))}: edit it, then run "
            f"`model-garden data import {escape(str(review))} --name {escape(name)}`.",
            highlight=False,
        )
    elif saved is None:
        fail("No pair was kept, so nothing was saved. Try a larger --n or a stronger --teacher.")
    else:
        split = present.split_line(saved.rows, saved.train_rows, saved.eval_rows, saved.format)
        console.print(
            f"Saved [green]{escape(saved.name)}[/] as [bold]{saved.id}[/] ({saved.kind}): {split}",
            highlight=False,
        )
