"""Data synthesis: passages from documents, the teacher's replies parsed, pairs checked, limits,
and one real run of the embedded model as the teacher on the bundled document, metered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from garden.data import synthesis as synth
from garden.errors import DatasetError, GardenError, LimitError, ServingError

GUIDE = "moonwell_guide.md"


def write_pdf(path: Path, lines: list[str]) -> None:
    """A one-page PDF with ``lines`` of Helvetica text, built with pypdf alone."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    shown = " 0 -20 Td ".join(f"({line}) Tj" for line in lines)
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 72 720 Td {shown} ET".encode())
    page[NameObject("/Contents")] = writer._add_object(stream)
    writer.write(path)


def test_documents_split_into_numbered_passages(tmp_path: Path) -> None:
    paragraphs = [f"Paragraph {i} tells of pond number {i}. " * 6 for i in range(8)]
    txt = tmp_path / "ponds.txt"
    txt.write_text("\n\n".join(paragraphs), encoding="utf-8")
    passages = synth.split_passages(synth.read_document(txt), "ponds.txt", max_chars=600)
    assert [p.number for p in passages] == list(range(1, len(passages) + 1))
    assert {p.source for p in passages} == {"ponds.txt"}
    assert all(len(p.text) <= 600 for p in passages) and len(passages) == 4  # two per passage
    assert passages[0].text.startswith("Paragraph 0") and "\n\nParagraph 1" in passages[0].text
    long = synth.split_passages("One sentence here. " * 100, "long.md", max_chars=300)
    assert len(long) > 5 and all(len(p.text) <= 300 for p in long)

    md = tmp_path / "guide.md"
    md.write_text("# Title\n\nThe cat is Captain Thistle.\n", encoding="utf-8")
    assert synth.split_passages(synth.read_document(md), md.name)[0].text == (
        "# Title\n\nThe cat is Captain Thistle."
    )

    pdf = tmp_path / "notes.pdf"
    write_pdf(pdf, ["The Moonwell has seven ponds.", "Captain Thistle is a grey tabby."])
    [passage] = synth.split_passages(synth.read_document(pdf), pdf.name)
    assert passage.text == "The Moonwell has seven ponds. Captain Thistle is a grey tabby."
    assert (passage.source, passage.number) == ("notes.pdf", 1)

    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"not a pdf at all")
    with pytest.raises(DatasetError, match="cannot be read as a PDF"):
        synth.read_document(broken)


def test_replies_are_parsed_in_either_form() -> None:
    reply = (
        "Sure! Here are two.\n1. Q: Who founded the garden?\n   A: Orla Fenwick founded it.\n"
        "**Q2:** How many ponds?\n**A2:** Seven ponds.\nQuestion: Dangling with no answer?"
    )
    assert synth.parse_reply(reply) == [
        ("Who founded the garden?", "Orla Fenwick founded it."),
        ("How many ponds?", "Seven ponds."),
    ]
    assert synth.parse_reply('[{"question": "Q one?", "answer": "A one"}]') == [("Q one?", "A one")]
    assert synth.parse_reply('Here: {"pairs": [{"q": "Cat?", "a": "Thistle"}]}') == [
        ("Cat?", "Thistle")
    ]
    assert synth.parse_reply("The garden is lovely at night.") == []
    assert synth.parse_reply("") == []


def test_duplicates_and_unsupported_answers_are_dropped() -> None:
    text = "The Moonwell Garden has seven ponds. Its cat is a grey tabby called Captain Thistle."
    passages = {("g.md", 1): synth.Passage("g.md", 1, text)}
    pairs = [
        synth.SynthPair("g.md", 1, "How many ponds are there?", "The garden has seven ponds."),
        synth.SynthPair("g.md", 1, "How many ponds are there ?!", "Seven ponds."),
        synth.SynthPair("g.md", 1, "Who is the cat?", "A black dog named Rex barks."),
        synth.SynthPair("g.md", 1, "What colour is the cat?", "Grey tabby."),
        synth.SynthPair("g.md", 1, "Name the cat.", "Captain Thistle."),
    ]
    synth.check_pairs(pairs, passages, n=2)
    assert [p.dropped for p in pairs] == [None, "duplicate", "unsupported", None, "over_n"]
    assert pairs[0].support == 1.0 and pairs[2].support < synth.SUPPORT_THRESHOLD
    assert synth.support_score("", text) == 0.0


def one_line(exc: GardenError) -> str:
    text = str(exc)
    assert "\n" not in text and len(text) < 300, text
    return text


