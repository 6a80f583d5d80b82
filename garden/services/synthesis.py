"""A chat dataset from a person's documents: a teacher model writes question/answer pairs about
each passage, duplicates and answers their passage does not support are dropped, a person
reviews the rest, and they are saved through the normal importer with the generation's cost.

The teacher is a local model (a worker process, metered by CodeCarbon as an "other" record) or
an OpenAI-compatible endpoint under the remote endpoint rules (its energy is unknown; the local
work is still metered). Every limit is enforced here, so the tab, REST and the CLI share them.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import Field

from garden.config import Settings
from garden.data import synthesis as synth
from garden.data.catalog import check_name
from garden.data.uploads import sanitize_filename
from garden.engine.carbon.meter import CarbonMeter
from garden.engine.synthesis import TeacherRequest, remote_replies, replies_in_worker
from garden.errors import DatasetError, GardenError, JobError, LimitError
from garden.services import datasets, visitors, web
from garden.services.base import View, resolve
from garden.services.datasets import DatasetView, ImportRequest
from garden.services.endpoints import Endpoint, check_endpoint, checked_here, endpoint_models
from garden.store import get_store

__all__ = [
    "MAX_DOCUMENTS",
    "MAX_N",
    "SUPPORT_THRESHOLD",
    "BundledDocument",
    "DocumentSource",
    "PairView",
    "SynthesisRequest",
    "SynthesisView",
    "bundled_documents",
    "save_pairs",
    "synthesize",
    "write_review",
]

MAX_N = 500
MAX_DOCUMENTS = 20
MAX_NEW_TOKENS = 1024
SUPPORT_THRESHOLD = synth.SUPPORT_THRESHOLD
SMALL_SET = 10  # fewer accepted pairs than this are all kept for training (no eval split)
DOCUMENTS_DIR = Path(__file__).resolve().parent.parent.parent / "assets" / "documents"
DOCS_HINT = "Give .txt, .md or .pdf files (or the bundled example document)."

Progress = Callable[[float, str], None]


class DocumentSource(View):
    """A document the web may read: an upload the server saved, or a bundled example's name."""

    kind: Literal["upload", "bundled"]
    value: str


class BundledDocument(View):
    name: str
    description: str


class SynthesisRequest(View):
    """What to synthesise: documents (web sources, or local paths from the CLI), the dataset's
    name (the meter's label), about ``n`` pairs, and the teacher: a model id or folder
    (default: the embedded model) or an endpoint's URL with ``teacher_model`` and ``api_key``."""

    documents: list[DocumentSource | str]
    name: str
    n: int = 50
    teacher: str | None = None
    teacher_model: str | None = None
    api_key: str | None = None
    max_new_tokens: int = 256
    passage_chars: int = synth.PASSAGE_CHARS


class PairView(View):
    """A pair for review: its passage, support score, why it was dropped, and whether to keep it."""

    source: str
    passage: int
    question: str
    answer: str
    support: float
    dropped: str | None = None
    accepted: bool = True


class SynthesisView(View):
    """What a synthesis made. ``generated`` pairs = ``kept`` + the sum of ``dropped`` (by reason);
    ``unparseable`` replies held no pair and are not in ``generated``."""

    name: str
    teacher: str
    remote: bool
    documents: list[str]
    passages: int
    prompts: int
    generated: int
    kept: int
    dropped: dict[str, int]
    unparseable: int
    support_threshold: float = synth.SUPPORT_THRESHOLD
    pairs: list[PairView] = Field(default_factory=list)
    emission_id: str | None = None
    energy_kwh: float | None = Field(None, description="None: unknown (remote teacher)")
    emissions_kg: float | None = None
    seconds: float = 0.0


def bundled_documents() -> list[BundledDocument]:
    """The example documents shipped in ``assets/documents`` (the first line is the title)."""
    out = []
    for path in sorted(DOCUMENTS_DIR.glob("*")):
        if path.suffix in synth.DOCUMENT_TYPES and path.is_file():
            title = path.read_text(encoding="utf-8").strip().splitlines()[0].lstrip("# ")
            out.append(BundledDocument(name=path.name, description=title))
    return out


