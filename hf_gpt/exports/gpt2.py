"""A stock `gpt2` folder (`GPT2LMHeadModel`, no remote code) that any GPT-2 tool reads."""

from pathlib import Path


def export(model, output, *, tokenizer=None, **save_kwargs):
    """`model.save_pretrained_gpt2(output)` and the tokenizer beside it; `save_kwargs` go to `save_pretrained`."""
    output = Path(output)
    model.save_pretrained_gpt2(output, **save_kwargs)
    if tokenizer is not None:
        tokenizer.save_pretrained(output)
    return output