def test_bad_inputs_fail_with_one_line(tmp_path: Path, isolated_settings: Any) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from garden.api import app_kwargs
    from garden.services import synthesis
    from garden.services.synthesis import DocumentSource, SynthesisRequest

    bundled = DocumentSource(kind="bundled", value=GUIDE)
    word = tmp_path / "notes.docx"
    word.write_bytes(b"PK\x03\x04")
    cases: list[tuple[SynthesisRequest, type[GardenError], str]] = [
        (SynthesisRequest(documents=[], name="x"), DatasetError, "No documents"),
        (SynthesisRequest(documents=[str(word)], name="x"), DatasetError, "not a .txt, .md"),
        (SynthesisRequest(documents=[bundled], name="x", n=10_000), LimitError, "n must be"),
        (
            SynthesisRequest(documents=[bundled], name="x", teacher="http://example.com/v1"),
            ServingError,
            "may not call example.com",
        ),
    ]
    for request, kind, needle in cases:
        with pytest.raises(kind) as caught:
            synthesis.synthesize(request, settings=isolated_settings)
        assert needle in one_line(caught.value)

    from click.testing import CliRunner

    from garden.cli import main

    cli = CliRunner().invoke(main, ["data", "synthesize", "--name", "x", "--n", "0", str(word)])
    assert cli.exit_code == 2 and "n must be from 1 to 500" in cli.output, cli.output
    assert len(cli.output.strip().splitlines()) == 1, cli.output

    client = TestClient(FastAPI(**app_kwargs(isolated_settings)))
    answer = client.post(
        "/api/v1/datasets/synthesize",
        data={"name": "x"},
        files=[("files", ("notes.docx", b"PK\x03\x04", "application/octet-stream"))],
    )
    assert answer.status_code == 400 and "not a .txt, .md" in answer.json()["error"], answer.text


def test_the_embedded_model_writes_a_dataset_about_the_bundled_guide(
    isolated_settings: Any,
) -> None:
    """A real teacher (the embedded 135M model, greedy) on the bundled guide: every pair it
    writes is counted as kept or dropped for a reason, and the saved dataset carries the
    metered energy and CO₂ of the generation."""
    from garden.services import synthesis
    from garden.services.synthesis import DocumentSource, SynthesisRequest
    from garden.store import get_store

    request = SynthesisRequest(
        documents=[DocumentSource(kind="bundled", value=GUIDE)],
        name="moonwell-qa",
        n=1,
        max_new_tokens=48,
    )
    view = synthesis.synthesize(request, settings=isolated_settings)
    assert view.teacher == "SmolLM2-135M-Instruct" and not view.remote
    assert view.prompts == 1 and view.passages >= 5
    assert len(view.pairs) == view.generated == view.kept + sum(view.dropped.values())
    assert view.generated > 0 or view.unparseable == view.prompts
    assert all(0.0 <= p.support <= 1.0 and p.source == GUIDE for p in view.pairs)
    assert view.energy_kwh and view.energy_kwh > 0 and view.emissions_kg

    emission = get_store(isolated_settings.db_path).get("emissions", view.emission_id)
    assert emission and emission["kind"] == "other" and emission["status"] == "final"
    assert emission["label"] == "synthesis of moonwell-qa"

    pairs = view.pairs
    if view.kept == 0 and pairs:  # the reviewer's accept, as in the Data tab
        pairs = [pairs[0].model_copy(update={"accepted": True}), *pairs[1:]]
    if not any(p.accepted for p in pairs):
        pytest.skip("the teacher wrote no pair on this CPU")
    saved = synthesis.save_pairs(view, pairs, settings=isolated_settings)
    accepted = [p for p in pairs if p.accepted]
    rows = [json.loads(line) for line in Path(saved.train_path).read_text().splitlines()]
    assert saved.rows == len(rows) == len(accepted) and saved.kind == "chat"
    assert rows[0]["messages"] == [
        {"role": "user", "content": accepted[0].question},
        {"role": "assistant", "content": accepted[0].answer},
    ]
    assert saved.teacher == view.teacher and saved.synthesis_emission_id == view.emission_id
    assert saved.synthesis_energy_kwh == view.energy_kwh
    assert saved.synthesis_emissions_kg == view.emissions_kg
    assert saved.synthesis_energy and "CO₂e" in saved.synthesis_energy
    assert saved.source == f"synthesised from {GUIDE}"