def _document(source: DocumentSource | str) -> tuple[Path, str]:
    """The file to read and the name to show for one document."""
    if isinstance(source, str):
        path = Path(source).expanduser()
        if not path.is_file():
            raise DatasetError(f"There is no file {source!r}.", hint=DOCS_HINT)
        return path, path.name
    if source.kind == "upload":
        path = datasets._upload_path(source.value)
        return path, path.name
    if source.value not in {doc.name for doc in bundled_documents()}:
        raise DatasetError(f"There is no bundled document {source.value!r}.", hint=DOCS_HINT)
    return DOCUMENTS_DIR / source.value, source.value


def _check_limits(request: SynthesisRequest, settings: Settings) -> list[tuple[Path, str]]:
    if not request.documents:
        raise DatasetError("No documents given.", hint=DOCS_HINT)
    if len(request.documents) > MAX_DOCUMENTS:
        raise LimitError(
            f"{len(request.documents)} documents is more than {MAX_DOCUMENTS}.",
            hint="Synthesise from fewer documents at a time.",
        )
    if not 1 <= request.n <= MAX_N:
        raise LimitError(
            f"n must be from 1 to {MAX_N}, not {request.n}.", hint="Ask for fewer pairs."
        )
    if not 16 <= request.max_new_tokens <= MAX_NEW_TOKENS:
        raise LimitError(
            f"max_new_tokens must be from 16 to {MAX_NEW_TOKENS}.", hint="256 suits most teachers."
        )
    if not 200 <= request.passage_chars <= 8000:
        raise LimitError("passage_chars must be from 200 to 8000.", hint="1000 is typical.")
    files = [_document(source) for source in request.documents]
    for _path, name in files:
        if Path(name).suffix.lower() not in synth.DOCUMENT_TYPES:
            raise DatasetError(f"{name!r} is not a .txt, .md or .pdf document.", hint=DOCS_HINT)
    size = sum(path.stat().st_size for path, _ in files)
    if size > settings.max_upload_mb * 1024 * 1024:
        raise LimitError(
            f"The documents hold {size / 1e6:.1f} MB, more than {settings.max_upload_mb} MB.",
            hint="Give fewer or smaller documents.",
        )
    return files


def _teacher(
    request: SynthesisRequest, from_web: bool, settings: Settings
) -> tuple[TeacherRequest, str]:
    """The engine's teacher request (prompts left empty) and the teacher's label."""
    teacher = (request.teacher or "").strip()
    if teacher.startswith(("http://", "https://")):
        endpoint = Endpoint(base_url=teacher, api_key=request.api_key or None)
        endpoint = (check_endpoint if from_web else checked_here)(endpoint, settings=settings)
        model = (request.teacher_model or "").strip() or endpoint_models(endpoint)[0]
        base_url = endpoint.remote().base_url
        config = TeacherRequest(prompts=[], base_url=base_url, model=model, api_key=request.api_key)
        return config, f"{model} at {base_url}"
    from garden.models import resolve_model

    ref = web.check_model(teacher, settings=settings) if from_web else teacher or None
    info = resolve_model(ref, settings)
    return TeacherRequest(prompts=[], model_path=info.path or info.id), info.id


def _local_replies(request: TeacherRequest) -> list[str]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(replies_in_worker, request.model_dump()).result()


