"""The core model: the book's GPTModel, number for number, behaving like any transformers causal LM."""

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, TextIteratorStreamer, pipeline

from hf_gpt import GPT_CONFIG_124M, PRESETS, GPTConfig, GPTForCausalLM, load_tokenizer
from hf_gpt.model.conversion_gpt import book_key_to_model_key
from hf_gpt.model.modeling_gpt import CACHE

FIXTURES = ["book_tiny", "book_tiny_qkvbias"]


def tiny_config(**overrides):
    base = dict(vocab_size=1000, context_length=32, emb_dim=64, n_heads=4, n_layers=2, drop_rate=0.0, qkv_bias=True)
    return GPTConfig(**{**base, **overrides})


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPTForCausalLM(tiny_config(**overrides)).eval()


def book_fixture(book_reference, name):
    config = json.loads((book_reference / f"{name}_config.json").read_text())
    state = torch.load(book_reference / f"{name}.pth", weights_only=True)
    expected = load_file(book_reference / f"{name}_expected.safetensors")
    return config, state, expected


# --- the book's numbers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_book_init_under_seed_123_gives_the_books_weights(book_reference, name):
    config, state, _ = book_fixture(book_reference, name)
    torch.manual_seed(123)
    model = GPTForCausalLM(GPTConfig(**config))
    ours = model.state_dict()
    # The book's names, under the backbone's `gpt.` prefix (out_head stays on top).
    theirs = {book_key_to_model_key(k): v for k, v in state.items() if not k.endswith("att.mask")}
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


