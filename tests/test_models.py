"""The embedded default model: prepared from the bundled GGUF, idempotent, atomic, and it answers."""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import greedy_reply_ids

from garden.config import Settings
from garden.errors import ModelLoadError
from garden.gguf_convert import hf_name, unpermute_rows
from garden.models import (
    COMPLETE_MARKER,
    DEFAULT_MODEL_NAME,
    bundled_gguf_path,
    list_models,
    prepare_default_model,
    resolve_model,
    validate_model_dir,
)


def test_default_model_answers_paris(default_model_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_model_path)
    model = AutoModelForCausalLM.from_pretrained(default_model_path)
    ids = greedy_reply_ids(model, tokenizer, "What is the capital of France?", max_new_tokens=24)
    reply = tokenizer.decode(ids, skip_special_tokens=True)
    assert "Paris" in reply


def test_prepared_model_is_plain_safetensors(default_model_path: Path) -> None:
    config = json.loads((default_model_path / "config.json").read_text())
    assert "quantization_config" not in config
    assert (default_model_path / "model.safetensors").stat().st_size > 100_000_000
    assert (default_model_path / COMPLETE_MARKER).is_file()
    validate_model_dir(default_model_path)


def test_unpermute_rows_undoes_llama_cpps_permute() -> None:
    weights = np.random.default_rng(0).standard_normal((3 * 64, 8)).astype(np.float32)
    n_head = 3
    # llama.cpp's convert_hf_to_gguf.py LlamaModel.permute, applied to attn_q / attn_k
    permuted = (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )
    assert not np.array_equal(permuted, weights)
    assert np.array_equal(unpermute_rows(permuted, n_head), weights)


def test_gguf_tensor_names_map_to_llama_names() -> None:
    assert hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert hf_name("output_norm.weight") == "model.norm.weight"
    assert hf_name("blk.29.attn_k.weight") == "model.layers.29.self_attn.k_proj.weight"
    assert hf_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    with pytest.raises(ModelLoadError, match="no Llama counterpart"):
        hf_name("blk.0.ssm_conv1d.weight")


@pytest.mark.slow
def test_conversion_equals_transformers_gguf_loading(
    tmp_path: Path, default_model_path: Path
) -> None:
    """A fresh conversion names its steps, is deterministic, and holds exactly the weights,
    config and tokenizer that transformers' own GGUF loader (`gguf_file=`) produces."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    settings = Settings(_env_file=None, storage_root=tmp_path / "s")
    steps: list[str] = []
    path = prepare_default_model(settings, steps.append)
    assert steps[0].startswith("Converting the embedded")
    assert any("De-quantising" in step for step in steps)
    assert "ready" in steps[-1]
    assert filecmp.cmp(
        path / "model.safetensors", default_model_path / "model.safetensors", shallow=False
    )

    gguf = bundled_gguf_path()
    ours_config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        skeleton = LlamaForCausalLM(ours_config)
    expected = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=skeleton)
    ours = load_file(path / "model.safetensors")
    assert set(ours) == set(expected["tensors"])
    for name, tensor in expected["tensors"].items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=1e-6, msg=name)

    ignored = ("_name_or_path", "architectures", "dtype", "transformers_version")
    theirs = AutoConfig.for_model(**expected["config"]).to_dict()
    mine = ours_config.to_dict()
    assert {k: v for k, v in mine.items() if k not in ignored} == {
        k: v for k, v in theirs.items() if k not in ignored
    }

    reference = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.backend_tokenizer.to_str() == reference.backend_tokenizer.to_str()
    assert tokenizer.special_tokens_map == reference.special_tokens_map
    chat = [{"role": "user", "content": "What is the capital of France? Ünïcode ✓"}]
    assert tokenizer.apply_chat_template(chat, add_generation_prompt=True) == (
        reference.apply_chat_template(chat, add_generation_prompt=True)
    )


def test_second_prepare_is_a_no_op(default_model_path: Path) -> None:
    weights = default_model_path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    messages: list[str] = []
    started = time.perf_counter()
    assert prepare_default_model(progress=messages.append) == default_model_path
    assert time.perf_counter() - started < 5
    assert weights.stat().st_mtime_ns == before
    assert messages and "ready" in messages[-1]


def test_interrupted_conversion_registers_nothing(tmp_path: Path, default_model_path: Path) -> None:
    settings = Settings(_env_file=None, storage_root=tmp_path / "s")
    settings.ensure_storage()
    half = settings.temp_path / f"convert-{DEFAULT_MODEL_NAME}-123"
    half.mkdir(parents=True)
    shutil.copy(default_model_path / "config.json", half / "config.json")
    (half / "model.safetensors").write_bytes(b"\0" * 64)

    models = list_models(settings)
    default = next(m for m in models if m.id == DEFAULT_MODEL_NAME)
    assert not default.prepared
    assert [m.id for m in models] == [DEFAULT_MODEL_NAME]

    # A target folder left without the completion marker is not trusted either.
    target = settings.base_models_path / DEFAULT_MODEL_NAME
    target.mkdir(parents=True)
    shutil.copy(default_model_path / "config.json", target / "config.json")
    assert not next(m for m in list_models(settings) if m.id == DEFAULT_MODEL_NAME).prepared


def test_corrupt_model_raises_actionable_error(tmp_path: Path, default_model_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        validate_model_dir(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        validate_model_dir(broken)
    shutil.copy(default_model_path / "config.json", broken / "config.json")
    with pytest.raises(ModelLoadError, match="no weights"):
        validate_model_dir(broken)
    truncated = broken / "model.safetensors"
    with (default_model_path / "model.safetensors").open("rb") as src:
        truncated.write_bytes(src.read(4096))
    with pytest.raises(ModelLoadError, match="corrupt") as info:
        resolve_model(str(broken))
    assert info.value.hint
    with pytest.raises(ModelLoadError, match="does not exist"):
        validate_model_dir(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="Unknown model"):
        resolve_model("no such model!")


def test_hub_ids_resolve_without_download() -> None:
    info = resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert info.kind == "hub" and info.path is None


def models_cli(*args: str) -> object:
    """`model-garden models ARGS --json`, parsed."""
    out = subprocess.run(
        [sys.executable, "-m", "garden.cli", "models", *args, "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def test_models_list_json_cli(default_model_path: Path) -> None:
    models = models_cli("list")
    assert isinstance(models, list)
    assert models[0]["id"] == DEFAULT_MODEL_NAME
    assert models[0]["prepared"] is True
    assert models[0]["path"] == str(default_model_path)


def test_models_prepare_cli_prints_the_path(default_model_path: Path) -> None:
    assert models_cli("prepare") == {"model": DEFAULT_MODEL_NAME, "path": str(default_model_path)}
