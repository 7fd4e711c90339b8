"""Export a GPTForCausalLM to other runtimes' formats, one module per format (placeholder: the lead's version
replaces this file on merge)."""

import importlib

FORMATS = {"gpt2": "hf_gpt.exports.gpt2", "onnx": "hf_gpt.exports.onnx", "gguf": "hf_gpt.exports.gguf"}


def export(model, output, format, *, tokenizer=None, **options):
    """Write `model` to `output` in `format` (a key of FORMATS); returns what the format's module returns."""
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; choose one of {sorted(FORMATS)}.")
    return importlib.import_module(FORMATS[format]).export(model, output, tokenizer=tokenizer, **options)


__all__ = ["FORMATS", "export"]