@pytest.mark.parametrize("name", FIXTURES)
def test_book_state_dict_loads_and_gives_the_books_logits(book_reference, name):
    config, state, expected = book_fixture(book_reference, name)
    model = tiny_model(seed=7, **config)  # different weights, then the book's state dict (with its mask buffers)
    result = model.load_state_dict({k: v for k, v in state.items() if not k.endswith("att.mask")}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()
    with torch.no_grad():
        logits = model(expected["input_ids"]).logits
    torch.testing.assert_close(logits, expected["logits"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generate_reproduces_the_books_generate_text_simple_with_cropping(book_reference, name, use_cache):
    """45 tokens from a 32-token context: past 32 the book crops to the last 32 tokens, so do we."""
    config, state, expected = book_fixture(book_reference, name)
    torch.manual_seed(123)
    model = GPTForCausalLM(GPTConfig(**config)).eval()
    out = model.generate(expected["greedy_prompt"], max_new_tokens=40, do_sample=False, use_cache=use_cache)
    assert out.tolist() == expected["greedy_output"].tolist()


def test_gpt_config_124m_first_loss_matches_the_book():
    torch.manual_seed(123)
    model = GPTForCausalLM(GPTConfig(**GPT_CONFIG_124M)).eval()
    inputs = torch.tensor([[16833, 3626, 6100], [40, 1107, 588]])
    targets = torch.tensor([[3626, 6100, 345], [1107, 588, 11311]])
    with torch.no_grad():
        loss = model(inputs, shift_labels=targets).loss.item()
    assert loss == pytest.approx(10.7940, rel=1e-4)
    assert torch.exp(torch.tensor(loss)).item() == pytest.approx(48725.8, rel=1e-4)
    # The book counts 163,009,536 for context 1024 (ch. 4); context 256 has 768 fewer position rows of 768.
    assert sum(p.numel() for p in model.parameters()) == 163_009_536 - 768 * 768


def test_labels_follow_the_transformers_convention():
    model = tiny_model()
    ids = torch.randint(0, 1000, (2, 10))
    with torch.no_grad():
        out = model(ids, labels=ids)
        logits = out.logits
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    torch.testing.assert_close(out.loss, expected)
    with torch.no_grad():
        shifted = model(ids[:, :-1], shift_labels=ids[:, 1:]).loss
    torch.testing.assert_close(shifted, expected, atol=1e-6, rtol=0)


# --- config -------------------------------------------------------------------------------------------------------


def test_config_takes_the_book_dict_and_the_standard_names():
    config = GPTConfig(**GPT_CONFIG_124M)
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (768, 12, 12)
    assert config.max_position_embeddings == 256 and config.tie_word_embeddings is False
    assert config.init_scheme == "book"
    hf_named = GPTConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=3, max_position_embeddings=48)
    assert (hf_named.emb_dim, hf_named.n_heads, hf_named.n_layers, hf_named.context_length) == (64, 4, 3, 48)
    assert config.to_book_dict() == GPT_CONFIG_124M


@pytest.mark.parametrize(
    "name, emb, layers, heads",
    [("gpt2-small (124M)", 768, 12, 12), ("gpt2-medium (355M)", 1024, 24, 16),
     ("gpt2-large (774M)", 1280, 36, 20), ("gpt2-xl (1558M)", 1600, 48, 25)],
)
def test_presets_follow_the_books_table(name, emb, layers, heads):
    config = GPTConfig.from_preset(name)
    assert (config.emb_dim, config.n_layers, config.n_heads, config.context_length) == (emb, layers, heads, 1024)
    assert config.qkv_bias and config.tie_word_embeddings
    assert PRESETS[name.split(" ")[0]] == PRESETS[name]


def test_gpt2_small_preset_has_124m_parameters():
    with torch.device("meta"):
        model = GPTForCausalLM(GPTConfig.from_preset("gpt2-small"))
    assert sum(p.numel() for p in model.parameters()) == 124_439_808


@pytest.mark.parametrize(
    "bad, field",
    [
        (dict(emb_dim=100, n_heads=12), "emb_dim"),
        (dict(n_layers=0), "n_layers"),
        (dict(n_heads=-2), "n_heads"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(context_length=0), "context_length"),
        (dict(emb_dim=7.5), "emb_dim"),
        (dict(drop_rate=1.0), "drop_rate"),
        (dict(drop_rate=-0.1), "drop_rate"),
        (dict(init_scheme="xavier"), "init_scheme"),
    ],
)
def test_bad_config_values_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        GPTConfig(**bad)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="gpt2-small"):
        GPTConfig.from_preset("gpt5")


def test_gpt2_init_scheme():
    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(**{**GPT_CONFIG_124M, "n_layers": 4, "init_scheme": "gpt2"}))
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.01)
    assert model.trf_blocks[0].att.W_query.weight.std().item() == pytest.approx(0.02, rel=0.02)
    residual = 0.02 / (2 * 4) ** 0.5
    assert model.trf_blocks[0].att.out_proj.weight.std().item() == pytest.approx(residual, rel=0.02)
    assert model.trf_blocks[3].ff.layers[2].weight.std().item() == pytest.approx(residual, rel=0.02)
    assert torch.count_nonzero(model.trf_blocks[0].ff.layers[0].bias) == 0
    assert torch.equal(model.final_norm.scale, torch.ones(768))


# --- forward, cache, generate -------------------------------------------------------------------------------------


