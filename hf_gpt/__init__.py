"""hf_gpt: the GPT of *Build a Large Language Model (From Scratch)* as a native Hugging Face causal LM.
Names load on first use (PEP 562), so preparing text does not import torch or the model code."""

import importlib

_LAZY = {
    "GPTConfig": "model.configuration_gpt",
    "GPT_CONFIG_124M": "model.configuration_gpt",
    "PRESETS": "model.configuration_gpt",
    "GPTForCausalLM": "model.modeling_gpt",
    "GPTModel": "model.modeling_gpt",
    "load_tokenizer": "tokenization",
    "build_lm_datasets": "data",
    "create_dataloader": "data",
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'hf_gpt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = list(_LAZY)
