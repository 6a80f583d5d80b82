"""Ollama export: the Modelfile's Go TEMPLATE renders conversations token for token as the model's
own Jinja chat template does (through a Go text/template renderer, tests/go_template.py, since
Ollama is not installed), and the default model exports as a folder Ollama can create a model
from, through the CLI and the REST API."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from go_template import render as render_go

from garden.errors import ExportError

SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CONVERSATIONS: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer in one word.\nNever more."},
        {"role": "user", "content": "Capital of Italy?"},
    ],
    [
        {"role": "user", "content": "Hi! {{ not a Go action }} <b>bold</b>"},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "  Name three colours, with spaces around.  "},
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6"},
        {"role": "user", "content": "Thanks — café, naïve, 日本語."},
    ],
]


def parse_modelfile(text: str) -> dict[str, Any]:
    """FROM, TEMPLATE, SYSTEM and the stop parameters of a Modelfile (the subset we write)."""
    blocks = dict(re.findall(r'^(TEMPLATE|SYSTEM) """(.*?)"""$', text, re.M | re.S))
    return {
        "from": re.search(r"^FROM (.+)$", text, re.M).group(1),  # type: ignore[union-attr]
        "template": blocks["TEMPLATE"],
        "system": blocks.get("SYSTEM"),
        "stops": [json.loads(v) for v in re.findall(r"^PARAMETER stop (.+)$", text, re.M)],
    }


def ollama_prompt(modelfile: dict[str, Any], messages: list[dict[str, str]]) -> str:
    """The prompt Ollama's chat builds: the Modelfile's SYSTEM first when the conversation has
    no system message, then the TEMPLATE over ``.Messages`` (Role/Content)."""
    if modelfile["system"] and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": modelfile["system"]}, *messages]
    shown = [{"Role": m["role"], "Content": m["content"]} for m in messages]
    return render_go(modelfile["template"], {"Messages": shown})


def test_the_go_renderer_runs_ollamas_documented_templates() -> None:
    """Ollama's docs/template.md examples, with the output Go's text/template gives."""
    messages = [{"Role": "user", "Content": "Hi"}, {"Role": "assistant", "Content": "Yo"}]
    chatml = (
        "{{- range .Messages }}\n<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant"
    )
    assert render_go(chatml, {"Messages": messages}) == (
        "\n<|im_start|>user\nHi<|im_end|>\n\n<|im_start|>assistant\nYo<|im_end|>\n"
        "<|im_start|>assistant"
    )
    last = (
        "{{- range $i, $_ := .Messages }}\n{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n"
        '[{{ $i }}:{{ .Role }}{{ if $last }} last{{ else if ne .Role "x" }} more{{ end }}]'
        '{{ if and $last (not (eq .Role "user")) }}!{{ end }}{{ end }}'
    )
    assert render_go(last, {"Messages": messages}) == "[0:user more][1:assistant last]!"
    with pytest.raises(ValueError, match="unsupported"):
        render_go("{{ .Messages | len }}", {"Messages": messages})


@pytest.fixture(scope="module")
def smol_modelfile(default_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    from garden.engine.export.ollama import write_modelfile

    out = tmp_path_factory.mktemp("modelfile")
    write_modelfile(default_model_path, out, "smol.gguf", "SmolLM2-135M-Instruct")
    return (out / "Modelfile").read_text(encoding="utf-8")


def test_the_template_renders_conversations_token_for_token_like_the_chat_template(
    smol_modelfile: str, default_model_path: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_model_path)
    modelfile = parse_modelfile(smol_modelfile)
    assert modelfile["system"] == SMOL_SYSTEM and modelfile["stops"] == ["<|im_end|>"]
    for messages in CONVERSATIONS:
        expected = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        prompt = ollama_prompt(modelfile, messages)
        assert prompt == expected
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert ids == tokenizer(expected, add_special_tokens=False)["input_ids"]
        assert ids == list(tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True, return_dict=False
        ))  # fmt: skip
    # An assistant's last message is left open: Ollama continues it, as transformers'
    # continue_final_message does.
    started = [*CONVERSATIONS[3][:-1], {"role": "assistant", "content": "It is"}]
    continued = tokenizer.apply_chat_template(started, tokenize=False, continue_final_message=True)
    assert ollama_prompt(modelfile, started) == continued


LLAMA3_LIKE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# System text folded into the first user turn (Llama 2): not expressible per role.
LLAMA2_LIKE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{% set sys = m['content'] %}"
    "{% elif m['role'] == 'user' %}[INST] {% if loop.index0 == 1 %}<<SYS>>{{ sys }}<</SYS>> "
    "{% endif %}{{ m['content'] }} [/INST]{% else %} {{ m['content'] }}</s>{% endif %}{% endfor %}"
)
# The first user turn is wrapped differently from the later ones.
FIRST_TURN_SPECIAL = (
    "{% for m in messages %}{% if loop.index0 == 1 %}FIRST:{% endif %}"
    "<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def _jinja_render(source: str, **tokens: str) -> Any:
    from garden.data.light_tokenizer import compile_template

    template = compile_template(source)
    return lambda messages, prompt: template.render(
        messages=messages, add_generation_prompt=prompt, **tokens
    )


def test_another_template_shape_round_trips_and_unexpressible_ones_are_refused() -> None:
    from garden.engine.export.ollama import chat_pieces, go_template

    llama3 = _jinja_render(LLAMA3_LIKE, bos_token="<|begin_of_text|>")
    pieces = chat_pieces(llama3, "llama3-like")
    assert pieces.start == "<|begin_of_text|>" and pieces.default_system is None
    modelfile = {"template": go_template(pieces), "system": None}
    for messages in CONVERSATIONS[:2] + CONVERSATIONS[3:]:  # no content with edge spaces: trim
        assert ollama_prompt(modelfile, messages) == llama3(messages, True)
    refusals = {
        LLAMA2_LIKE: "it does not write each message's content once",
        FIRST_TURN_SPECIAL: "a turn's wrapping depends on its position or content",
    }
    for source, why in refusals.items():
        with pytest.raises(
            ExportError, match=f"cannot be written as an Ollama template: {why}"
        ) as refused:
            chat_pieces(_jinja_render(source, bos_token="<s>"), "odd-model")
        assert "\n" not in refused.value.message and "odd-model" in refused.value.message


def test_a_model_without_a_chat_template_is_refused(
    tmp_path: Path, default_model_path: Path
) -> None:
    import shutil

    from garden.engine.export.ollama import write_modelfile

    (tmp_path / "empty").mkdir()
    (tmp_path / "plain").mkdir()
    shutil.copy2(default_model_path / "tokenizer.json", tmp_path / "plain")
    for folder in ("empty", "plain"):
        with pytest.raises(ExportError, match=r"has no usable tokenizer\.json or chat template"):
            write_modelfile(tmp_path / folder, tmp_path, "x.gguf", "base-lm")
    assert not (tmp_path / "Modelfile").exists()


@pytest.mark.slow
def test_cli_exports_the_default_model_as_an_ollama_folder(
    tmp_path: Path, default_model_path: Path
) -> None:
    from garden.cli import main

    out = tmp_path / "smol-ollama"
    args = ["export", "SmolLM2-135M-Instruct", "--format", "ollama", "--quant", "q4_0"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    gguf = "SmolLM2-135M-Instruct-q4_0.gguf"
    assert sorted(path.name for path in out.iterdir()) == ["Modelfile", "README.md", gguf]
    modelfile = parse_modelfile((out / "Modelfile").read_text(encoding="utf-8"))
    assert modelfile["from"] == f"./{gguf}" and (out / gguf).read_bytes()[:4] == b"GGUF"
    assert "<|im_end|>" in modelfile["stops"] and modelfile["system"] == SMOL_SYSTEM
    readme = (out / "README.md").read_text(encoding="utf-8")
    name = "smollm2-135m-instruct"
    for command in (f"ollama create {name} -f Modelfile", f"ollama run {name}"):
        assert command in readme and command in result.output, result.output
    assert "- ollama" in readme and "library_name: gguf" in readme
    assert "Download:" not in result.output  # the CLI's folder is the result: no zip


def test_quant_is_refused_for_formats_without_gguf(isolated_settings: Any) -> None:
    from garden.services import export as export_service

    request = export_service.ExportRequest(
        model="SmolLM2-135M-Instruct", format="merged", quant="q4_0"
    )
    with pytest.raises(ExportError, match="GGUF and Ollama exports only"):
        export_service.export(request, settings=isolated_settings)
    assert export_service.DEFAULT_QUANTS["ollama"] in export_service.GGUF_QUANTS


@pytest.mark.slow
def test_the_tab_and_rest_export_an_ollama_zip(app: Any) -> None:
    """The tab exports the default model for Ollama and hands back the zip, which REST serves; REST
    refuses what it cannot export."""
    import httpx
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    model, name = "SmolLM2-135M-Instruct", "smollm2-135m-instruct"
    line, file = client.predict(model, "ollama", "q4_0", False, api_name="/export_model")
    assert "exports/SmolLM2-135M-Instruct-ollama-q4_0" in line, line
    assert f"ollama create {name} -f Modelfile" in line and f"ollama run {name}" in line
    with zipfile.ZipFile(file) as bundle:
        names = set(bundle.namelist())
        modelfile = bundle.read("Modelfile").decode()
    assert names == {"Modelfile", "README.md", "SmolLM2-135M-Instruct-q4_0.gguf"}
    assert modelfile.startswith("FROM ./SmolLM2-135M-Instruct-q4_0.gguf\n")

    with httpx.Client(base_url=app.url, timeout=600) as http:
        unknown = http.post("api/v1/exports", json={"model": "nope", "format": "ollama"})
        assert unknown.status_code == 404, unknown.text  # the format is taken; the model is not
        bad = http.post("api/v1/exports", json={"model": model, "format": "ollama", "quant": "q3"})
        assert bad.status_code == 422, bad.text
        # The tab's export, fetched where REST serves every finished export.
        archive = http.get("api/v1/exports/files/SmolLM2-135M-Instruct-ollama-q4_0.zip")
    assert archive.status_code == 200 and archive.content[:2] == b"PK"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as bundle:
        assert set(bundle.namelist()) == names
