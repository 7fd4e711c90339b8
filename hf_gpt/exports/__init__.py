"""Exports of a trained model, one module per format: `export(folder_or_model, out, "gpt2")`.
A format module has `export(model, output, *, tokenizer=None, **options)` and, for a file, `target(output)`."""

import importlib
from pathlib import Path

from ..tokenization import TOKENIZER_FILES

FORMATS = {name: f"hf_gpt.exports.{name}" for name in ("gpt2", "onnx", "gguf")}


def format_module(name):
    """The module of the export format `name`; an unknown name raises, listing the known ones."""
    if name not in FORMATS:
        raise ValueError(f"unknown export format {name!r}; choose one of {', '.join(FORMATS)}.")
    return importlib.import_module(FORMATS[name])


def check_export_target(output, format, *, overwrite=False, source=None, flag="output"):
    """The export's target, refused when it is the source, or holds something and not `overwrite`."""
    from ..writing import check_target

    module = format_module(format)
    is_file = hasattr(module, "target")
    return check_target(module.target(output) if is_file else output, flag, overwrite=overwrite,
                        sources=[source] if source is not None else [], kind="file" if is_file else "folder")


def export(model, output, format, *, tokenizer=None, overwrite=False, **options):
    """Write `model` (a `GPTForCausalLM` or an hf_gpt folder) to `output` in `format`, whole or not at all."""
    from ..writing import written_whole

    module = format_module(format)
    target = check_export_target(output, format, overwrite=overwrite,
                                 source=model if isinstance(model, (str, Path)) else None)
    if isinstance(model, (str, Path)):
        from transformers import AutoTokenizer

        from ..model.modeling_gpt import GPTForCausalLM

        folder = Path(model)
        model = GPTForCausalLM.from_pretrained(folder)
        if tokenizer is None and any((folder / name).is_file() for name in TOKENIZER_FILES):
            tokenizer = AutoTokenizer.from_pretrained(folder)
    with written_whole(target) as partial:
        written = Path(module.export(model, partial, tokenizer=tokenizer, **options))
    return target / written.relative_to(partial) if written != partial else target


__all__ = ["FORMATS", "check_export_target", "export", "format_module"]
