"""hf_gpt: the GPT of *Build a Large Language Model (From Scratch)* as a native Hugging Face causal LM."""

from transformers import AutoConfig, AutoModelForCausalLM

from .configuration_gpt import GPT_CONFIG_124M, PRESETS, GPTConfig
from .modeling_gpt import GPTForCausalLM

AutoConfig.register(GPTConfig.model_type, GPTConfig, exist_ok=True)
AutoModelForCausalLM.register(GPTConfig, GPTForCausalLM, exist_ok=True)
# save_pretrained then writes `auto_map` and copies the two self-contained sources, so a folder loads anywhere
# with trust_remote_code=True, hf_gpt installed or not.
GPTConfig.register_for_auto_class()
GPTForCausalLM.register_for_auto_class("AutoModelForCausalLM")


def load_tokenizer(name_or_path=None, **kwargs):
    """The GPT-2 tokenizer: an explicit path or id, else the Hub's `openai-community/gpt2`, else offline BPE files."""
    from .tokenization import load_tokenizer as _load

    return _load(name_or_path, **kwargs)


__all__ = ["GPTConfig", "GPTForCausalLM", "GPT_CONFIG_124M", "PRESETS", "load_tokenizer"]
