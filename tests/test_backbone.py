"""The backbone under the LM head (`model.gpt`, the `base_model`), and the book's flat keys that still load into it."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM

from hf_gpt import GPTConfig, GPTForCausalLM, GPTModel
from hf_gpt.model.conversion_gpt import book_key_to_model_key, load_gpt2_state_dict

# Folders saved by hf_gpt before the backbone existed: flat book keys in model.safetensors (see fixtures/README.md).
FLAT_FOLDERS = ["tied", "untied"]


def tiny_model(seed=0, **overrides):
    base = dict(vocab_size=100, context_length=16, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0, qkv_bias=True)
    torch.manual_seed(seed)
    return GPTForCausalLM(GPTConfig(**{**base, **overrides})).eval()


def test_base_model_is_the_backbone_and_returns_the_heads_input():
    model = tiny_model()
    ids = torch.randint(0, 100, (2, 7))
    assert model.base_model is model.gpt and model.get_decoder() is model.gpt and isinstance(model.gpt, GPTModel)
    assert model.get_input_embeddings() is model.gpt.tok_emb and model.get_output_embeddings() is model.out_head
    with torch.no_grad():
        hidden = model.base_model(ids).last_hidden_state
        out = model(ids, output_hidden_states=True)
    assert hidden.shape == (2, 7, 16)
    torch.testing.assert_close(model.out_head(hidden), out.logits, rtol=0, atol=0)
    assert len(out.hidden_states) == 3


def test_state_dict_names_are_the_books_under_gpt_and_book_attributes_still_reach_them():
    model = tiny_model()
    keys = list(model.state_dict())
    assert keys[:3] == ["gpt.tok_emb.weight", "gpt.pos_emb.weight", "gpt.trf_blocks.0.att.W_query.weight"]
    assert keys[-1] == "out_head.weight" and all(k.startswith("gpt.") for k in keys[:-1])
    # The book's code reads and replaces modules at the top level (chapter 6 swaps out_head, unfreezes the last block).
    assert model.trf_blocks is model.gpt.trf_blocks and model.final_norm is model.gpt.final_norm
    new_norm = type(model.final_norm)(16)
    model.final_norm = new_norm
    assert model.gpt.final_norm is new_norm and "final_norm" not in model._modules


@pytest.mark.parametrize("tied", [True, False])
def test_flat_book_keys_load_with_load_state_dict(tied):
    """README: `model.load_state_dict(torch.load("model.pth"))` with the book's own key names."""
    source = tiny_model(seed=1, tie_word_embeddings=tied)
    book = {k.removeprefix("gpt."): v for k, v in source.state_dict().items()}
    assert "tok_emb.weight" in book and "trf_blocks.0.att.W_query.weight" in book
    model = tiny_model(seed=2, tie_word_embeddings=tied)
    result = model.load_state_dict(book, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ids = torch.randint(0, 100, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, source(ids).logits, rtol=0, atol=0)
    result = model.load_state_dict(source.state_dict(), strict=True)  # its own prefixed keys, of course, too
    assert not result.missing_keys and not result.unexpected_keys
    assert book_key_to_model_key("out_head.weight") == "out_head.weight"
    assert book_key_to_model_key("gpt.tok_emb.weight") == "gpt.tok_emb.weight"


@pytest.mark.parametrize("kind", FLAT_FOLDERS)
def test_folders_saved_with_flat_keys_still_load(book_reference, tmp_path, kind):
    folder = book_reference / "flat_keys" / kind
    assert not any(k.startswith("gpt.") for k in load_file(folder / "model.safetensors"))
    expected = load_file(folder / "expected.safetensors")
    model, info = GPTForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info
    assert (model.out_head.weight is model.gpt.tok_emb.weight) == (kind == "tied")
    with torch.no_grad():
        torch.testing.assert_close(model(expected["input_ids"]).logits, expected["logits"], rtol=0, atol=1e-6)
    assert type(AutoModelForCausalLM.from_pretrained(folder)) is GPTForCausalLM
    backbone, info = GPTModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"]
    with torch.no_grad():
        torch.testing.assert_close(backbone(expected["input_ids"]).last_hidden_state,
                                   model.gpt(expected["input_ids"]).last_hidden_state, rtol=0, atol=0)
    # Saved again, it is in the new layout and loads the same.
    model.save_pretrained(tmp_path)
    assert "gpt.tok_emb.weight" in load_file(tmp_path / "model.safetensors")
    again = GPTForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(again(expected["input_ids"]).logits, expected["logits"], rtol=0, atol=1e-6)


def test_automodel_loads_the_backbone_of_a_saved_lm(tmp_path):
    model = tiny_model(tie_word_embeddings=False)
    model.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_gpt.GPTModel"
    assert auto_map["AutoModelForCausalLM"] == "modeling_gpt.GPTForCausalLM"
    backbone, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(backbone) is GPTModel and not any(info.values()), info  # the head is left behind, quietly
    ids = torch.randint(0, 100, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(backbone(ids).last_hidden_state, model.gpt(ids).last_hidden_state, rtol=0, atol=0)


def test_book_checkpoint_and_gpt2_round_trip_through_the_table(book_reference, tmp_path):
    """from_book_checkpoint takes the book's flat keys and hf_gpt's own; GPT-2 goes out and back in by the table."""
    model = GPTForCausalLM.from_book_checkpoint(book_reference / "book_tiny.pth", book_reference / "book_tiny_config.json")
    torch.save(model.state_dict(), tmp_path / "ours.pth")
    again = GPTForCausalLM.from_book_checkpoint(tmp_path / "ours.pth", model.config)
    stock = model.to_gpt2().eval()
    assert "transformer.h.0.attn.c_attn.weight" in stock.state_dict()
    back = load_gpt2_state_dict(GPTForCausalLM(model.config).eval(), stock.state_dict())
    ids = torch.randint(0, 1000, (1, 8))
    with torch.no_grad():
        for other in (again, stock, back):
            torch.testing.assert_close(other(ids).logits, model(ids).logits, rtol=0, atol=1e-5)