def test_longer_than_context_forward_raises_before_compute():
    model = tiny_model()
    with pytest.raises(ValueError, match="context_length=32"):
        model(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.parametrize("name", ["cache", "past_key_values"])
def test_kv_cache_step_equals_full_forward(name):
    """The cache goes in as `cache` (transformers >= 5.24) or `past_key_values` (its older name), and comes out
    under the installed version's name, which is where `generate` looks for it."""
    model = tiny_model()
    ids = torch.randint(0, 1000, (2, 12))
    with torch.no_grad():
        full = model(ids).logits
        first = model(ids[:, :8], use_cache=True)
        cache = first[CACHE]
        step = model(ids[:, 8:], use_cache=True, **{name: cache})
    assert cache.get_seq_length() == 12  # the cache grew by 4: each new token costs one position
    assert step[CACHE] is cache
    torch.testing.assert_close(step.logits, full[:, 8:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="not both"):
        model(ids[:, 8:], cache=cache, past_key_values=cache)


def test_forward_training_and_generate_use_no_deprecated_transformers_api():
    """transformers announces its renames as FutureWarnings before it removes the old names (5.24's `cache`, for
    one, drops `past_key_values` in 5.40): the model's own paths raise none, so a rename is seen here, not later as
    a crash or, as with 5.24's generate, as silently wrong tokens."""
    model = tiny_model()
    ids = torch.randint(0, 1000, (2, 9))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        model.train()
        model(ids, labels=ids).loss.backward()
        model.eval()
        model.generate(ids, max_new_tokens=4, do_sample=False)
        model.generate(ids, max_new_tokens=4, do_sample=False, cache_implementation="static")


def test_generate_from_inputs_embeds_continues_like_the_ids():
    """`generate(inputs_embeds=...)` (soft prompts, prefix tuning) returns the new tokens the same prompt's ids give."""
    model = tiny_model()
    ids = torch.randint(0, 1000, (2, 5))
    from_ids = model.generate(ids, max_new_tokens=6, do_sample=False)
    from_embeds = model.generate(inputs_embeds=model.get_input_embeddings()(ids), max_new_tokens=6, do_sample=False)
    assert from_embeds.tolist() == from_ids[:, 5:].tolist()


def test_cached_and_uncached_greedy_are_identical():
    model = tiny_model()
    ids = torch.randint(0, 1000, (2, 5))
    cached = model.generate(ids, max_new_tokens=20, do_sample=False)
    uncached = model.generate(ids, max_new_tokens=20, do_sample=False, use_cache=False)
    assert cached.tolist() == uncached.tolist()


def test_left_padded_batch_equals_each_row_alone():
    model = tiny_model(tie_word_embeddings=True)
    torch.manual_seed(3)
    long, short = torch.randint(1, 1000, (1, 7)), torch.randint(1, 1000, (1, 4))
    batch = torch.cat([long, torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1)])
    mask = torch.ones_like(batch)
    mask[1, :3] = 0
    out = model.generate(batch, attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=0)
    alone_long = model.generate(long, max_new_tokens=12, do_sample=False)
    alone_short = model.generate(short, max_new_tokens=12, do_sample=False)
    assert out[0].tolist() == alone_long[0].tolist()
    assert out[1, 3:].tolist() == alone_short[0].tolist()


def test_generate_options():
    model = tiny_model()
    ids = torch.randint(0, 1000, (2, 4))
    torch.manual_seed(0)
    sampled = model.generate(ids, do_sample=True, top_p=0.9, top_k=50, temperature=0.8, max_new_tokens=6)
    torch.manual_seed(0)
    again = model.generate(ids, do_sample=True, top_p=0.9, top_k=50, temperature=0.8, max_new_tokens=6)
    assert sampled.shape == (2, 10) and sampled.tolist() == again.tolist()
    beams = model.generate(ids, num_beams=3, num_return_sequences=2, max_new_tokens=6, do_sample=False)
    assert beams.shape == (4, 10)
    penalised = model.generate(ids[:1], repetition_penalty=100.0, max_new_tokens=8, do_sample=False)
    new = penalised[0, 4:].tolist()
    assert len(set(new)) == len(new)  # a huge penalty forbids repeats
    greedy = model.generate(ids[:1], max_new_tokens=8, do_sample=False)
    stop = greedy[0, 6].item()
    first = greedy[0, 4:].tolist().index(stop)
    stopped = model.generate(ids[:1], max_new_tokens=8, do_sample=False, eos_token_id=stop, pad_token_id=0)
    assert stopped[0].tolist() == greedy[0, : 4 + first + 1].tolist()


def test_streamer_yields_the_generated_text():
    tokenizer = load_tokenizer()
    model = tiny_model(vocab_size=50257)
    ids = tokenizer("Every effort moves you", return_tensors="pt").input_ids
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
    out = model.generate(ids, max_new_tokens=6, do_sample=False, streamer=streamer)
    assert "".join(streamer) == tokenizer.decode(out[0, ids.shape[1]:])


def test_text_generation_pipeline():
    tokenizer = load_tokenizer()
    model = tiny_model(vocab_size=50257)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    text = generator("Every effort moves you", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    ids = tokenizer("Every effort moves you", return_tensors="pt").input_ids
    expected = tokenizer.decode(model.generate(ids, max_new_tokens=5, do_sample=False)[0])
    assert text == expected


def test_logits_to_keep_and_hidden_states():
    model = tiny_model()
    ids = torch.randint(0, 1000, (1, 9))
    with torch.no_grad():
        full = model(ids, output_hidden_states=True)
        last = model(ids, logits_to_keep=1)
    assert last.logits.shape == (1, 1, 1000)
    torch.testing.assert_close(last.logits, full.logits[:, -1:], atol=1e-6, rtol=0)
    assert len(full.hidden_states) == 3


def test_eager_attention_equals_sdpa_and_returns_weights():
    model = tiny_model()
    ids = torch.randint(0, 1000, (2, 9))
    with torch.no_grad():
        sdpa = model(ids).logits
        model.set_attn_implementation("eager")
        eager = model(ids, output_attentions=True)
    torch.testing.assert_close(eager.logits, sdpa, atol=1e-5, rtol=0)
    assert eager.attentions[0].shape == (2, 4, 9, 9)
    assert torch.all(eager.attentions[0].triu(diagonal=1) == 0)


def test_gradient_checkpointing_gives_the_same_loss_and_grads():
    model = tiny_model()
    model.train()
    ids = torch.randint(0, 1000, (2, 16))
    loss = model(ids, labels=ids).loss
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.activation_checkpointing_enable()
    loss_ckpt = model(ids, labels=ids).loss
    loss_ckpt.backward()
    assert loss_ckpt.item() == pytest.approx(loss.item(), abs=1e-6)
    for a, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, a, atol=1e-6, rtol=1e-5)


def test_dropout_applies_in_training_only():
    model = tiny_model(drop_rate=0.5)
    ids = torch.randint(0, 1000, (1, 8))
    with torch.no_grad():
        a, b = model(ids).logits, model(ids).logits
        model.train()
        c = model(ids).logits
    assert torch.equal(a, b) and not torch.allclose(a, c)


# --- saving, loading, Auto classes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_save_load_round_trip_is_bit_exact(tmp_path, tied):
    model = tiny_model(tie_word_embeddings=tied)
    assert (model.out_head.weight is model.tok_emb.weight) == tied
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded) is GPTForCausalLM
    assert (loaded.out_head.weight is loaded.tok_emb.weight) == tied
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"] == {
        "AutoConfig": "configuration_gpt.GPTConfig",
        "AutoModel": "modeling_gpt.GPTModel",
        "AutoModelForCausalLM": "modeling_gpt.GPTForCausalLM",
    }
    assert (tmp_path / "modeling_gpt.py").is_file() and (tmp_path / "configuration_gpt.py").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), GPTConfig)


