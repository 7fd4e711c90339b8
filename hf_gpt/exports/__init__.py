"""Exports of a trained model, one module per format, chosen by name: `export(folder_or_model, out, "gpt2")`.

A format module has `export(model, output, *, tokenizer=None, **options) -> Path` and a docstring whose first line
says what it writes. Adding a format is adding its module here and its name to `FORMATS`.
"""

import importlib
from pathlib import Path

from ..tokenization import TOKENIZER_FILES

FORMATS = {
    "gpt2": "hf_gpt.exports.gpt2",
    "onnx": "hf_gpt.exports.onnx",
    "gguf": "hf_gpt.exports.gguf",
}


def format_module(name):
    """The module of the export format `name`; an unknown name raises, listing the known ones."""
    if name not in FORMATS:
        raise ValueError(f"unknown export format {name!r}; choose one of {', '.join(FORMATS)}.")
    return importlib.import_module(FORMATS[name])


def export(model, output, format, *, tokenizer=None, **options):
    """Write `model` (a `GPTForCausalLM` or an hf_gpt folder) to `output` in `format`; returns what was written.

    From a folder, its tokenizer comes along unless `tokenizer` is given."""
    module = format_module(format)
    if isinstance(model, (str, Path)):
        from transformers import AutoTokenizer

        from ..model.modeling_gpt import GPTForCausalLM

        folder = Path(model)
        model = GPTForCausalLM.from_pretrained(folder)
        if tokenizer is None and any((folder / name).is_file() for name in TOKENIZER_FILES):
            tokenizer = AutoTokenizer.from_pretrained(folder)
    return module.export(model, output, tokenizer=tokenizer, **options)


__all__ = ["FORMATS", "export", "format_module"]
