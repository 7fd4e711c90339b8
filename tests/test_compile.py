"""torch.compile sees the model as one graph: training and cached decoding trace with no graph break, so GPU
pretraining and `generate`'s compiled static-cache decoding (fullgraph) get the whole model fused."""

import pytest
import torch
from transformers import DynamicCache, StaticCache

from hf_gpt import GPTConfig, GPTForCausalLM


def tiny_model(**overrides):
    config = GPTConfig(vocab_size=96, context_length=32, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0,
                       qkv_bias=True, tie_word_embeddings=True, init_scheme="gpt2", **overrides)
    torch.manual_seed(0)
    return GPTForCausalLM._from_config(config, attn_implementation="sdpa")


def explain(model, *args, **kwargs):
    torch._dynamo.reset()
    return torch._dynamo.explain(model)(*args, **kwargs)


def test_training_forward_has_no_graph_break():
    model = tiny_model().train()
    ids = torch.randint(0, 96, (2, 16))
    report = explain(model, input_ids=ids, labels=ids)
    assert report.graph_break_count == 0, report.break_reasons
    assert report.graph_count == 1


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_decode_forward_has_no_graph_break(cache):
    """One new token on a filled cache, as `generate` runs it; a static cache's length is a tensor, which the
    context-length check must not branch on while traced."""
    model = tiny_model().eval()
    ids = torch.randint(0, 96, (2, 9))
    if cache == "dynamic":
        past = DynamicCache(config=model.config)
    else:
        past = StaticCache(config=model.config, max_cache_len=model.config.context_length)
    with torch.no_grad():
        model(ids[:, :8], past_key_values=past, use_cache=True)
        report = explain(model, ids[:, 8:], past_key_values=past, use_cache=True, position_ids=torch.tensor([[8]]))
    assert report.graph_break_count == 0, report.break_reasons


def test_fullgraph_compile_matches_eager_logits_and_trains():
    """fullgraph=True traces forward and backward (Dynamo + AOTAutograd, as inductor gets them) and gives eager's
    logits and gradients in fp32. The aot_eager backend skips inductor's C++ build: seconds instead of ~100 s
    on 2 cores; inductor itself runs in benchmarks/benchmark_gpu.py."""
    model = tiny_model().train()
    ids = torch.randint(0, 96, (2, 16))
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ref = model(input_ids=ids, labels=ids)
    ref.loss.backward()
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss, rtol=0, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)


def sdpa_calls(model, **inputs):
    """The scaled_dot_product_attention calls Dynamo traces: (has a mask tensor, is_causal) for each."""
    calls = []

    def backend(gm, example_inputs):
        calls.extend((node.kwargs.get("attn_mask") is not None, node.kwargs.get("is_causal"))
                     for node in gm.graph.nodes if node.target is torch.nn.functional.scaled_dot_product_attention)
        return gm

    torch._dynamo.reset()
    torch.compile(model, backend=backend)(**inputs)
    return calls


def test_compiled_training_attention_is_causal_without_a_mask_tensor():
    """A training window (no padding, no cache) reaches SDPA as `is_causal=True` with no mask, also compiled: a
    mask tensor rules out the flash kernels on CUDA. Before, the positions the model makes for itself went to
    `transformers`' packed-sequence check, which under tracing always built a mask."""
    model = tiny_model().train()
    ids = torch.randint(0, 96, (2, 16))
    assert sdpa_calls(model, input_ids=ids, labels=ids) == [(False, True)] * 2


def test_given_packed_positions_still_restart_attention():
    """Positions a caller passes (padding-free packing, as TRL does) still mark where a sequence restarts: two
    sequences packed in one row give each one's logits alone, compiled too."""
    model = tiny_model().eval()
    a, b = torch.randint(0, 96, (1, 7)), torch.randint(0, 96, (1, 9))
    packed, positions = torch.cat([a, b], 1), torch.cat([torch.arange(7), torch.arange(9)])[None]
    with torch.no_grad():
        logits = model(packed, position_ids=positions, use_cache=False).logits
        alone = torch.cat([model(a, use_cache=False).logits, model(b, use_cache=False).logits], 1)
    torch.testing.assert_close(logits, alone, rtol=0, atol=1e-5)
    assert sdpa_calls(model, input_ids=packed, position_ids=positions, use_cache=False) == [(True, False)] * 2
