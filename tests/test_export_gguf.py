"""The GGUF export: what llama.cpp's gpt2 loader reads (checked with the gguf package's reader, always), and, where
llama-cpp-python is installed, llama.cpp's own tokens and logits for our file and for its converter's file.

The converter test needs llama.cpp's convert_hf_to_gguf.py, which is not on PyPI: set HF_GPT_LLAMA_CPP_CONVERTER to
its path (it sits at vendor/llama.cpp/convert_hf_to_gguf.py in llama-cpp-python's sdist, or in a llama.cpp clone).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from hf_gpt import GPTConfig, GPTForCausalLM, load_tokenizer  # noqa: E402
from hf_gpt.exports import export  # noqa: E402

PROMPT = [464, 3290, 318, 257, 922, 1110, 13]  # "The dog is a good day."
N_NEW = 24


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    fields = dict(vocab_size=50257, context_length=64, emb_dim=64, n_heads=2, n_layers=2, drop_rate=0.0,
                  qkv_bias=False, tie_word_embeddings=False, init_scheme="gpt2")
    return GPTForCausalLM(GPTConfig(**{**fields, **overrides})).eval()


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def path(model, tokenizer, tmp_path_factory):
    return export(model, tmp_path_factory.mktemp("gguf") / "tiny.gguf", "gguf", tokenizer=tokenizer)


def fields(reader):
    return {name: field.contents() for name, field in reader.fields.items()}


@pytest.fixture(scope="module")
def reader(path):
    return gguf.GGUFReader(path)  # parsing 50k token strings takes seconds: once per module


@pytest.fixture(scope="module")
def meta(reader):
    return fields(reader)


def test_metadata_is_llama_cpp_gpt2(meta, model):
    assert meta["general.architecture"] == "gpt2"
    assert meta["gpt2.context_length"] == model.config.context_length == 64
    assert meta["gpt2.embedding_length"] == 64
    assert meta["gpt2.feed_forward_length"] == 256
    assert meta["gpt2.block_count"] == 2
    assert meta["gpt2.attention.head_count"] == 2
    assert meta["gpt2.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    assert meta["general.file_type"] == gguf.LlamaFileType.ALL_F32


def test_tokenizer_metadata_mirrors_the_converter(meta):
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.pre"] == "gpt-2"
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == 50257
    assert tokens[:3] == ["!", '"', "#"] and tokens[50256] == "<|endoftext|>" and tokens[262] == "\u0120the"
    assert types[50256] == gguf.TokenType.CONTROL and set(types[:50256]) == {gguf.TokenType.NORMAL}
    merges = meta["tokenizer.ggml.merges"]
    assert len(merges) == 50000 and merges[:2] == ["\u0120 t", "\u0120 a"]
    for kind in ("bos", "eos", "unknown", "padding"):
        assert meta[f"tokenizer.ggml.{kind}_token_id"] == 50256


def test_tensors_in_llama_cpp_layout(reader, model):
    tensors = {t.name: t for t in reader.tensors}
    d, v = 64, 50257
    expected = {"token_embd.weight": (v, d), "position_embd.weight": (64, d), "output_norm.weight": (d,),
                "output_norm.bias": (d,), "output.weight": (v, d)}
    for i in range(2):
        expected.update({f"blk.{i}.attn_norm.weight": (d,), f"blk.{i}.attn_norm.bias": (d,),
                         f"blk.{i}.attn_qkv.weight": (3 * d, d), f"blk.{i}.attn_qkv.bias": (3 * d,),
                         f"blk.{i}.attn_output.weight": (d, d), f"blk.{i}.attn_output.bias": (d,),
                         f"blk.{i}.ffn_norm.weight": (d,), f"blk.{i}.ffn_norm.bias": (d,),
                         f"blk.{i}.ffn_up.weight": (4 * d, d), f"blk.{i}.ffn_up.bias": (4 * d,),
                         f"blk.{i}.ffn_down.weight": (d, 4 * d), f"blk.{i}.ffn_down.bias": (d,)})
    assert {name: tuple(t.data.shape) for name, t in tensors.items()} == expected  # numpy order: (out, in)
    att = model.trf_blocks[1].att
    qkv = torch.cat([att.W_query.weight, att.W_key.weight, att.W_value.weight]).detach().numpy()
    np.testing.assert_array_equal(tensors["blk.1.attn_qkv.weight"].data, qkv)
    np.testing.assert_array_equal(tensors["blk.1.attn_qkv.bias"].data, 0)  # qkv_bias=False: llama.cpp needs zeros
    np.testing.assert_array_equal(tensors["output.weight"].data, model.out_head.weight.detach().numpy())


def test_tied_head_writes_no_output_and_f16_halves_matrices(tmp_path, tokenizer):
    model = make_model(tie_word_embeddings=True, qkv_bias=True)
    path = export(model, tmp_path, "gguf", tokenizer=tokenizer, dtype="f16")
    assert path == tmp_path / "model.gguf"
    reader = gguf.GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors  # llama.cpp reuses token_embd
    assert tensors["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert fields(reader)["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    bias = torch.cat([model.trf_blocks[0].att.W_query.bias, model.trf_blocks[0].att.W_key.bias,
                      model.trf_blocks[0].att.W_value.bias]).detach().numpy()
    np.testing.assert_array_equal(tensors["blk.0.attn_qkv.bias"].data, bias)


def test_vocabulary_sizes(tmp_path, tokenizer):
    """A vocabulary padded past GPT-2's (e.g. 50304 for speed) gets unused [PADn] tokens, as the converter writes;
    one smaller than the tokenizer is refused: llama.cpp would meet ids it has no string for."""
    path = export(make_model(vocab_size=50304), tmp_path / "padded.gguf", "gguf", tokenizer=tokenizer)
    meta = fields(gguf.GGUFReader(path))
    assert len(meta["tokenizer.ggml.tokens"]) == 50304 and meta["tokenizer.ggml.tokens"][50300] == "[PAD50300]"
    assert meta["tokenizer.ggml.token_type"][50300] == gguf.TokenType.UNUSED
    with pytest.raises(ValueError, match="vocab_size"):
        export(make_model(vocab_size=1000), tmp_path / "small.gguf", "gguf", tokenizer=tokenizer)


# --- llama.cpp itself (optional: pip install llama-cpp-python) ---------------------------------------------------


def llama_cpp_run(path, prompt, n_new):
    """llama.cpp's greedy continuation of `prompt` and its logits for the prompt and every generated token
    but the last (one evaluation of the whole sequence, as transformers' forward gives them)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, n_threads=2, verbose=False, seed=0)
    tokens = list(prompt)
    for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
        tokens.append(int(token))
        if len(tokens) == len(prompt) + n_new:
            break
    llm.reset()
    llm.eval(tokens[:-1])
    logits = np.array(llm.scores[: len(tokens) - 1], dtype=np.float32)
    llm.close()
    return tokens, logits


def reference(model, prompt, n_new):
    with torch.no_grad():
        tokens = model.generate(torch.tensor([prompt]), max_new_tokens=n_new, do_sample=False, pad_token_id=50256)
        logits = model(tokens[:, :-1]).logits[0].numpy()
        stock = model.to_gpt2().eval()(tokens[:, :-1]).logits[0].numpy()
    return tokens[0].tolist(), logits, stock


def llama_cpp_tolerance(logits):
    """llama.cpp on CPU takes GELU from an fp16 table, so even an exact fp32 file's logits move: measured 1.8e-4 for
    this model (logits up to 0.8), 3.6e-4 for gpt-tiny (1.5), 2.7e-3 for a 4x256 model (4.7), ~4e-3 for GPT-2
    (~50); the same for the converter's file. 1e-3 of the logits' scale (at least 1e-3) bounds all of these."""
    return 1e-3 * max(1.0, float(np.abs(logits).max()))


def test_llama_cpp_runs_our_file(path, model):
    tokens, logits = llama_cpp_run(path, PROMPT, N_NEW)
    expected, ours, stock = reference(model, PROMPT, N_NEW)
    assert tokens == expected
    print(f"\nllama.cpp vs hf_gpt: max |logit diff| {np.abs(logits - ours).max():.3g}, vs stock GPT2LMHeadModel "
          f"{np.abs(logits - stock).max():.3g}, max |logit| {np.abs(ours).max():.3g}")
    np.testing.assert_allclose(logits, ours, atol=llama_cpp_tolerance(ours), rtol=0)


def test_llama_cpp_tokenizes_like_gpt2(path, tokenizer):
    """The tokenizer metadata is complete: llama.cpp's own BPE gives GPT-2's ids, <|endoftext|> included."""
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    text = "Hello, world! It's 3.14159 \u2014 na\u00efve caf\u00e9 \U0001f999\n\n  spaced   out <|endoftext|> The end."
    assert llm.tokenize(text.encode(), add_bos=False, special=True) == tokenizer.encode(text)
    assert llm.token_eos() == llm.token_bos() == 50256
    llm.close()


def converter_script():
    script = os.environ.get("HF_GPT_LLAMA_CPP_CONVERTER")
    if not script:
        pytest.skip("set HF_GPT_LLAMA_CPP_CONVERTER to llama.cpp's convert_hf_to_gguf.py to run it")
    return Path(script)


def test_stock_export_passes_llama_cpp_converter(model, path, meta, reader, tokenizer, tmp_path):
    """save_pretrained_gpt2's folder converts with llama.cpp's own script; llama.cpp then gives the same tokens,
    and our file's logits are no further from transformers' than the converter's file's."""
    script = converter_script()
    model.save_pretrained_gpt2(tmp_path / "stock")
    tokenizer.save_pretrained(tmp_path / "stock")
    out = tmp_path / "converted.gguf"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "stock"), "--outfile", str(out),
                           "--outtype", "f32"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    converted = gguf.GGUFReader(out)
    same = {k: v for k, v in meta.items() if k not in ("general.name", "GGUF.kv_count")}
    converted_meta = fields(converted)
    assert {k: converted_meta.get(k) for k in same} == same  # the converter also writes general.size_label
    for a, b in zip(sorted(converted.tensors, key=lambda t: t.name), sorted(reader.tensors, key=lambda t: t.name)):
        assert a.name == b.name
        np.testing.assert_array_equal(a.data, b.data)

    tokens, logits = llama_cpp_run(out, PROMPT, N_NEW)
    expected, _, stock = reference(model, PROMPT, N_NEW)
    assert tokens == expected
    print(f"\nllama.cpp (converter's file) vs stock GPT2LMHeadModel: max |logit diff| {np.abs(logits - stock).max():.3g}")
    np.testing.assert_allclose(logits, stock, atol=llama_cpp_tolerance(stock), rtol=0)
    # Same tensors, same llama.cpp: our file is exactly as far from transformers as llama.cpp's own conversion.
    ours_tokens, ours_logits = llama_cpp_run(path, PROMPT, N_NEW)
    assert ours_tokens == tokens
    np.testing.assert_allclose(ours_logits, logits, atol=1e-6, rtol=0)
