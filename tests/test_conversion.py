"""GPT-2 checkpoints (both layouts found in the wild) and the book's checkpoints in and out of GPTForCausalLM.

The Hub cannot be reached here: every checkpoint is a tiny random `GPT2LMHeadModel` written to tmp_path, and the
Hub path is exercised against a local Hugging Face cache in offline mode.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

from hf_gpt import GPTConfig, GPTForCausalLM
from hf_gpt.model.conversion_gpt import book_key_to_model_key, gpt2_config_to_gpt_config, load_gpt2_state_dict

REPO = Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=96, n_positions=40, n_embd=32, n_layer=2, n_head=4, layer_norm_epsilon=1e-6,
            bos_token_id=None, eos_token_id=None)


def random_gpt2(seed=0, **overrides):
    """A stock GPT-2 with every parameter random (biases and norms too), so every mapping is exercised."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**{**TINY, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def write_hub_layout(model, folder, fmt="safetensors"):
    """The Hub's openai-community/gpt2 files: no `transformer.` prefix, no lm_head, causal-mask buffers;
    the `.bin` in torch's legacy (pre-zip) format with the `masked_bias` buffers of old transformers."""
    folder.mkdir(parents=True)
    model.config.to_json_file(folder / "config.json")
    sd = {k.removeprefix("transformer."): v.clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    n = model.config.n_positions
    for i in range(model.config.n_layer):
        sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
        if fmt == "bin":
            sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    if fmt == "safetensors":
        save_file(sd, folder / "model.safetensors", metadata={"format": "pt"})
    else:
        torch.save(sd, folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    return folder


@pytest.fixture(scope="module")
def stock():
    return random_gpt2(seed=0)


@pytest.fixture(scope="module")
def checkpoints(stock, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt2")
    stock.save_pretrained(root / "saved")
    return {
        "saved": root / "saved",
        "saved-file": root / "saved" / "model.safetensors",
        "hub-safetensors": write_hub_layout(stock, root / "hub-safetensors"),
        "hub-bin": write_hub_layout(stock, root / "hub-bin", fmt="bin"),
    }


@pytest.fixture(scope="module")
def input_ids():
    return torch.randint(0, TINY["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(1))


def assert_same_model(ours, stock, input_ids):
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids).logits, stock(input_ids).logits, rtol=0, atol=1e-5)
    prompt = input_ids[:1, :5]
    greedy = dict(max_new_tokens=20, min_new_tokens=20, do_sample=False)
    assert ours.generate(prompt, **greedy).tolist() == stock.generate(prompt, **greedy).tolist()


# ------------------------------------------------------------------------------------------------ GPT-2 in


@pytest.mark.parametrize("layout", ["saved", "saved-file", "hub-safetensors", "hub-bin"])
def test_from_gpt2_matches_stock_logits_and_greedy_generation(checkpoints, stock, input_ids, layout):
    ours = GPTForCausalLM.from_gpt2(checkpoints[layout])
    assert not ours.training
    assert ours.out_head.weight is ours.tok_emb.weight
    assert_same_model(ours, stock, input_ids)


def test_sharded_checkpoint_loads(stock, input_ids, tmp_path):
    stock.save_pretrained(tmp_path, max_shard_size="40KB")
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    assert_same_model(GPTForCausalLM.from_gpt2(tmp_path), stock, input_ids)


def test_from_gpt2_config_mirrors_the_gpt2_config(checkpoints):
    config = GPTForCausalLM.from_gpt2(checkpoints["hub-safetensors"]).config
    got = {k: getattr(config, k) for k in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers",
                                           "drop_rate", "qkv_bias", "tie_word_embeddings", "layer_norm_eps")}
    assert got == dict(vocab_size=96, context_length=40, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.1,
                       qkv_bias=True, tie_word_embeddings=True, layer_norm_eps=1e-6)
    assert (config.bos_token_id, config.eos_token_id) == (None, None)


def test_stock_from_pretrained_reads_the_same_folders(checkpoints, stock, input_ids):
    """The hand-written Hub layout is what transformers itself accepts, not just what our loader accepts."""
    for layout in ("hub-safetensors", "hub-bin"):
        reloaded = GPT2LMHeadModel.from_pretrained(checkpoints[layout]).eval()
        with torch.no_grad():
            assert torch.equal(reloaded(input_ids).logits, stock(input_ids).logits)


def test_untied_head_loads_and_exports_untied(tmp_path, input_ids):
    stock = random_gpt2(seed=2, tie_word_embeddings=False)
    assert not torch.equal(stock.lm_head.weight, stock.transformer.wte.weight)
    stock.save_pretrained(tmp_path)
    ours = GPTForCausalLM.from_gpt2(tmp_path)
    assert ours.config.tie_word_embeddings is False
    assert ours.out_head.weight is not ours.tok_emb.weight
    assert torch.equal(ours.out_head.weight, stock.lm_head.weight)
    assert_same_model(ours, stock, input_ids)
    back = ours.to_gpt2()
    assert back.config.tie_word_embeddings is False
    assert torch.equal(back.lm_head.weight, stock.lm_head.weight)


def test_untied_config_starts_its_head_from_wte_like_the_book(checkpoints, stock):
    ours = GPTForCausalLM.from_gpt2(checkpoints["saved"], tie_word_embeddings=False)
    assert ours.out_head.weight is not ours.tok_emb.weight
    assert torch.equal(ours.out_head.weight, stock.transformer.wte.weight)


@pytest.mark.parametrize("tie", [True, False])
def test_gpt2_round_trip_is_bit_exact(tmp_path, tie):
    stock = random_gpt2(seed=3, tie_word_embeddings=tie)
    stock.save_pretrained(tmp_path / "in")
    ours = GPTForCausalLM.from_gpt2(tmp_path / "in")
    params = list(ours.parameters())
    assert len({p.untyped_storage().data_ptr() for p in params}) == len(params)  # each tensor in its own memory
    back = ours.to_gpt2().state_dict()
    original = stock.state_dict()
    assert sorted(back) == sorted(original)
    assert all(torch.equal(back[k], original[k]) for k in original)

    ours.save_pretrained_gpt2(tmp_path / "out")
    written, read = load_file(tmp_path / "in" / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(written) == sorted(read)
    assert all(torch.equal(written[k], read[k]) for k in written)


def test_to_gpt2_is_independent_of_the_model(checkpoints):
    ours = GPTForCausalLM.from_gpt2(checkpoints["saved"])
    exported = ours.to_gpt2()
    before = exported.transformer.wte.weight.clone()
    with torch.no_grad():
        ours.tok_emb.weight.add_(1.0)
    assert torch.equal(exported.transformer.wte.weight, before)


def test_gpt2_small_shaped_checkpoint_loads(tmp_path):
    torch.manual_seed(4)
    stock = GPT2LMHeadModel(GPT2Config()).eval()  # GPT2Config() is gpt2-small: 12 layers x 768, vocab 50257
    stock.save_pretrained(tmp_path)
    ours = GPTForCausalLM.from_gpt2(tmp_path)
    expected = GPTConfig.from_preset("gpt2-small")
    for field in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "qkv_bias", "tie_word_embeddings"):
        assert getattr(ours.config, field) == getattr(expected, field), field
    assert sum(p.numel() for p in ours.parameters()) == 124_439_808
    ids = torch.tensor([[6109, 3626, 6100, 345]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, stock(ids).logits, rtol=0, atol=1e-5)


def test_overrides_crop_positions_and_cast(checkpoints, stock, input_ids):
    ours = GPTForCausalLM.from_gpt2(checkpoints["saved"], context_length=16, drop_rate=0.0, dtype=torch.float64)
    assert (ours.config.context_length, ours.config.drop_rate) == (16, 0.0)
    assert ours.pos_emb.weight.dtype == torch.float64
    assert torch.equal(ours.pos_emb.weight, stock.transformer.wpe.weight[:16].double())
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids).logits.float(), stock(input_ids).logits, rtol=0, atol=1e-5)


def test_hub_id_is_read_from_the_offline_cache(checkpoints, stock, input_ids, tmp_path, monkeypatch):
    """Hub ids go through huggingface_hub, which serves the cache when HF_HUB_OFFLINE is set."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "models--openai-community--gpt2"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for name in ("config.json", "pytorch_model.bin"):  # only the .bin cached: model.safetensors is tried first
        os.symlink(checkpoints["hub-bin"] / name, snapshot / name)
    for name in ("openai-community/gpt2", "gpt2-small (124M)"):
        ours = GPTForCausalLM.from_gpt2(name, cache_dir=tmp_path)
        with torch.no_grad():
            torch.testing.assert_close(ours(input_ids).logits, stock(input_ids).logits, rtol=0, atol=1e-5)
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        GPTForCausalLM.from_gpt2("openai-community/gpt2-medium", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------ book checkpoints


@pytest.mark.parametrize("name", ["book_tiny", "book_tiny_qkvbias"])
@pytest.mark.parametrize("config_as", ["path", "dict", "GPTConfig"])
def test_book_checkpoint_reproduces_the_book(book_reference, name, config_as):
    config_path = book_reference / f"{name}_config.json"
    config = {"path": config_path, "dict": json.loads(config_path.read_text()),
              "GPTConfig": GPTConfig(**json.loads(config_path.read_text()))}[config_as]
    model = GPTForCausalLM.from_book_checkpoint(book_reference / f"{name}.pth", config)
    expected = load_file(book_reference / f"{name}_expected.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model(expected["input_ids"]).logits, expected["logits"], rtol=0, atol=1e-5)
    output = model.generate(expected["greedy_prompt"], max_new_tokens=40, min_new_tokens=40, do_sample=False)
    assert output.tolist() == expected["greedy_output"].tolist()


@pytest.mark.parametrize("wrap", ["model_and_optimizer", "torch.compile"])
def test_book_training_checkpoints_load(book_reference, tmp_path, wrap):
    state_dict = torch.load(book_reference / "book_tiny.pth", weights_only=True)
    config = book_reference / "book_tiny_config.json"
    if wrap == "model_and_optimizer":
        model = GPTForCausalLM.from_book_checkpoint(book_reference / "book_tiny.pth", config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
        model(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
        optimizer.step()
        saved = {"model_state_dict": state_dict, "optimizer_state_dict": optimizer.state_dict()}
    else:
        saved = {f"_orig_mod.{k}": v for k, v in state_dict.items()}
    torch.save(saved, tmp_path / "model.pth")
    model = GPTForCausalLM.from_book_checkpoint(tmp_path / "model.pth", config)
    ours = model.state_dict()  # the book's names under the backbone's `gpt.` prefix
    assert all(torch.equal(ours[book_key_to_model_key(k)], v) for k, v in state_dict.items() if not k.endswith("att.mask"))


def test_book_model_exports_to_stock_gpt2_loadable_without_remote_code(book_reference, tmp_path):
    """A book model without qkv bias and with an untied head becomes a plain `gpt2` folder."""
    model = GPTForCausalLM.from_book_checkpoint(book_reference / "book_tiny.pth", book_reference / "book_tiny_config.json")
    expected = load_file(book_reference / "book_tiny_expected.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model.to_gpt2()(expected["input_ids"]).logits, expected["logits"], rtol=0, atol=1e-5)

    folder = tmp_path / "stock"
    model.save_pretrained_gpt2(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gpt2" and "auto_map" not in config and config["tie_word_embeddings"] is False
    assert not list(folder.glob("*.py"))
    with safe_open(folder / "model.safetensors", "pt") as f:
        assert "lm_head.weight" in f.keys()
        assert torch.count_nonzero(f.get_tensor("transformer.h.0.attn.c_attn.bias")) == 0

    torch.save(expected["input_ids"], tmp_path / "ids.pt")
    code = (
        "import sys; sys.modules['hf_gpt'] = None\n"
        "try:\n    import hf_gpt\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('hf_gpt importable')\n"
        "import torch\nfrom transformers import AutoModelForCausalLM\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(folder)!r}).eval()\n"
        "assert type(model).__name__ == 'GPT2LMHeadModel', type(model)\n"
        f"ids = torch.load({str(tmp_path / 'ids.pt')!r})\n"
        f"with torch.no_grad():\n    torch.save(model(ids).logits, {str(tmp_path / 'logits.pt')!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected["logits"], rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------ bad input


def test_weights_of_another_size_name_tensor_and_shapes(tmp_path):
    random_gpt2(seed=5, n_embd=48, n_layer=3).save_pretrained(tmp_path)
    small = GPTConfig(vocab_size=96, context_length=40, emb_dim=32, n_heads=4, n_layers=2, qkv_bias=True,
                      tie_word_embeddings=True)
    with pytest.raises(ValueError) as err:
        GPTForCausalLM.from_gpt2(tmp_path, config=small)
    message = str(err.value)
    assert "transformer.h.0.attn.c_attn.weight: checkpoint (48, 144), model expects (32, 96)" in message
    assert "transformer.wte.weight: checkpoint (96, 48), model expects (96, 32)" in message
    unexpected = next(line for line in message.splitlines() if "unexpected key(s)" in line)
    assert unexpected.startswith("  12 unexpected key(s): ") and "transformer.h.2.ln_1.weight" in unexpected
    assert "n_embd 48, n_layer 3" in message


def test_positions_beyond_the_checkpoint_are_refused(checkpoints):
    with pytest.raises(ValueError, match=r"wpe.weight: checkpoint \(40, 32\), model expects \(64, 32\)"):
        GPTForCausalLM.from_gpt2(checkpoints["saved"], context_length=64)


def test_missing_and_unexpected_keys_are_listed(stock, tmp_path):
    sd = {k: v.clone() for k, v in stock.state_dict().items() if k not in ("lm_head.weight", "transformer.h.1.mlp.c_fc.bias")}
    sd["transformer.h.0.attn.rotary"] = torch.zeros(3)
    save_file(sd, tmp_path / "model.safetensors")
    stock.config.to_json_file(tmp_path / "config.json")
    with pytest.raises(ValueError) as err:
        GPTForCausalLM.from_gpt2(tmp_path)
    assert "1 missing key(s): h.1.mlp.c_fc.bias" in str(err.value)
    assert "1 unexpected key(s): transformer.h.0.attn.rotary" in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_safetensors_names_the_file(checkpoints, tmp_path, damage):
    data = (checkpoints["saved"] / "model.safetensors").read_bytes()
    data = {"truncated": data[: len(data) // 2], "garbage": b"not a safetensors file" * 10, "empty": b""}[damage]
    (tmp_path / "model.safetensors").write_bytes(data)
    (tmp_path / "config.json").write_bytes((checkpoints["saved"] / "config.json").read_bytes())
    with pytest.raises(ValueError, match=f"{tmp_path / 'model.safetensors'}: not a readable safetensors file"):
        GPTForCausalLM.from_gpt2(tmp_path)


def test_corrupt_pytorch_bin_names_the_file(checkpoints, tmp_path):
    data = (checkpoints["hub-bin"] / "pytorch_model.bin").read_bytes()
    (tmp_path / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    (tmp_path / "config.json").write_bytes((checkpoints["hub-bin"] / "config.json").read_bytes())
    with pytest.raises(ValueError, match="pytorch_model.bin: not a readable PyTorch checkpoint"):
        GPTForCausalLM.from_gpt2(tmp_path)


def test_folder_without_weights_says_what_it_looked_for(checkpoints, tmp_path):
    (tmp_path / "config.json").write_bytes((checkpoints["saved"] / "config.json").read_bytes())
    with pytest.raises(FileNotFoundError, match="looked for model.safetensors, .*pytorch_model.bin"):
        GPTForCausalLM.from_gpt2(tmp_path)
    (tmp_path / "hparams.json").write_text("{}")  # OpenAI's TensorFlow folder (tests/test_openai_checkpoint.py)
    with pytest.raises(ValueError, match="hparams.json: no integer n_vocab"):
        GPTForCausalLM.from_gpt2(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((checkpoints["saved"] / "model.safetensors").read_bytes())
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        GPTForCausalLM.from_gpt2(tmp_path)


def test_weights_file_without_config_needs_one(checkpoints, tmp_path, stock, input_ids):
    (tmp_path / "weights.safetensors").write_bytes((checkpoints["saved"] / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="no config.json beside it"):
        GPTForCausalLM.from_gpt2(tmp_path / "weights.safetensors")
    config = gpt2_config_to_gpt_config(stock.config)
    ours = GPTForCausalLM.from_gpt2(tmp_path / "weights.safetensors", config=config)
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids).logits, stock(input_ids).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("field, value", [
    ("n_inner", 100), ("activation_function", "relu"), ("scale_attn_by_inverse_layer_idx", True),
    ("reorder_and_upcast_attn", True), ("add_cross_attention", True), ("scale_attn_weights", False),
])
def test_gpt2_variants_the_book_cannot_mirror_are_refused(field, value):
    with pytest.raises(ValueError, match=f"cannot be mirrored.*{field}"):
        gpt2_config_to_gpt_config(GPT2Config(**{**TINY, field: value}))


def test_gpt2_configs_the_book_can_mirror_are_accepted():
    config = gpt2_config_to_gpt_config(GPT2Config(**TINY, n_inner=128, activation_function="gelu_pytorch_tanh"))
    assert (config.emb_dim, config.qkv_bias) == (32, True)


def test_tied_config_refuses_a_distinct_head(tmp_path):
    random_gpt2(seed=6, tie_word_embeddings=False).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="lm_head.weight differs from transformer.wte.weight.*tie_word_embeddings=False"):
        GPTForCausalLM.from_gpt2(tmp_path, tie_word_embeddings=True)


def test_unknown_override_is_a_typo(checkpoints):
    with pytest.raises(TypeError, match="contex_length"):
        GPTForCausalLM.from_gpt2(checkpoints["saved"], contex_length=16)


def test_loading_into_an_existing_model_is_all_or_nothing(checkpoints, input_ids):
    model = GPTForCausalLM.from_gpt2(checkpoints["saved"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    other = random_gpt2(seed=7)
    good = other.state_dict()

    bad_shape = {**good, "transformer.h.1.mlp.c_proj.weight": torch.zeros(128, 48)}
    bad_keys = {k: v for k, v in good.items() if k != "transformer.ln_f.bias"}
    bad_bias = {**good, "transformer.h.1.attn.c_attn.bias": torch.ones(96)}
    no_qkv_bias = GPTForCausalLM(GPTConfig(vocab_size=96, context_length=40, emb_dim=32, n_heads=4, n_layers=2,
                                           qkv_bias=False, tie_word_embeddings=True))
    for target, state_dict, match in [
        (model, bad_shape, r"transformer.h.1.mlp.c_proj.weight: checkpoint \(128, 48\), model expects \(128, 32\)"),
        (model, bad_keys, "missing key.*ln_f.bias"),
        (no_qkv_bias, bad_bias, "non-zero query/key/value biases.*qkv_bias=True"),
    ]:
        snapshot = {k: v.clone() for k, v in target.state_dict().items()}
        with pytest.raises(ValueError, match=match):
            load_gpt2_state_dict(target, state_dict)
        assert all(torch.equal(target.state_dict()[k], v) for k, v in snapshot.items())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())

    load_gpt2_state_dict(model, good)
    assert model.out_head.weight is model.tok_emb.weight
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids).logits, other(input_ids).logits, rtol=0, atol=1e-5)


def test_bad_book_checkpoints(book_reference, tmp_path):
    tiny, config = book_reference / "book_tiny.pth", book_reference / "book_tiny_config.json"
    with pytest.raises(ValueError, match=r"trf_blocks.0.att.W_query.weight: checkpoint \(64, 64\), model expects \(128, 128\)"):
        GPTForCausalLM.from_book_checkpoint(tiny, config, emb_dim=128)
    with pytest.raises(ValueError, match="unexpected key.*W_query.bias(.|\n)*use qkv_bias=True"):
        GPTForCausalLM.from_book_checkpoint(book_reference / "book_tiny_qkvbias.pth", config)
    with pytest.raises(ValueError, match="missing key.*W_query.bias(.|\n)*use qkv_bias=False"):
        GPTForCausalLM.from_book_checkpoint(tiny, config, qkv_bias=True)
    with pytest.raises(ValueError, match="out_head.weight differs from tok_emb.weight"):
        GPTForCausalLM.from_book_checkpoint(tiny, config, tie_word_embeddings=True)

    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match=r"pickled.pth: it holds a pickled Python object \(torch.nn.modules.linear."
                                         r"Linear\) besides tensors, and loading it would run that code, so it is "
                                         r"refused"):
        GPTForCausalLM.from_book_checkpoint(tmp_path / "pickled.pth", config)
    (tmp_path / "truncated.pth").write_bytes(tiny.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.pth: not a readable PyTorch checkpoint"):
        GPTForCausalLM.from_book_checkpoint(tmp_path / "truncated.pth", config)


# ---------------------------------------------------------------------------------------------------- script


def test_load_gpt2_script_samples_and_saves_both_formats(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("load_gpt2", REPO / "scripts" / "load_gpt2.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    stock = random_gpt2(seed=8, vocab_size=50257, n_embd=16, n_head=2, bos_token_id=50256, eos_token_id=50256)
    stock.save_pretrained(tmp_path / "in")

    text = script.main([str(tmp_path / "in"), "--max-new-tokens", "6", "--save", str(tmp_path / "gpt2"),
                        "--format", "gpt2"])
    assert text.startswith("Every effort moves you") and text in capsys.readouterr().out
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "gpt2")
    prompt = tokenizer("Every effort moves you", return_tensors="pt").input_ids
    assert prompt.tolist() == [[6109, 3626, 6100, 345]]
    stock_out = stock.generate(prompt, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=50256)
    assert text == tokenizer.decode(stock_out[0], skip_special_tokens=True)
    assert json.loads((tmp_path / "gpt2" / "config.json").read_text())["model_type"] == "gpt2"

    sampled = script.main([str(tmp_path / "gpt2"), "--max-new-tokens", "6", "--top-k", "5", "--temperature", "1.5",
                           "--save", str(tmp_path / "ours")])
    assert sampled.startswith("Every effort moves you")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == "hf_gpt"
    assert script.generation_kwargs(script.parse_args(["--top-p", "0.9"])) == {"do_sample": True, "temperature": 1.0,
                                                                              "top_k": 0, "top_p": 0.9}
    assert script.generation_kwargs(script.parse_args(["--temperature", "0", "--top-k", "3"])) == {
        "do_sample": False, "temperature": None, "top_k": None, "top_p": None}
