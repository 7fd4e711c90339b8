"""Export a GPTForCausalLM to one ONNX graph with a KV cache, under optimum's GPT-2 names so its loops read it;
through `torch.onnx.export(dynamo=True)` because optimum does not support transformers 5."""

import json
import warnings
from pathlib import Path

import torch
from torch import nn
from transformers.cache_utils import DynamicCache

OPSET = 18  # onnxruntime >= 1.14 runs it; no op here needs a newer one


class _WithPast(nn.Module):
    """The model as a function of flat tensors, as an exported graph's inputs must be."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        cache = DynamicCache(config=self.model.config)
        for i in range(len(past) // 2):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                         use_cache=True)
        presents = [t for layer in cache.layers for t in (layer.keys, layer.values)]
        return (out.logits, *presents)


def io_names(n_layers):
    past = [f"past_key_values.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    return ["input_ids", "attention_mask", "position_ids", *past], ["logits", *present]


def _example_inputs(config, batch=2, seq=3, past_len=4):
    """Non-trivial sizes (>= 2) so torch.export keeps batch, sequence and past length symbolic: it specialises
    example sizes 0 and 1. The graph still runs with an empty past (checked by the tests)."""
    kv = torch.zeros(batch, config.n_heads, past_len, config.head_dim)
    past = [kv.clone() for _ in range(2 * config.n_layers)]
    input_ids = torch.zeros(batch, seq, dtype=torch.long)
    attention_mask = torch.ones(batch, past_len + seq, dtype=torch.long)
    position_ids = torch.arange(past_len, past_len + seq).expand(batch, -1).contiguous()
    return (input_ids, attention_mask, position_ids, *past)


def _dynamic_shapes(n_layers):
    batch, seq, total = torch.export.Dim("batch"), torch.export.Dim("sequence"), torch.export.Dim("total_sequence")
    past = torch.export.Dim("past_sequence")
    kv = {0: batch, 2: past}
    # The *past varargs are one entry of the signature: their shapes go as one tuple.
    return ({0: batch, 1: seq}, {0: batch, 1: total}, {0: batch, 1: seq}, tuple([kv] * (2 * n_layers)))


def export(model, output, *, tokenizer=None, opset=OPSET, **options):
    """Write `output/model.onnx` with `config.json` and the tokenizer (`False`: none), so the folder describes
    itself. Other `options` go to `torch.onnx.export`."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    config = model.config
    was_training = model.training
    model.eval()
    wrapper = _WithPast(model).eval()
    inputs, outputs = io_names(config.n_layers)
    path = output / "model.onnx"
    options.setdefault("verbose", False)  # the exporter's step-by-step progress lines
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Dims equal across inputs (batch everywhere) are reported once per extra input: noise, not a problem.
            warnings.filterwarnings("ignore", message="# The axis name")
            program = torch.onnx.export(wrapper, _example_inputs(config), dynamo=True, input_names=inputs,
                                        output_names=outputs, dynamic_shapes=_dynamic_shapes(config.n_layers),
                                        opset_version=opset, **options)
            program.save(str(path))  # weights go to model.onnx.data once the graph would pass protobuf's 2 GB
    finally:
        model.train(was_training)

    config.save_pretrained(output)
    _write_io(output / "onnx_io.json", config, inputs, outputs)
    _save_tokenizer(tokenizer, config, output)
    return path


def _write_io(path, config, inputs, outputs):
    """A small description of the graph's interface for readers that do not open the graph."""
    io = {"inputs": inputs, "outputs": outputs, "num_layers": config.n_layers, "num_heads": config.n_heads,
          "head_dim": config.head_dim, "past_shape": ["batch", config.n_heads, "past_sequence", config.head_dim],
          "first_step": "feed zeros of shape (batch, heads, 0, head_dim) as every past_key_values.*",
          "context_length": config.context_length}
    path.write_text(json.dumps(io, indent=2) + "\n")


def _save_tokenizer(tokenizer, config, output):
    if tokenizer is False:
        return
    if tokenizer is None:
        if config.vocab_size < 50257:
            return  # a toy vocabulary: GPT-2's tokenizer would not match it
        from hf_gpt import load_tokenizer

        tokenizer = load_tokenizer()
    tokenizer.save_pretrained(output)


__all__ = ["export", "io_names"]
