"""Text generation as `scripts/generate.py` and `scripts/demo.py` do it, in one place so both give the same text."""

import os
from pathlib import Path

from .cli import UsageError


def load(source, *, trust_remote_code=False):
    """Model and tokenizer from a local folder (checked for completeness first) or a Hub repo id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .hub import check_model_folder, check_repo_id
    from .locations import hub_problem, looks_local
    from .model import modeling_gpt  # noqa: F401  (registers hf_gpt with the Auto classes: no remote code needed)

    path = Path(os.path.expanduser(source))
    local = path.exists() or looks_local(source)
    if local:  # a path that looks local never waits on the Hub
        check_model_folder(path)
        source = path
    else:
        try:
            check_repo_id(source)
        except UsageError as err:
            raise UsageError(f"{source!r} is neither an existing folder nor a Hub repo id: {err}") from None
        problem = hub_problem(source)  # one short probe, not the client's retries
        if problem:
            raise UsageError(f"could not load {source!r}: it is not a local folder, and {problem}.")
    try:
        model = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise UsageError(f"{source} runs its own model code (its config names .py files to import); read them, "
                                f"and if you trust them add --trust_remote_code.") from None
        raise
    except OSError as err:
        if local:
            raise
        raise UsageError(f"could not load {source!r}: it is not a local folder, and the Hub failed: {err}") from None
    return model, tokenizer


def generation_kwargs(model, *, max_new_tokens=None, num_beams=None, repetition_penalty=None, temperature=None,
                      top_k=None, top_p=None, greedy=False, do_sample=False, num_return_sequences=1):
    """The user's choices, passed to `generate` on top of the model's `generation_config` (None: the folder's)."""
    from .sampling import sampling_kwargs

    given = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "repetition_penalty": repetition_penalty}
    kwargs = {k: v for k, v in given.items() if v is not None}
    kwargs.update(sampling_kwargs(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                                  do_sample=do_sample))
    if "do_sample" not in kwargs and "num_beams" in kwargs:
        kwargs["do_sample"] = False
    if num_return_sequences > 1:
        kwargs["num_return_sequences"] = num_return_sequences
    defaults = model.generation_config
    if defaults.pad_token_id is None and defaults.eos_token_id is not None:
        kwargs["pad_token_id"] = defaults.eos_token_id
    return kwargs


def prompt_inputs(tokenizer, prompt, device):
    """`input_ids` and `attention_mask` for `prompt` on `device`; an empty prompt starts from the start token."""
    import torch

    inputs = tokenizer(prompt, return_tensors="pt")
    if inputs["input_ids"].shape[1] == 0:
        if tokenizer.bos_token_id is None:
            raise UsageError("the prompt is empty and the tokenizer has no start token; give a prompt")
        inputs = {"input_ids": torch.tensor([[tokenizer.bos_token_id]]), "attention_mask": torch.ones(1, 1, dtype=torch.long)}
    return {k: v.to(device) for k, v in inputs.items()}


__all__ = ["generation_kwargs", "load", "prompt_inputs"]