def synthesize(
    request: SynthesisRequest,
    *,
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> SynthesisView:
    """Ask the teacher for pairs about the documents' passages and check them (nothing saved)."""
    settings = resolve(settings)
    say = progress or (lambda _f, _m: None)
    from_web = any(isinstance(source, DocumentSource) for source in request.documents)
    files = _check_limits(request, settings)
    name = check_name(request.name, settings)
    passages: list[synth.Passage] = []
    for path, shown in files:
        passages += synth.split_passages(
            synth.read_document(path, shown), shown, request.passage_chars
        )
    if not passages:
        raise DatasetError("The documents hold no text.", hint=DOCS_HINT)
    config, label = _teacher(request, from_web, settings)
    plan = synth.plan_prompts(passages, request.n)
    config = config.model_copy(
        update={
            "prompts": [synth.teacher_prompt(passage, k) for passage, k in plan],
            "max_new_tokens": request.max_new_tokens,
        }
    )
    remote = config.base_url is not None
    say(0.1, f"Asking {label} about {len(plan)} passages…")
    started = time.monotonic()
    meter = CarbonMeter(kind="other", label=f"synthesis of {name}", settings=settings).start()
    try:
        with visitors.in_flight("synthesis", settings=settings):
            replies = remote_replies(config) if remote else _local_replies(config)
    except GardenError:
        raise
    except Exception as exc:
        raise JobError(
            f"The teacher failed: {type(exc).__name__}: {str(exc)[:200]}",
            hint="See the app log for details.",
        ) from exc
    finally:
        record = meter.stop()
    say(0.9, "Checking the pairs…")
    pairs: list[synth.SynthPair] = []
    unparseable = 0
    for (passage, _), reply in zip(plan, replies, strict=True):
        found = synth.parse_reply(reply)
        unparseable += not found
        pairs += [synth.SynthPair(passage.source, passage.number, q, a) for q, a in found]
    by_key = {(p.source, p.number): p for p in passages}
    synth.check_pairs(pairs, by_key, request.n)
    dropped = {reason: sum(p.dropped == reason for p in pairs) for reason in synth.DROP_REASONS}
    measured = record.status == "final" and not remote
    return SynthesisView(
        name=name,
        teacher=label,
        remote=remote,
        documents=[shown for _, shown in files],
        passages=len(passages),
        prompts=len(plan),
        generated=len(pairs),
        kept=sum(p.dropped is None for p in pairs),
        dropped=dropped,
        unparseable=unparseable,
        pairs=[PairView(**vars(p), accepted=p.dropped is None) for p in pairs],
        emission_id=record.id,
        energy_kwh=record.energy_kwh if measured else None,
        emissions_kg=record.emissions_kg if measured else None,
        seconds=round(time.monotonic() - started, 2),
    )


def _rows(pairs: list[PairView]) -> list[dict[str, object]]:
    return [
        synth.chat_row(" ".join(p.question.split()), p.answer.strip())
        for p in pairs
        if p.accepted and p.question.strip() and p.answer.strip()
    ]


def write_review(view: SynthesisView, path: Path) -> int:
    """The accepted pairs as chat rows in a JSONL file to edit and then import; their count."""
    rows = _rows(view.pairs)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")
    return len(rows)


def save_pairs(
    view: SynthesisView,
    pairs: list[PairView] | None = None,
    *,
    eval_fraction: float = 0.1,
    seed: int = 42,
    settings: Settings | None = None,
    visitor: visitors.Visitor | None = None,
) -> DatasetView:
    """Save the accepted pairs (``pairs``: as a person edited them; default: the view's) as the
    chat dataset ``view.name`` through the importer, with the synthesis's teacher and cost."""
    settings = resolve(settings)
    rows = _rows(view.pairs if pairs is None else pairs)
    if not rows:
        raise DatasetError(
            "No pair is accepted.", hint="Accept at least one pair, or generate again with more."
        )
    if len(rows) < SMALL_SET:
        eval_fraction = 0.0
    folder = Path(tempfile.mkdtemp(prefix="synth-", dir=settings.temp_path))
    try:
        path = folder / f"{sanitize_filename(view.name)}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
        request = ImportRequest(
            source=str(path), name=view.name, eval_fraction=eval_fraction, seed=seed
        )
        saved = datasets.import_dataset(request, settings=settings, visitor=visitor)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    facts = {
        "source": f"synthesised from {', '.join(view.documents)}"[:500],
        "teacher": view.teacher,
        "synthesis_emission_id": view.emission_id,
        "synthesis_energy_kwh": view.energy_kwh,
        "synthesis_emissions_kg": view.emissions_kg,
    }
    get_store(settings.db_path).update("datasets", saved.id, facts)
    return datasets.get_dataset(saved.id, settings=settings)
