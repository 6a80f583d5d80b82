"""Fast conversion of a llama-architecture GGUF file to a transformers safetensors folder.

transformers can load the file itself (``from_pretrained(dir, gguf_file=...)``), but on a
2-core machine that took 80-90 s: it parses the GGUF metadata four times with gguf-py's
``GGUFReader`` (whose field parsing walks the 49k-entry vocabulary and merge tables one numpy
view at a time), builds a model, and loads it. Here the file is parsed once with ``struct``,
each tensor is de-quantised with gguf-py's numpy ``dequantize``, renamed to the Hugging Face
Llama names (undoing the Q/K row permutation llama.cpp's converter applies), and written with
``safetensors.numpy``. The config and tokenizer come from the same parsed metadata through
transformers' own GGUF mappings, so the folder is the one ``save_pretrained`` wrote before.
"""

from __future__ import annotations

import importlib.metadata
import json
import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from garden.errors import ModelLoadError

# GGUF metadata value types: fixed-size ones by struct format, then string (8) and array (9).
_SCALAR_FORMATS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
_GGUF_VERSIONS = (2, 3)

# llama.cpp's tensor names for the llama architecture -> Hugging Face LlamaForCausalLM names.
_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


@dataclass(frozen=True)
class GgufTensor:
    name: str
    shape: tuple[int, ...]  # torch order (slowest dimension first)
    ggml_type: int
    offset: int  # absolute, in the file


@dataclass(frozen=True)
class GgufFile:
    metadata: dict[str, Any]
    tensors: list[GgufTensor]


def _read_string(buf: Any, pos: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<Q", buf, pos)
    pos += 8
    return bytes(buf[pos : pos + length]).decode("utf-8"), pos + length


def _read_value(buf: Any, pos: int, value_type: int) -> tuple[Any, int]:
    fmt = _SCALAR_FORMATS.get(value_type)
    if fmt is not None:
        (value,) = struct.unpack_from(fmt, buf, pos)
        return value, pos + struct.calcsize(fmt)
    if value_type == _STRING:
        return _read_string(buf, pos)
    if value_type == _ARRAY:
        element_type, count = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        fmt = _SCALAR_FORMATS.get(element_type)
        if fmt is not None:
            width = struct.calcsize(fmt)
            values = list(struct.unpack_from(f"<{count}{fmt[1]}", buf, pos))
            return values, pos + count * width
        items = []
        for _ in range(count):
            item, pos = _read_value(buf, pos, element_type)
            items.append(item)
        return items, pos
    raise ValueError(f"unknown GGUF metadata value type {value_type}")


def read_gguf(path: Path, buf: Any) -> GgufFile:
    """The metadata and tensor table of the GGUF file mapped in ``buf`` (no tensor data read)."""
    if bytes(buf[:4]) != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file.", hint="Reinstall it with `uv sync`.")
    version, tensor_count, metadata_count = struct.unpack_from("<IQQ", buf, 4)
    if version not in _GGUF_VERSIONS:
        raise ModelLoadError(f"{path} is GGUF v{version}; v2 and v3 are supported.", hint="")
    pos = 24
    metadata: dict[str, Any] = {}
    for _ in range(metadata_count):
        key, pos = _read_string(buf, pos)
        (value_type,) = struct.unpack_from("<I", buf, pos)
        metadata[key], pos = _read_value(buf, pos + 4, value_type)
    entries = []
    for _ in range(tensor_count):
        name, pos = _read_string(buf, pos)
        (dims,) = struct.unpack_from("<I", buf, pos)
        shape = struct.unpack_from(f"<{dims}Q", buf, pos + 4)
        ggml_type, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * dims)
        pos += 4 + 8 * dims + 12
        entries.append((name, tuple(reversed(shape)), ggml_type, offset))
    alignment = int(metadata.get("general.alignment", 32))
    data_start = (pos + alignment - 1) // alignment * alignment
    tensors = [GgufTensor(n, s, t, data_start + o) for n, s, t, o in entries]
    return GgufFile(metadata, tensors)


