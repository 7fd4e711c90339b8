"""Pretraining the book's GPT with the `transformers` Trainer (the book's chapter 5, plus its named improvements).

The book trains with a hand-written loop (`train_model_simple`): evaluate every few steps, print a sample, plot the
losses, save model and optimizer. Here the Trainer runs the loop (and `accelerate` the devices); this module adds
only what is ours:

- `ModelArguments`, `DataArguments`, `PretrainingArguments` (TrainingArguments with the book's defaults: AdamW with
  lr 4e-4 and weight decay 0.1, linear warmup then cosine decay, gradient clipping at 1.0, bf16 autocast where the
  hardware has it) for `HfArgumentParser`;
- `PretrainingTrainer`: weight decay on weight matrices and embeddings only, a NaN/inf loss stops training, the
  book's train-set loss beside the validation loss at every evaluation, perplexity through the local `evaluate`
  module, checkpoints marked complete only once every file of every rank is written;
- callbacks for the book's sample after each evaluation, `loss.png` and tokens/s (+ MFU);
- the book's own run as options of the same path (book.py; `recipes/book-ch5.yaml` turns them on): its shuffle
  stream and RNG order, `evaluate_model`, step numbering, printed lines, epoch samples and plot;
- `validate_arguments` (every bad input fails before the model is built or data is tokenized) and `main`, which
  `scripts/pretrain.py` calls.
"""

from ..cli import UsageError
from .args import (
    DataArguments,
    ModelArguments,
    PretrainingArguments,
    build_parser,
    parse_arguments,
)
from .callbacks import LossPlotCallback, SampleCallback, ThroughputCallback, plot_losses
from .checkpoints import (
    is_complete_checkpoint,
    last_complete_checkpoint,
    mark_checkpoint_complete,
    remove_incomplete_checkpoints,
)
from .errors import NonFiniteLossError
from .hardware import default_bf16, default_tf32, reuse_freed_memory
from .run import main, run_pretraining
from .trainer import PretrainingTrainer, decay_parameter_names
from .validation import validate_arguments

__all__ = [
    "DataArguments", "ModelArguments", "NonFiniteLossError", "PretrainingArguments", "UsageError",
    "PretrainingTrainer", "build_parser", "decay_parameter_names", "default_bf16", "default_tf32",
    "is_complete_checkpoint", "last_complete_checkpoint", "main", "parse_arguments", "plot_losses",
    "reuse_freed_memory", "run_pretraining", "validate_arguments",
]
