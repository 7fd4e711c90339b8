"""The command line of `scripts/pretrain.py`: three dataclasses for `HfArgumentParser`, with the book's defaults."""

import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from ..cli import UsageError
from ..model.configuration_gpt import PRESETS
from .hardware import _has_accelerator, default_bf16, default_tf32

logger = logging.getLogger(__name__)


def _arg(default, help, **metadata):
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class ModelArguments:
    """Which model to train: a preset, a config file, an hf_gpt folder, or OpenAI's GPT-2 weights."""

    preset: str = field(
        default="gpt-tiny",
        metadata={"help": f"Model preset (ignored when --config_name, --model_name_or_path or --init_from is given). "
                          f"One of: {', '.join(repr(p) for p in PRESETS)}."},
    )
    config_name: str | None = _arg(None, "A GPTConfig config.json (or a folder holding one) to train from scratch.")
    model_name_or_path: str | None = _arg(None, "An hf_gpt model folder (save_pretrained) to continue training from.")
    init_from: str | None = _arg(
        None, "Continue pretraining OpenAI's GPT-2 weights: 'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl', a Hub id "
        "or a local GPT-2 folder (OpenAI's TensorFlow one from the book's gpt_download.py too).")
    config_overrides: str | None = _arg(
        None, "Override config fields, e.g. 'n_layers=2,emb_dim=64,drop_rate=0.0,init_scheme=gpt2'.")
    tokenizer_name: str | None = _arg(
        None, "Tokenizer folder or Hub id (default: the --init_from folder's own, else GPT-2's BPE, offline fallback).")
    pad_vocab_to_multiple_of: int | None = _arg(
        None, "Pad the vocabulary (embedding and head rows) to a multiple of this, e.g. 64: GPT-2's 50,257 becomes "
        "50,304, whose matmuls run faster on GPUs (1.07x on an H100). Done with transformers' resize_token_embeddings, "
        "so it works from scratch and on loaded weights; the extra ids are never tokens, and generation_config "
        "suppresses them.")
    attn_implementation: str | None = _arg(
        None, "Attention kernel: 'eager' (the book's math, its dropout on the attention weights), 'sdpa', "
        "'flash_attention_2', ... (default: sdpa).")


@dataclass
class DataArguments:
    """What to train on; with no source, the embedded default corpus (Python's help texts)."""

    train_files: list[str] | None = _arg(
        None, "Text files (or folders, globs; .txt, .jsonl, .csv, .parquet) to train on.")
    validation_file: str | None = _arg(
        None, "Held-out text for validation (default: the last share of the training text).")
    dataset_name: str | None = _arg(None, "A dataset on the Hub (or a local dataset).")
    dataset_config_name: str | None = _arg(None, "The dataset's configuration name.")
    text_column: str = _arg("text", "The dataset column holding the text.")
    max_length: int | None = _arg(None, "Tokens per training window (default: the model's context_length).")
    stride: int | None = _arg(None, "Step between window starts (default: max_length, no overlap, as the book).")
    validation_fraction: float = _arg(0.1, "Share of the text held out for validation (the book's train_ratio 0.9).")
    streaming: bool = _arg(False, "Stream the dataset (needs --max_steps).")
    preprocessing_num_workers: int | None = _arg(None, "Processes for tokenization.")
    max_eval_samples: int | None = _arg(
        None, "Evaluate on at most this many validation windows (the book's eval_iter).")
    eval_train_samples: int = _arg(64, "Training windows scored at each evaluation for the train loss the book plots "
                                       "beside the validation loss (its eval_iter); 0 turns it off.")