def hf_name(gguf_name: str) -> str:
    """The Hugging Face Llama parameter name of a llama.cpp tensor name."""
    stem, _, suffix = gguf_name.rpartition(".")
    if stem in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[stem]}.{suffix}"
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in _BLOCK_NAMES:
        return f"model.layers.{parts[1]}.{_BLOCK_NAMES[parts[2]]}.{suffix}"
    raise ModelLoadError(
        f"The GGUF tensor {gguf_name} has no Llama counterpart.",
        hint="Only llama-architecture GGUF files are converted here.",
    )


def unpermute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (rotary halves interleaved per head)."""
    half = weights.shape[0] // n_head // 2
    grouped = weights.reshape(n_head, half, 2, *weights.shape[1:])
    return grouped.swapaxes(2, 1).reshape(weights.shape)


def dequantized(tensor: GgufTensor, buf: Any) -> np.ndarray:
    """One tensor as float32 in torch order, de-quantised with gguf-py's numpy kernels."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    qtype = GGMLQuantizationType(tensor.ggml_type)
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    *rows, columns = tensor.shape
    row_bytes = columns // block_size * type_size
    count = int(np.prod(rows, dtype=np.int64)) * row_bytes
    raw = np.frombuffer(buf, dtype=np.uint8, count=count, offset=tensor.offset)
    weights = np.asarray(dequantize(raw.reshape(*rows, row_bytes), qtype), dtype=np.float32)
    # F32 tensors come back as a view of the mapped file: copy them so the map can close.
    return weights.copy() if np.may_share_memory(weights, raw) else weights


def llama_state_dict(
    gguf: GgufFile, buf: Any, n_head: int, n_kv_head: int
) -> dict[str, np.ndarray]:
    """Every tensor of a llama GGUF as float32 numpy arrays under Hugging Face names."""
    state: dict[str, np.ndarray] = {}
    for tensor in gguf.tensors:
        weights = dequantized(tensor, buf)
        if ".attn_q." in tensor.name:
            weights = unpermute_rows(weights, n_head)
        elif ".attn_k." in tensor.name:
            weights = unpermute_rows(weights, n_kv_head)
        state[hf_name(tensor.name)] = np.ascontiguousarray(weights)
    return state


def hf_parameters(gguf: GgufFile) -> dict[str, dict[str, Any]]:
    """The config, tokenizer and tokenizer_config dicts, as transformers' GGUF loader reads them.

    The same renaming table and rules as ``load_gguf_checkpoint(..., return_tensors=False)``,
    applied to metadata already parsed (that function parses the file again, slowly)."""
    from transformers.integrations.ggml import (
        GGUF_CONFIG_DEFAULTS_MAPPING,
        GGUF_CONFIG_MAPPING,
        GGUF_TOKENIZER_MAPPING,
    )

    architecture = gguf.metadata["general.architecture"]
    if architecture != "llama":
        raise ModelLoadError(
            f"GGUF architecture {architecture!r} is not converted here.",
            hint="Load it with transformers' gguf_file= instead.",
        )
    # transformers' GGUF_TO_TRANSFORMERS_MAPPING, less its "ignore" section (importing the module
    # that holds it imports torch).
    mapping: dict[str, dict[str, Any]] = {
        "config": GGUF_CONFIG_MAPPING,
        "tokenizer": {"tokenizer": GGUF_TOKENIZER_MAPPING["tokenizer"]},
        "tokenizer_config": {"tokenizer": GGUF_TOKENIZER_MAPPING["tokenizer_config"]},
    }
    parsed: dict[str, dict[str, Any]] = {k: {} for k in mapping}
    names = {t.name for t in gguf.tensors}
    parsed["config"]["tie_word_embeddings"] = "output.weight" not in names
    for key, value in GGUF_CONFIG_DEFAULTS_MAPPING.get(architecture, {}).items():
        parsed["config"].setdefault(key, value)
    for key, value in gguf.metadata.items():
        prefix, _, rest = key.partition(".")
        for section, renames in mapping.items():
            renamed = renames.get(prefix, {}).get(rest)
            if renamed is not None and renamed != -1:
                parsed[section][renamed] = value
    if "vocab_size" not in parsed["config"] and "tokens" in parsed["tokenizer"]:
        parsed["config"]["vocab_size"] = len(parsed["tokenizer"]["tokens"])
    return parsed


