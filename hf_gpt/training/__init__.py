"""Pretraining the book's GPT (chapter 5, plus its named improvements) with the `transformers` Trainer."""

from ..cli import UsageError
from .args import DataArguments, ModelArguments, PretrainingArguments, build_parser, parse_arguments
from .callbacks import plot_losses
from .checkpoints import (is_complete_checkpoint, last_complete_checkpoint, mark_checkpoint_complete,
                          remove_incomplete_checkpoints)
from .errors import NonFiniteLossError
from .hardware import default_bf16, default_tf32, reuse_freed_memory
from .run import main, run_pretraining
from .trainer import PretrainingTrainer, decay_parameter_names
from .validation import validate_arguments

__all__ = [
    "DataArguments", "ModelArguments", "NonFiniteLossError", "PretrainingArguments", "UsageError",
    "PretrainingTrainer", "build_parser", "decay_parameter_names", "default_bf16", "default_tf32",
    "is_complete_checkpoint", "last_complete_checkpoint", "main", "mark_checkpoint_complete", "parse_arguments",
    "plot_losses", "remove_incomplete_checkpoints", "reuse_freed_memory", "run_pretraining", "validate_arguments",
]