@pytest.mark.slow
def test_fresh_process_loads_with_remote_code_without_hf_gpt(tmp_path):
    """The Hub copy of the class is the installed one: it generates, and its conversions (which ship beside it as
    conversion_gpt.py) export to stock GPT-2, load GPT-2 and load the book's .pth, all without hf_gpt."""
    model = tiny_model(tie_word_embeddings=True)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    torch.save(model.state_dict(), tmp_path / "book.pth")
    prompt = [[5, 17, 99, 3]]
    expected = model.generate(torch.tensor(prompt), max_new_tokens=10, do_sample=False)[0].tolist()
    code = f"""
import sys
sys.modules["hf_gpt"] = None  # hf_gpt may be pip-installed: prove the folder alone is enough
import torch
from transformers import AutoModelForCausalLM, GPT2LMHeadModel
model = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
ids = torch.tensor({prompt})
logits = model(ids).logits
stock = model.to_gpt2().eval()
assert isinstance(stock, GPT2LMHeadModel)
model.save_pretrained_gpt2({str(tmp_path / "gpt2")!r})
back = type(model).from_gpt2({str(tmp_path / "gpt2")!r}, qkv_bias=model.config.qkv_bias).eval()
book = type(model).from_book_checkpoint({str(tmp_path / "book.pth")!r}, model.config).eval()
for other in (stock, back, book):
    assert (other(ids).logits - logits).abs().max() < 1e-5, type(other)
print(model.generate(ids, max_new_tokens=10, do_sample=False)[0].tolist())
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str(expected)