def convert_llama_gguf(
    gguf_path: Path, out_dir: Path, say: Callable[[str], None], name_or_path: str
) -> None:
    """Write ``config.json``, ``generation_config.json``, ``model.safetensors`` (fp32) and the
    tokenizer files for the llama GGUF at ``gguf_path`` into ``out_dir``. Imports no torch."""
    say("Reading the GGUF file…")
    with (
        gguf_path.open("rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf,
    ):
        gguf = read_gguf(gguf_path, buf)
        parsed = hf_parameters(gguf)
        config = llama_config(parsed["config"])
        say("De-quantising the weights (numpy)…")
        state = llama_state_dict(
            gguf, buf, int(config["num_attention_heads"]), int(config["num_key_value_heads"])
        )
    say("Writing safetensors…")
    from safetensors.numpy import save_file

    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    del state
    say("Writing the config and tokenizer…")
    _write_json(out_dir / "config.json", config)
    _write_json(out_dir / "generation_config.json", generation_config(config))
    write_tokenizer(parsed, out_dir)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """JSON as transformers' ``save_pretrained`` writes it (sorted keys, 2-space indent)."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _transformers_version() -> str:
    return importlib.metadata.version("transformers")


def llama_config(parsed: dict[str, Any]) -> dict[str, Any]:
    """``config.json`` as ``LlamaConfig(**parsed).save_pretrained`` writes it for an fp32 model.

    Written by hand because importing ``LlamaConfig`` imports torch and torchvision (15-40 s on
    2 cores); the constants are ``LlamaConfig``'s defaults, which the GGUF does not carry."""
    config: dict[str, Any] = {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "use_cache": True,
    }
    config.update({k: v for k, v in parsed.items() if k != "rope_theta"})
    config["rope_parameters"] = {
        "rope_theta": float(parsed.get("rope_theta", 10000.0)),
        "rope_type": "default",
    }
    config["architectures"] = ["LlamaForCausalLM"]
    config["dtype"] = "float32"
    config["transformers_version"] = _transformers_version()
    return config


def generation_config(config: dict[str, Any]) -> dict[str, Any]:
    """``GenerationConfig.from_model_config(config)`` as saved."""
    generation: dict[str, Any] = {
        "_from_model_config": True,
        "output_attentions": False,
        "output_hidden_states": False,
        "transformers_version": _transformers_version(),
        "use_cache": True,
    }
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if config.get(key) is not None:
            generation[key] = config[key]
    return generation


def write_tokenizer(parsed: dict[str, dict[str, Any]], out_dir: Path) -> None:
    """``tokenizer.json``, ``tokenizer_config.json`` and ``chat_template.jinja`` as
    ``AutoTokenizer.from_pretrained(dir, gguf_file=...).save_pretrained`` writes them.

    The vocabulary goes through transformers' own GGUF converter (torch-free); the wrapper's
    settings are written by hand because ``TokenizersBackend`` imports torch."""
    from tokenizers.processors import TemplateProcessing
    from transformers.integrations.ggml import convert_gguf_tokenizer

    backend, extra = convert_gguf_tokenizer(parsed["config"]["model_type"], parsed["tokenizer"])
    # TokenizersBackend installs this template (no bos/eos added) when it wraps the backend.
    backend.post_processor = TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    backend.save(str(out_dir / "tokenizer.json"))
    tokens = parsed["tokenizer"]["tokens"]
    source = parsed["tokenizer_config"]

    def token_id(token: str | None) -> int | None:
        return tokens.index(token) if token is not None and token in tokens else None

    special = {name: extra.get(name) for name in ("bos_token", "eos_token", "unk_token")}
    settings: dict[str, Any] = {
        "add_prefix_space": False,
        "backend": "tokenizers",
        "clean_up_tokenization_spaces": bool(extra.get("clean_up_tokenization_spaces", True)),
        "legacy": bool(extra.get("legacy", False)),
        "model_max_length": int(1e30),
        "model_type": source.get("model_type"),
        "pad_token_id": None,
        "tokenizer_class": "TokenizersBackend",
    }
    for name, token in special.items():
        settings[name] = token
        settings[f"{name}_id"] = token_id(token)
    _write_json(out_dir / "tokenizer_config.json", settings)
    if source.get("chat_template"):
        (out_dir / "chat_template.jinja").write_text(source["chat_template"], encoding="utf-8")