@dataclass
class PretrainingArguments(TrainingArguments):
    """`TrainingArguments` with the book's defaults and its named improvements."""

    output_dir: str | None = field(default="outputs/pretrain", metadata={"help": "Where checkpoints and the model go."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an output_dir that holds another run (its checkpoints are deleted first)."},
    )
    learning_rate: float = field(default=4e-4, metadata={"help": "Peak AdamW learning rate (the book's 4e-4)."})
    weight_decay: float = field(
        default=0.1, metadata={"help": "AdamW weight decay (the book's 0.1), on weight matrices and embeddings only."}
    )
    adam_beta2: float = field(
        default=0.95,
        metadata={"help": "AdamW beta2: 0.95, nanoGPT's and GPT-3's for pretraining (the default run ends at validation "
                          "loss 6.33, against 6.40-6.46 with torch's 0.999, which the book's recipe keeps)."},
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Decay after warmup (the book's cosine)."})
    warmup_steps: float = field(
        default=0.1, metadata={"help": "Linear warmup: steps, or a share of all steps if < 1."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (the book's 1.0)."})
    num_train_epochs: float = field(
        default=2.0, metadata={"help": "Passes over the training windows (2: the default run on the embedded corpus "
                                       "drops validation loss 42%% in 86 s on 2 CPU cores)."}
    )
    per_device_train_batch_size: int = _arg(4, "Windows per device and step.")
    per_device_eval_batch_size: int = _arg(
        8, "Windows per device in evaluation (each holds a context x vocabulary block of logits).")
    eval_strategy: str = _arg("steps", "When to evaluate: 'steps', 'epoch' or 'no'.")
    eval_steps: float | None = _arg(50, "Evaluate every this many steps.")
    eval_on_start: bool = _arg(True, "Evaluate at step 0 (not when resuming).")
    logging_steps: float = _arg(10, "Log the training loss every this many steps.")
    save_steps: float = _arg(50, "Save a checkpoint every this many steps.")
    save_total_limit: int | None = _arg(2, "Keep at most this many checkpoints.")
    seed: int = _arg(123, "Random seed (the book's 123).")
    bf16: bool | None = _arg(None, "bf16 autocast. Default: on where the hardware has it (CUDA with bf16; CPUs with "
                                   "AMX or AVX512-BF16), fp32 otherwise.")
    tf32: bool | None = _arg(None, "TF32 tensor cores for fp32 matrix products (CUDA, Ampere or newer). Default: on "
                                   "where CUDA has them; --tf32 false keeps full fp32 products.")
    label_names: list[str] | None = field(
        default_factory=lambda: ["shift_labels"],
        metadata={"help": "Batch keys holding the targets (the data gives the book's shifted targets)."},
    )
    include_num_input_tokens_seen: str | bool = _arg(True, "Count tokens seen (for tokens/s and the loss plot).")
    logging_nan_inf_filter: bool = _arg(False, "Hide NaN/inf losses in logs (off: a NaN/inf loss stops training).")
    ddp_find_unused_parameters: bool | None = _arg(
        False, "Every parameter gets a gradient, so DDP need not search for unused ones.")
    sample_prompt: str = _arg("Every effort moves you", "Prompt of the sample printed at each eval.")
    sample_max_new_tokens: int = _arg(50, "Tokens generated for the sample (0: none).")
    sample_temperature: float = _arg(1.0, "Sampling temperature of the sample; 0 is greedy decoding.")
    sample_top_k: int | None = _arg(50, "Top-k sampling for the sample.")
    sample_top_p: float | None = _arg(None, "Top-p (nucleus) sampling for the sample.")
    peak_tflops: float | None = _arg(None, "Peak TFLOP/s of one device, to log MFU (known for common GPUs in bf16).")
    data_order: str = _arg(
        "seedable", "'seedable': accelerate's sampler, the same order whatever else draws random numbers. 'book': the "
        "book's DataLoader(shuffle=True, drop_last=True), each pass (and each train-loss evaluation) drawing its order "
        "from the global torch RNG.", choices=["seedable", "book"])
    rng_order: str = _arg(
        "trainer", "'trainer': the Trainer re-seeds after the model is built. 'book': the global RNG goes on from "
        "model initialisation, so init, shuffles and dropout draw in the book's order.", choices=["trainer", "book"])
    decay_all_parameters: bool = _arg(
        False, "Weight decay on every parameter, biases and layer norms too, as the book's AdamW(model.parameters()) "
        "(default: weight matrices and embeddings only).")
    eval_iter: int | None = _arg(
        None, "The book's evaluate_model: each evaluation scores the first eval_iter batches of a fresh (re-shuffled) "
        "training loader and of the validation loader, each loss the mean of batch losses (default: the whole "
        "validation set and --eval_train_samples fixed windows).")
    step_numbering: str = _arg("trainer", "'book': the first update is step 0 and evaluations follow steps 0, "
                                          "eval_steps, 2*eval_steps, ... (train_model_simple's global_step); "
                                          "'trainer': after eval_steps, 2*eval_steps, ... and at the "
                                          "end.", choices=["trainer", "book"])
    sample_strategy: str = _arg("eval", "When to print the sample: after each evaluation ('eval') or each epoch "
                                        "('epoch', the book's generate_and_print_sample).", choices=["eval", "epoch"])
    report_style: str = _arg(
        "default", "'book': progress lines as the book prints them ('Ep 1 (Step 000000): Train loss 9.781, Val loss "
        "9.933') and loss.png as its plot_losses.", choices=["default", "book"])
    generation_defaults: str = _arg(
        "nucleus", "Sampling defaults saved in generation_config.json: 'nucleus' (top_p 0.9) or 'book' (the book's "
        "generate: plain temperature sampling, top-k only when asked).", choices=["nucleus", "book"])
    cpu_reuse_freed_memory: bool = _arg(
        True, "Training on CPU with glibc: keep freed memory for reuse, not return it to the OS (saves a page fault "
        "per 4 KiB of each step's large tensors: measured 1.6x faster steps for ~1.3x the peak memory).")
    resume_reset_optimizer: bool = _arg(
        False, "Resume from a checkpoint whose optimizer or scheduler state is missing or unreadable, with a fresh "
        "optimizer and schedule (without it such a resume is refused).")

    def __post_init__(self):
        for name in ("data_order", "rng_order", "step_numbering", "sample_strategy", "report_style",
                     "generation_defaults"):
            choices = self.__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in choices:
                raise UsageError(f"--{name} {getattr(self, name)!r}: choose one of {', '.join(choices)}.")
        # Precision: a --bf16/--fp16 flag, else the launcher's bf16/fp16, else bf16 where fast. The launcher's "no"
        # is also its default, so it is no request.
        launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
        explicit = self.bf16 is not None or self.fp16
        if self.bf16 is None:
            self.fp16 = self.fp16 or (launcher == "fp16" and not explicit)
            self.bf16 = not self.fp16 and (launcher == "bf16" or (launcher == "no" and default_bf16()))
        if self.tf32 is None and default_tf32():
            self.tf32 = True
        if not _has_accelerator():
            # Needed for bf16 autocast on CPU, and for `accelerate launch` ranks to form gloo DDP, not train alone.
            self.use_cpu = True
        super().__post_init__()
        chosen = "fp16" if self.fp16 else "bf16" if self.bf16 else "no"
        if launcher != "no" and launcher != chosen:
            flag = f"--{'fp16' if self.fp16 else 'bf16'} {bool(self.fp16 or self.bf16)}"
            logger.warning(f"Precision: {chosen} (from {flag}), not the accelerate config's mixed_precision: "
                           f"{launcher}.")
        self.mixed_precision = chosen  # transformers would take the launcher's over an explicit --bf16 false
        if self.data_order == "book":
            # A RandomSampler without a generator draws from the global RNG; the seedable one would replace it.
            self.accelerator_config.use_seedable_sampler = False


def build_parser():
    # No abbreviations: `--learning_rat` must be an error, not silently `--learning_rate`.
    return HfArgumentParser((ModelArguments, DataArguments, PretrainingArguments), allow_abbrev=False)


def _as_flags(values):
    """A recipe's `{name: value}` as the flags that say the same (mappings as JSON, as TrainingArguments takes)."""
    def flag_value(value):
        if isinstance(value, bool):
            return str(value).lower()
        return json.dumps(value) if isinstance(value, dict) else str(value)

    argv = []
    for name, value in values.items():
        argv += [f"--{name}", *map(flag_value, value if isinstance(value, (list, tuple)) else [value])]
    return argv


def parse_arguments(argv=None):
    """CLI arguments; a `.json`/`.yaml` file as the first argument gives defaults that later flags override."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0].endswith((".json", ".yaml", ".yml")) and not argv[0].startswith("-"):
        path = Path(argv.pop(0))
        if not path.is_file():
            raise UsageError(f"argument file {str(path)!r} does not exist.")
        try:
            if path.suffix == ".json":
                values = json.loads(path.read_text(encoding="utf-8"))
            else:
                import yaml

                values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except ValueError as e:  # json.JSONDecodeError
            raise UsageError(f"{path} is not valid JSON: {e}.") from None
        except Exception as e:  # yaml.YAMLError
            if type(e).__module__.startswith("yaml"):
                raise UsageError(f"{path} is not valid YAML: {' '.join(str(e).split())}.") from None
            raise
        if not isinstance(values, dict):
            raise UsageError(f"{path} must hold a mapping of argument names to values, got a "
                             f"{type(values).__name__}.")
        actions = {action.dest: action for action in parser._actions}
        unknown = sorted(set(values) - set(actions))
        if unknown:
            raise UsageError(f"{path}: unknown argument(s) {unknown}; see `--help`.")
        # The file's values are parsed as flags before the command line's, which win; first alone, so a wrong value
        # is named with its file.
        for name, value in values.items():
            if isinstance(value, (list, tuple)) and actions[name].nargs not in ("+", "*"):
                raise UsageError(f"{path}: {name} takes one value, got a list {value!r}; see `--help`.")
        file_argv = _as_flags({k: v for k, v in values.items() if v is not None})
        checker = build_parser()

        def refuse(message):
            message = re.sub(r"argument --(\w+)(/--[\w-]+)*: ", r"\1: ", message)  # the key as the file has it
            raise UsageError(f"{path}: {message}; see `--help`.")

        checker.error = refuse
        checker.parse_known_args(file_argv)
        parser.set_defaults(**{k: v for k, v in values.items() if v is None})
        argv = file_argv + argv
    try:
        return parser.parse_args_into_dataclasses(args=argv)
    except (ValueError, TypeError) as e:  # unknown flags (HfArgumentParser raises), wrong value types
        message = " ".join(str(e).split())
        if "not used by the HfArgumentParser" in message:
            message = f"unrecognized arguments: {message.split(':', 1)[1].strip()}; see --help"
        raise UsageError(message) from None
