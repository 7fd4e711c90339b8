"""Export a GPTForCausalLM to a GGUF file that llama.cpp runs as its `gpt2` architecture, tokenizer included.
Mirrors what convert_hf_to_gguf.py (not on PyPI) writes for GPT2LMHeadModel, through the `gguf` wheel."""

import json
from pathlib import Path

import numpy as np
import torch

FILE_TYPES = {"f32": 0, "f16": 1}  # gguf.LlamaFileType: ALL_F32, MOSTLY_F16 (1-D tensors stay f32)
SPECIAL_TOKENS = ("bos", "eos", "unk", "sep", "pad", "mask")  # gguf.SpecialVocab's, less cls (no GGUF key)


def target(output):
    """The file written for `output`: itself when it ends in `.gguf`, else `model.gguf` in that folder."""
    output = Path(output)
    return output if output.suffix == ".gguf" else output / "model.gguf"


def export(model, output, *, tokenizer=None, dtype="f32", name=None):
    """Write `model` as GGUF to `output`, with its tokenizer, as llama.cpp tokenizes with what the file stores.
    For smaller quantizations than "f16" run llama.cpp's `llama-quantize` on the result."""
    import gguf

    if dtype not in FILE_TYPES:
        raise ValueError(f"GGUF export: dtype must be one of {sorted(FILE_TYPES)}, got {dtype!r}.")
    path = target(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = model.config
    if tokenizer is None:
        from hf_gpt import load_tokenizer

        tokenizer = load_tokenizer()

    writer = gguf.GGUFWriter(str(path), "gpt2")
    try:
        _write_metadata(writer, config, name or _model_name(config), FILE_TYPES[dtype])
        _write_tokenizer(writer, tokenizer, config)
        for tensor_name, tensor in _gguf_tensors(model):
            writer.add_tensor(tensor_name, _to_numpy(tensor, dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


def _model_name(config):
    source = getattr(config, "name_or_path", "") or ""
    return Path(source).name or "hf_gpt"


def _write_metadata(writer, config, name, file_type):
    """The converter's GPT2Model.set_gguf_parameters, plus general.name/type as its base class writes them."""
    import gguf

    writer.add_type("model")
    writer.add_name(name)
    writer.add_block_count(config.n_layers)
    writer.add_context_length(config.context_length)  # must equal position_embd's rows: llama.cpp checks
    writer.add_embedding_length(config.emb_dim)
    writer.add_feed_forward_length(4 * config.emb_dim)
    writer.add_head_count(config.n_heads)
    writer.add_layer_norm_eps(config.layer_norm_eps)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _write_tokenizer(writer, tokenizer, config):
    """What the converter's _set_vocab_gpt2 writes, "[PADn]" where the tokenizer has no such id."""
    from gguf import TokenType

    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= config.vocab_size:
        raise ValueError(f"GGUF export: the tokenizer has ids up to {max(vocab.values())} but the model's vocab_size "
                         f"is {config.vocab_size}; llama.cpp needs a token string for every id the model can emit.")
    by_id = {i: token for token, i in vocab.items()}
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens, types = [], []
    for i in range(config.vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            special = i in added and added[i].special
            types.append(TokenType.CONTROL if special else TokenType.USER_DEFINED if i in added else TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # the converter's name for GPT-2's pre-tokenizer regex
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merges(tokenizer))
    for kind in SPECIAL_TOKENS:
        token = getattr(tokenizer, f"{kind}_token", None)
        if token is not None and token in vocab:
            getattr(writer, f"add_{kind}_token_id")(vocab[token])


def _merges(tokenizer):
    """The BPE merges as "a b" strings, the form llama.cpp reads, from the fast tokenizer's own model."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("GGUF export needs a fast (tokenizers-backed) byte-level BPE tokenizer for its merges.")
    model = json.loads(backend.to_str())["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"GGUF export: llama.cpp's gpt2 vocabulary is BPE; this tokenizer is {model.get('type')}.")
    return [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]


def _gguf_tensors(model):
    """(gguf name, tensor) in llama.cpp's gpt2 layout, which requires every bias (zeros without qkv_bias);
    a tied head writes no `output.weight`, so llama.cpp reuses token_embd."""
    yield "token_embd.weight", model.tok_emb.weight
    yield "position_embd.weight", model.pos_emb.weight
    for i, block in enumerate(model.trf_blocks):
        att, ff, p = block.att, block.ff, f"blk.{i}."
        yield p + "attn_norm.weight", block.norm1.scale
        yield p + "attn_norm.bias", block.norm1.shift
        projections = (att.W_query, att.W_key, att.W_value)
        yield p + "attn_qkv.weight", torch.cat([lin.weight for lin in projections], dim=0)
        yield p + "attn_qkv.bias", torch.cat([lin.weight.new_zeros(lin.out_features) if lin.bias is None else lin.bias
                                              for lin in projections])
        yield p + "attn_output.weight", att.out_proj.weight
        yield p + "attn_output.bias", att.out_proj.bias
        yield p + "ffn_norm.weight", block.norm2.scale
        yield p + "ffn_norm.bias", block.norm2.shift
        yield p + "ffn_up.weight", ff.layers[0].weight
        yield p + "ffn_up.bias", ff.layers[0].bias
        yield p + "ffn_down.weight", ff.layers[2].weight
        yield p + "ffn_down.bias", ff.layers[2].bias
    yield "output_norm.weight", model.final_norm.scale
    yield "output_norm.bias", model.final_norm.shift
    if model.out_head.weight is not model.tok_emb.weight:
        yield "output.weight", model.out_head.weight


def _to_numpy(tensor, dtype):
    """fp32 on CPU shares memory with the model (no copy of a large checkpoint); fp16 only for matrices."""
    tensor = tensor.detach().to("cpu", torch.float16 if dtype == "f16" and tensor.ndim > 1 else torch.float32)
    return np.ascontiguousarray(tensor.numpy())


__all__ = ["export"]
