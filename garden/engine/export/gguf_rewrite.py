"""The converter's GGUF, finished: stop tokens a runtime can trust, and 4- or 5-bit matrices
written without a C++ build.

``convert_hf_to_gguf`` takes EOS from ``tokenizer_config.json``; where that names the turn's
*opening* token (the embedded default model's does: transformers' GGUF tokenizer converter sets it
to ``<|im_start|>``), llama.cpp, Ollama and transformers' ``gguf_file=`` loading never stop at
the end of an answer. The token that closes an assistant turn in the chat template is written as
``tokenizer.ggml.eot_token_id``, and as EOS where EOS equals BOS.

llama.cpp's legacy block quantisations (q4_0, q4_1, q5_0, q5_1) come from gguf-py's numpy
quantisers, from an f32 GGUF. gguf-py only *dequantises* k-quants (q4_k, q5_k, q6_k …), so
those still need ``llama-quantize``. Every other metadata field is copied as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from garden.errors import ExportError

# quant → (gguf-py tensor type name, llama.cpp file type name)
NUMPY_QUANTS = {
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
    "q4_1": ("Q4_1", "MOSTLY_Q4_1"),
    "q5_0": ("Q5_0", "MOSTLY_Q5_0"),
    "q5_1": ("Q5_1", "MOSTLY_Q5_1"),
}
TURN_MARK = "GARDEN-END-OF-ANSWER"


def end_of_turn_token(model_dir: Path) -> tuple[str, int] | None:
    """The special token that follows an assistant's answer in the chat template (ChatML's
    ``<|im_end|>``), or None when the folder has no template or nothing special ends a turn."""
    from garden.data.light_tokenizer import LightTokenizer

    try:
        tokenizer = LightTokenizer(model_dir)
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": TURN_MARK}]
        )
    except Exception:  # no tokenizer.json, no template, or a template that needs more
        return None
    rest = text.split(TURN_MARK, 1)[1] if TURN_MARK in text else ""
    special = [
        (token.content, token_id)
        for token_id, token in tokenizer.backend.get_added_tokens_decoder().items()
        if token.special and token.content and rest.startswith(token.content)
    ]
    return max(special, key=lambda pair: len(pair[0])) if special else None


def rewrite_gguf(
    source: Path, out_file: Path, quant: str | None, end_of_turn: tuple[str, int] | None
) -> None:
    """Write ``out_file`` from ``source`` with the stop tokens fixed; with ``quant`` (one of
    NUMPY_QUANTS, ``source`` being f32) every matrix whose rows split into whole blocks is
    quantised, and vectors (norms, biases) stay f32."""
    import gguf

    reader = gguf.GGUFReader(source)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    if arch is None:
        raise ExportError(f"{source.name} has no architecture field.", hint="Export f16 instead.")
    writer = gguf.GGUFWriter(out_file, str(arch.contents()))
    replaced = _stop_tokens(reader, end_of_turn)
    skipped = {gguf.Keys.General.ARCHITECTURE, *replaced}
    if quant is not None:
        skipped.add(gguf.Keys.General.FILE_TYPE)
        writer.add_file_type(int(gguf.LlamaFileType[NUMPY_QUANTS[quant][1]]))
    for field in reader.fields.values():
        if field.name in skipped or field.name.startswith("GGUF."):
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    for key, token_id in replaced.items():
        writer.add_key_value(key, token_id, gguf.GGUFValueType.UINT32)
    for tensor in reader.tensors:
        data, tensor_type = _tensor_data(tensor, quant, source)
        writer.add_tensor(tensor.name, data, raw_dtype=tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _stop_tokens(reader: Any, end_of_turn: tuple[str, int] | None) -> dict[str, int]:
    """The token-id fields to write anew: EOT, and EOS where the converter made it BOS."""
    import gguf

    if end_of_turn is None:
        return {}
    keys = gguf.Keys.Tokenizer
    fixed = {keys.EOT_ID: end_of_turn[1]}
    eos, bos = reader.get_field(keys.EOS_ID), reader.get_field(keys.BOS_ID)
    if eos is None or (bos is not None and eos.contents() == bos.contents()):
        fixed[keys.EOS_ID] = end_of_turn[1]
    return fixed


def _tensor_data(tensor: Any, quant: str | None, source: Path) -> tuple[Any, Any]:
    import gguf
    import numpy as np

    if quant is None:
        return tensor.data, tensor.tensor_type
    if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
        raise ExportError(
            f"{source.name}: tensor {tensor.name} is {tensor.tensor_type.name}, not F32.",
            hint="Quantise from the converter's f32 output.",
        )
    qtype = gguf.GGMLQuantizationType[NUMPY_QUANTS[quant][0]]
    block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
    data = np.asarray(tensor.data, dtype=np.float32)
    if data.ndim == 2 and data.shape[-1] % block_size == 0:
        return gguf.quantize(data, qtype), qtype
    return data, gguf.GGMLQuantizationType.F32
