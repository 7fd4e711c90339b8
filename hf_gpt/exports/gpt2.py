"""A stock `gpt2` folder (`GPT2LMHeadModel`, no remote code) that any GPT-2 tool reads."""

import shutil
from pathlib import Path


def export(model, output, *, tokenizer=None, **save_kwargs):
    """`model.save_pretrained_gpt2(output)` and the tokenizer beside it; `save_kwargs` go to `save_pretrained`."""
    output = Path(output)
    model.save_pretrained_gpt2(output, **save_kwargs)
    if tokenizer is not None:
        tokenizer.save_pretrained(output)
    return output


def export_folder(folder, output):
    """A stock GPT-2 copy of an hf_gpt folder: the weights and tokenizer, plus the run's artifacts (loss plot,
    results, card) that mean the same for the copy; the card is switched to GPT-2 when pushed."""
    from . import export as export_as
    from ..hub import is_hf_gpt_model_file

    folder, output = Path(folder), Path(output)
    export_as(folder, output, "gpt2")
    written = {p.name for p in output.iterdir()}
    for path in folder.iterdir():
        if path.is_file() and path.name not in written and not is_hf_gpt_model_file(path.name):
            shutil.copy2(path, output / path.name)
    return output
