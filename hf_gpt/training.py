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
- `validate_arguments` (every bad input fails before the model is built or data is tokenized) and `main`, which
  `scripts/pretrain.py` calls.
"""

import ctypes
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, default_data_collator
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .configuration_gpt import PRESETS, GPTConfig

logger = logging.getLogger(__name__)

DEFAULT_PRESET = "gpt-tiny"
DEFAULT_OUTPUT_DIR = "outputs/pretrain"
DEFAULT_PROMPT = "Every effort moves you"
CHECKPOINT_COMPLETE = "checkpoint_complete.json"
# Files a finished (or running) pretraining run leaves in its output_dir.
RUN_MARKERS = ("trainer_state.json", "train_results.json", "eval_results.json", "all_results.json", "config.json",
               "model.safetensors", "training_args.bin", "loss.png")
# OpenAI's GPT-2 names that `--init_from` accepts, mapped to the preset with their architecture.
GPT2_NAMES = {
    "gpt2": "gpt2-small", "gpt2-small": "gpt2-small", "gpt2-medium": "gpt2-medium", "gpt2-large": "gpt2-large",
    "gpt2-xl": "gpt2-xl", "openai-community/gpt2": "gpt2-small", "openai-community/gpt2-medium": "gpt2-medium",
    "openai-community/gpt2-large": "gpt2-large", "openai-community/gpt2-xl": "gpt2-xl",
    **{name: name.split(" ")[0] for name in PRESETS if name.startswith("gpt2-") and " " in name},
}
# Dense bf16 tensor-core peaks (TFLOP/s) of common accelerators, for MFU; others need --peak_tflops.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "A10": 125.0,
                    "L4": 121.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0, "T4": 65.0}


class PretrainingError(ValueError):
    """Bad input to the pretraining script; the message says what to change."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stopped before that step's update."""

    def __init__(self, step, loss, epoch=None, last_checkpoint=None, problem=None):
        self.step, self.loss = step, loss
        where = f"step {step}" + (f" (epoch {epoch:.2f})" if epoch is not None else "")
        resume = (f" The last complete checkpoint is {last_checkpoint}: resume from it with --resume_from_checkpoint "
                  f"{last_checkpoint}, e.g. with a lower --learning_rate." if last_checkpoint else "")
        problem = problem or f"the loss is {loss} at {where}. The update of that step was not applied and"
        super().__init__(f"Training stopped: {problem} no final model was saved.{resume}")


# ------------------------------------------------------------------------------------------------------ precision


def cpu_has_fast_bf16():
    """True on CPUs with AMX or AVX512-BF16, where bf16 autocast trains faster than fp32."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", flags))


def reuse_freed_memory():
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the OS; True if it took.

    A training step allocates the same large tensors every step (logits, their gradients, the parameters' gradients).
    Above 32 MiB glibc maps each one fresh from the OS and unmaps it when freed, so every step pays a page fault per
    4 KiB it writes: ~0.3 ms per MB, half the default run's training time. With mmap and trimming off, freed blocks
    are reused as by a caching allocator (the process holds on to its peak memory, as CUDA's allocator does)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def _has_accelerator():
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return (torch.cuda.is_available() or (mps is not None and mps.is_available())
            or (xpu is not None and xpu.is_available()))


def default_bf16():
    """bf16 autocast where the hardware has it (CUDA with bf16, CPUs with AMX/AVX512-BF16); fp32 otherwise."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return False
    return cpu_has_fast_bf16()


# ------------------------------------------------------------------------------------------------------ arguments


@dataclass
class ModelArguments:
    """Which model to train: a preset, a config file, an hf_gpt folder, or OpenAI's GPT-2 weights."""

    preset: str = field(
        default=DEFAULT_PRESET,
        metadata={"help": f"Model preset (ignored when --config_name, --model_name_or_path or --init_from is given). "
                          f"One of: {', '.join(repr(p) for p in PRESETS)}."},
    )
    config_name: str | None = field(
        default=None, metadata={"help": "A GPTConfig config.json (or a folder holding one) to train from scratch."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "An hf_gpt model folder (save_pretrained) to continue training from."}
    )
    init_from: str | None = field(
        default=None,
        metadata={"help": "Continue pretraining OpenAI's GPT-2 weights: 'gpt2', 'gpt2-medium', 'gpt2-large', "
                          "'gpt2-xl', a Hub id or a local GPT-2 folder."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Override config fields, e.g. 'n_layers=2,emb_dim=64,drop_rate=0.0,init_scheme=gpt2'."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer folder or Hub id (default: GPT-2's BPE, offline fallback)."}
    )


@dataclass
class DataArguments:
    """What to train on; with no source, the embedded default corpus (Python's help texts)."""

    train_files: list[str] | None = field(
        default=None, metadata={"help": "Text files (or folders, globs; .txt, .jsonl, .csv, .parquet) to train on."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Held-out text for validation (default: the last share of the training text)."}
    )
    dataset_name: str | None = field(default=None, metadata={"help": "A dataset on the Hub (or a local dataset)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    text_column: str = field(default="text", metadata={"help": "The dataset column holding the text."})
    max_length: int | None = field(
        default=None, metadata={"help": "Tokens per training window (default: the model's context_length)."}
    )
    stride: int | None = field(
        default=None, metadata={"help": "Step between window starts (default: max_length, no overlap, as the book)."}
    )
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Share of the text held out for validation (the book's train_ratio 0.9)."}
    )
    streaming: bool = field(default=False, metadata={"help": "Stream the dataset (needs --max_steps)."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on at most this many validation windows (the book's eval_iter)."}
    )
    eval_train_samples: int = field(
        default=64,
        metadata={"help": "Training windows scored at each evaluation for the train loss the book plots beside the "
                          "validation loss (its eval_iter); 0 turns it off."},
    )


@dataclass
class PretrainingArguments(TrainingArguments):
    """`TrainingArguments` with the book's defaults and its named improvements."""

    output_dir: str | None = field(default=DEFAULT_OUTPUT_DIR, metadata={"help": "Where checkpoints and the model go."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an output_dir that holds another run (its checkpoints are deleted first)."},
    )
    learning_rate: float = field(default=4e-4, metadata={"help": "Peak AdamW learning rate (the book's 4e-4)."})
    weight_decay: float = field(
        default=0.1, metadata={"help": "AdamW weight decay (the book's 0.1), on weight matrices and embeddings only."}
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Decay after warmup (the book's cosine)."})
    warmup_steps: float = field(
        default=0.1, metadata={"help": "Linear warmup: steps, or a share of all steps if < 1."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (the book's 1.0)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the training windows."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Windows per device and step."})
    per_device_eval_batch_size: int = field(
        default=8,
        metadata={"help": "Windows per device in evaluation (each holds a context x vocabulary block of logits)."},
    )
    eval_strategy: str = field(default="steps", metadata={"help": "When to evaluate: 'steps', 'epoch' or 'no'."})
    eval_steps: float | None = field(default=50, metadata={"help": "Evaluate every this many steps."})
    eval_on_start: bool = field(default=True, metadata={"help": "Evaluate at step 0 (not when resuming)."})
    logging_steps: float = field(default=10, metadata={"help": "Log the training loss every this many steps."})
    save_steps: float = field(default=50, metadata={"help": "Save a checkpoint every this many steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    seed: int = field(default=123, metadata={"help": "Random seed (the book's 123)."})
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 autocast. Default: on where the hardware has it (CUDA with bf16; CPUs with AMX or "
                          "AVX512-BF16), fp32 otherwise."},
    )
    label_names: list[str] | None = field(
        default_factory=lambda: ["shift_labels"],
        metadata={"help": "Batch keys holding the targets (the data gives the book's shifted targets)."},
    )
    include_num_input_tokens_seen: str | bool = field(
        default=True, metadata={"help": "Count tokens seen (for tokens/s and the loss plot)."}
    )
    logging_nan_inf_filter: bool = field(
        default=False, metadata={"help": "Hide NaN/inf losses in logs (off: a NaN/inf loss stops training)."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "Every parameter gets a gradient, so DDP need not search for unused ones."}
    )
    sample_prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "Prompt of the sample printed at each eval."})
    sample_max_new_tokens: int = field(default=50, metadata={"help": "Tokens generated for the sample (0: none)."})
    sample_temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the sample; 0 is greedy decoding."}
    )
    sample_top_k: int | None = field(default=50, metadata={"help": "Top-k sampling for the sample."})
    sample_top_p: float | None = field(default=None, metadata={"help": "Top-p (nucleus) sampling for the sample."})
    peak_tflops: float | None = field(
        default=None,
        metadata={"help": "Peak TFLOP/s of one device, to log MFU (known for common GPUs in bf16)."},
    )
    cpu_reuse_freed_memory: bool = field(
        default=True,
        metadata={"help": "Training on CPU with glibc: keep freed memory for reuse, not return it to the OS (saves a "
                          "page fault per 4 KiB of each step's large tensors: the default run trains 2.1x faster and "
                          "peaks at ~2 GB instead of 1.1 GB)."},
    )

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = not self.fp16 and default_bf16()
        if not _has_accelerator():
            # On a CPU-only machine transformers needs use_cpu both to allow bf16 autocast and to see the processes
            # of `accelerate launch --multi_gpu` as gloo DDP (else each rank would train alone on the same data).
            self.use_cpu = True
        super().__post_init__()


def build_parser():
    return HfArgumentParser((ModelArguments, DataArguments, PretrainingArguments))


def parse_arguments(argv=None):
    """CLI arguments; a `.json`/`.yaml` file as the first argument gives defaults that later flags override."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0].endswith((".json", ".yaml", ".yml")) and not argv[0].startswith("-"):
        path = Path(argv.pop(0))
        if not path.is_file():
            raise PretrainingError(f"argument file {str(path)!r} does not exist.")
        if path.suffix == ".json":
            values = json.loads(path.read_text(encoding="utf-8"))
        else:
            import yaml

            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PretrainingError(f"{path}: unknown argument(s) {unknown}; see `--help`.")
        parser.set_defaults(**values)
    return parser.parse_args_into_dataclasses(args=argv)


# ------------------------------------------------------------------------------------------------------ checkpoints


def _checkpoint_step(path):
    match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", Path(path).name)
    return int(match.group(1)) if match else None


def mark_checkpoint_complete(checkpoint_dir, step):
    """Write the marker that says every file of the checkpoint is written (atomically: temp file, then rename)."""
    target = Path(checkpoint_dir) / CHECKPOINT_COMPLETE
    fd, tmp = tempfile.mkstemp(dir=checkpoint_dir, prefix=".complete-")
    with os.fdopen(fd, "w") as f:
        json.dump({"global_step": step, "time": time.time()}, f)
    os.replace(tmp, target)


def is_complete_checkpoint(path):
    """True for a checkpoint every file of which was fully written.

    Ours carry a marker written last. A checkpoint without one (written by a plain Trainer) counts when its
    trainer state parses and its weights, optimizer and scheduler files are whole (a truncated safetensors header
    or zip archive is not).
    """
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / CHECKPOINT_COMPLETE).is_file():
        return True
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        if "global_step" not in state:
            return False
        if (path / "model.safetensors").is_file():
            from safetensors import safe_open

            with safe_open(str(path / "model.safetensors"), framework="pt") as f:
                list(f.keys())
        elif not (path / "model.safetensors.index.json").is_file():
            return False
        return all(zipfile.is_zipfile(path / name) for name in ("optimizer.pt", "scheduler.pt"))
    except (OSError, ValueError, Exception):
        return False


def find_checkpoints(output_dir):
    """`checkpoint-N` folders of `output_dir`, oldest step first, as (step, path, complete)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        step = _checkpoint_step(child)
        if step is not None and child.is_dir():
            found.append((step, child, is_complete_checkpoint(child)))
    return sorted(found)


def last_complete_checkpoint(output_dir):
    """The newest complete checkpoint of `output_dir` (a broken one, e.g. from a run killed while saving, is
    skipped), or None."""
    complete = [path for _, path, ok in find_checkpoints(output_dir) if ok]
    return str(complete[-1]) if complete else None


def remove_incomplete_checkpoints(output_dir):
    """Delete the broken checkpoints a killed run left, so checkpoint rotation and `last` never meet them."""
    removed = []
    for _, path, ok in find_checkpoints(output_dir):
        if not ok:
            logger.warning(f"Removing incomplete checkpoint {path} (its run was interrupted while writing it).")
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


# ------------------------------------------------------------------------------------------------------ validation


def _parse_overrides(text):
    """`'n_layers=2,drop_rate=0.0,init_scheme=gpt2'` -> typed dict (ints, floats, booleans, strings)."""
    if not text:
        return {}
    overrides = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise PretrainingError(f"--config_overrides: expected key=value pairs separated by commas, got {item!r}.")
        if value.lower() in ("true", "false"):
            overrides[key] = value.lower() == "true"
        elif value.lower() in ("none", "null"):
            overrides[key] = None
        else:
            for cast in (int, float):
                try:
                    overrides[key] = cast(value)
                    break
                except ValueError:
                    continue
            else:
                overrides[key] = value
    known = set(GPTConfig().to_dict()) | set(GPTConfig.attribute_map)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise PretrainingError(f"--config_overrides: unknown config field(s) {unknown}; GPTConfig has "
                               f"{sorted(k for k in GPTConfig().to_dict() if not k.startswith('_'))[:40]}.")
    return overrides


def _gpt2_config(init_from, overrides):
    """The GPTConfig `--init_from` will produce, when it can be told without loading weights (else None)."""
    if init_from in GPT2_NAMES:
        return GPTConfig.from_preset(GPT2_NAMES[init_from], **overrides)
    path = Path(init_from)
    if path.is_dir() and (path / "config.json").is_file():
        from .weights import gpt2_config_to_gpt_config

        return gpt2_config_to_gpt_config(json.loads((path / "config.json").read_text()), **overrides)
    return None


def resolve_model_config(model_args):
    """The config the run will train (None when only the weights can tell, for a remote `--init_from`)."""
    overrides = _parse_overrides(model_args.config_overrides)
    sources = [name for name in ("config_name", "model_name_or_path", "init_from") if getattr(model_args, name)]
    if len(sources) > 1:
        raise PretrainingError(f"give at most one of --config_name, --model_name_or_path, --init_from (got "
                               f"{', '.join('--' + s for s in sources)}).")
    try:
        if model_args.init_from:
            return _gpt2_config(model_args.init_from, overrides)
        for name in ("config_name", "model_name_or_path"):
            value = getattr(model_args, name)
            if value:
                path = Path(value)
                config_file = path / "config.json" if path.is_dir() else path
                if not config_file.is_file():
                    raise PretrainingError(f"--{name} {value!r}: no config file there ({config_file} is missing).")
                config = GPTConfig.from_json_file(str(config_file))
                for key, val in overrides.items():
                    setattr(config, key, val)
                config._validate()
                return config
        if model_args.preset not in PRESETS:
            raise PretrainingError(f"unknown preset {model_args.preset!r}; choose one of {', '.join(PRESETS)}.")
        return GPTConfig.from_preset(model_args.preset, **overrides)
    except PretrainingError:
        raise
    except ValueError as e:
        raise PretrainingError(str(e)) from e


def _holds_a_run(output_dir):
    path = Path(output_dir)
    if not path.is_dir():
        return []
    found = [p.name for p in path.iterdir() if p.name in RUN_MARKERS or _checkpoint_step(p) is not None]
    return sorted(found)


def _check_writable(output_dir):
    path = Path(output_dir)
    probe_dir = path
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise PretrainingError(f"--output_dir {str(path)!r}: {probe_dir} is a file, not a folder.")
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise PretrainingError(f"--output_dir {str(path)!r} is not writable (no write permission on {probe_dir}).")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise PretrainingError(f"--output_dir {str(path)!r} is not writable: {e.strerror or e}.") from e


def resolve_resume(training_args):
    """`--resume_from_checkpoint` as a checkpoint path (None when not resuming); `last`/`true` pick the newest
    complete checkpoint of output_dir."""
    value = training_args.resume_from_checkpoint
    if value in (None, "", "false", "False", False):
        return None
    if str(value).lower() in ("last", "latest", "true"):
        path = last_complete_checkpoint(training_args.output_dir)
        if path is None:
            raise PretrainingError(
                f"--resume_from_checkpoint {value}: no complete checkpoint in {training_args.output_dir!r} to resume "
                f"from{'' if Path(training_args.output_dir).is_dir() else ' (the folder does not exist)'}."
            )
        return path
    path = Path(value)
    if not path.exists():
        raise PretrainingError(f"--resume_from_checkpoint {value!r}: no such checkpoint folder.")
    if not path.is_dir() or not (path / "trainer_state.json").is_file():
        raise PretrainingError(f"--resume_from_checkpoint {value!r} is not a checkpoint folder (no trainer_state.json);"
                               f" give a {PREFIX_CHECKPOINT_DIR}-N folder or 'last'.")
    if not is_complete_checkpoint(path):
        raise PretrainingError(f"--resume_from_checkpoint {value!r} is incomplete (its run was killed while writing "
                               f"it); pick an earlier checkpoint or 'last'.")
    return str(path)


@dataclass
class RunPlan:
    config: GPTConfig | None
    max_length: int | None
    stride: int | None
    resume_from_checkpoint: str | None


def validate_arguments(model_args, data_args, training_args):
    """Every check that needs neither the model nor the tokenized data; raises `PretrainingError`."""
    config = resolve_model_config(model_args)
    context = config.context_length if config is not None else None
    max_length = data_args.max_length if data_args.max_length is not None else context
    if max_length is not None and max_length <= 1:
        raise PretrainingError(f"--max_length must be at least 2 tokens, got {max_length}.")
    if context is not None and max_length > context:
        raise PretrainingError(
            f"--max_length {max_length} is larger than the model's context_length {context} (the positional "
            f"embedding has {context} rows); use --max_length <= {context}, or a model with a longer context "
            f"(--config_overrides context_length={max_length} when training from scratch)."
        )
    stride = data_args.stride if data_args.stride is not None else max_length
    if stride is not None and stride <= 0:
        raise PretrainingError(f"--stride must be positive, got {stride}.")
    if not 0 <= data_args.validation_fraction < 1:
        raise PretrainingError(f"--validation_fraction must be in [0, 1), got {data_args.validation_fraction}.")
    if data_args.streaming and training_args.max_steps <= 0:
        raise PretrainingError("--streaming needs --max_steps (a stream has no length to count epochs in).")
    if data_args.train_files and data_args.dataset_name:
        raise PretrainingError("give --train_files or --dataset_name, not both.")
    if training_args.per_device_train_batch_size < 1:
        raise PretrainingError("--per_device_train_batch_size must be at least 1.")
    if training_args.hub_token:
        raise PretrainingError(
            "--hub_token would be saved in training_args.bin and pushed with it; log in with `hf auth login` or "
            "set the HF_TOKEN environment variable instead."
        )

    _check_writable(training_args.output_dir)
    resume = resolve_resume(training_args)
    previous = _holds_a_run(training_args.output_dir)
    if previous and resume is None:
        if not training_args.overwrite_output_dir:
            shown = ", ".join(previous[:5]) + (", ..." if len(previous) > 5 else "")
            raise PretrainingError(
                f"--output_dir {training_args.output_dir!r} holds another run ({shown}). Continue it with "
                f"--resume_from_checkpoint last, replace it with --overwrite_output_dir, or pick another --output_dir."
            )
    return RunPlan(config=config, max_length=max_length, stride=stride, resume_from_checkpoint=resume)


def _clear_previous_run(output_dir):
    """For --overwrite_output_dir: the old run's checkpoints and samples go (they would be taken for this run's)."""
    for _, path, _ in find_checkpoints(output_dir):
        shutil.rmtree(path, ignore_errors=True)
    (Path(output_dir) / "samples.jsonl").unlink(missing_ok=True)


def check_dataset_sizes(train_dataset, eval_dataset, training_args, max_length):
    """A clear message when the tokenized text cannot fill one batch (before the model is built)."""
    if not hasattr(train_dataset, "__len__"):
        return
    per_step = training_args.per_device_train_batch_size * training_args.world_size
    if len(train_dataset) < per_step:
        raise PretrainingError(
            f"the training data is smaller than one batch: {len(train_dataset)} window(s) of {max_length} tokens, "
            f"but one step takes {per_step} ({training_args.per_device_train_batch_size} per device x "
            f"{training_args.world_size} process(es)). Give more text, or lower --per_device_train_batch_size, "
            f"--max_length or --stride."
        )
    if training_args.eval_strategy != "no" and eval_dataset is not None and len(eval_dataset) == 0:
        raise PretrainingError(
            f"the validation split is empty (no window of {max_length} tokens fits in the held-out text); give more "
            f"text, raise --validation_fraction or lower --max_length."
        )


# ------------------------------------------------------------------------------------------------------ model


def decay_parameter_names(model):
    """Parameters that get weight decay: weight matrices and embeddings (2-D and up), never biases or the layer
    norms' `scale`/`shift` (the Trainer's name patterns would miss `norm1.scale`)."""
    return [name for name, param in model.named_parameters() if param.ndim >= 2]


def training_flops_per_token(model, seq_len):
    """Forward + backward FLOPs per token: 6 x (weights of every matmul, the output head included even when tied)
    + 12 x layers x seq_len x width for attention scores and values (PaLM's estimate)."""
    matmul_params = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    config = model.config
    return 6 * matmul_params + 12 * config.n_layers * seq_len * config.emb_dim


def peak_tflops(training_args):
    """Peak TFLOP/s of one device when known (`--peak_tflops`, or a common GPU in bf16)."""
    if training_args.peak_tflops:
        return training_args.peak_tflops
    if torch.cuda.is_available() and training_args.bf16:
        name = torch.cuda.get_device_name()
        for key, value in PEAK_BF16_TFLOPS.items():
            if key in name:
                return value
    return None


def build_model(model_args, plan):
    from .modeling_gpt import GPTForCausalLM

    overrides = _parse_overrides(model_args.config_overrides)
    if model_args.init_from:
        model = GPTForCausalLM.from_gpt2(model_args.init_from, **overrides)
    elif model_args.model_name_or_path:
        model = GPTForCausalLM.from_pretrained(model_args.model_name_or_path, config=plan.config)
    else:
        model = GPTForCausalLM(plan.config)
    if plan.max_length is not None and plan.max_length > model.config.context_length:
        raise PretrainingError(f"--max_length {plan.max_length} is larger than the model's context_length "
                               f"{model.config.context_length}.")
    return model


# ------------------------------------------------------------------------------------------------------ metrics


def token_nll(logits, labels, chunk_tokens=8192):
    """Per-token negative log-likelihood in fp32 (-100 targets score 0), computed a chunk of rows at a time so the
    fp32 copy of [tokens x vocabulary] logits stays small."""
    if isinstance(logits, tuple):
        logits = logits[0]
    vocab = logits.shape[-1]
    flat_logits, flat_labels = logits.reshape(-1, vocab), labels.reshape(-1).long()
    out = torch.empty(flat_labels.shape, dtype=torch.float32, device=logits.device)
    for i in range(0, flat_labels.numel(), chunk_tokens):
        out[i:i + chunk_tokens] = torch.nn.functional.cross_entropy(
            flat_logits[i:i + chunk_tokens].float(), flat_labels[i:i + chunk_tokens], ignore_index=-100,
            reduction="none",
        )
    return out.view(labels.shape)


class PerplexityMetric:
    """`compute_metrics` for the Trainer: the local perplexity module over the gathered token NLLs."""

    def __init__(self):
        from .metrics import load_perplexity

        self.metric = load_perplexity(keep_in_memory=True)

    def __call__(self, eval_pred):
        nll, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(nll, tuple):
            nll = nll[0]
        rows = [row_nll[row_labels != -100].tolist() for row_nll, row_labels in zip(nll, labels)]
        result = self.metric.compute(predictions=rows)
        return {"perplexity": result["perplexity"]}


# ------------------------------------------------------------------------------------------------------ callbacks


class ThroughputCallback(TrainerCallback):
    """Tokens/s of the training steps alone (data loading included; logging, evaluation and saving left out),
    and MFU when the device's peak is known. `PretrainingTrainer.log` adds them to each training log."""

    def __init__(self, flops_per_token=None, peak_flops=None):
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self._mark = None
        self._seconds = 0.0
        self._tokens = 0
        self._last_tokens = None

    def _reset_mark(self, state):
        self._mark = time.perf_counter()
        self._last_tokens = state.num_input_tokens_seen

    def on_train_begin(self, args, state, control, **kwargs):
        self._reset_mark(state)

    def on_step_end(self, args, state, control, **kwargs):
        if self._mark is None:
            self._reset_mark(state)
            return
        now = time.perf_counter()
        self._seconds += now - self._mark
        self._tokens += state.num_input_tokens_seen - self._last_tokens
        self._mark, self._last_tokens = now, state.num_input_tokens_seen

    def on_evaluate(self, args, state, control, **kwargs):
        self._reset_mark(state)

    def on_save(self, args, state, control, **kwargs):
        self._reset_mark(state)

    def on_log(self, args, state, control, **kwargs):
        self._reset_mark(state)

    def flush(self, world_size=1):
        """Throughput since the last call, as log entries."""
        if self._seconds <= 0 or self._tokens <= 0:
            return {}
        tokens_per_second = self._tokens / self._seconds
        logs = {"tokens_per_second": round(tokens_per_second, 1)}
        if self.flops_per_token and self.peak_flops:
            logs["mfu"] = round(tokens_per_second * self.flops_per_token / (self.peak_flops * world_size), 4)
        self._seconds, self._tokens = 0.0, 0
        return logs


class SampleCallback(TrainerCallback):
    """After each validation, print the book's progress line and a sample for a fixed prompt, like
    `generate_and_print_sample`; samples also go to `samples.jsonl`. Generation runs on its own RNG stream, so
    sampling never changes the training run."""

    def __init__(self, prompt=DEFAULT_PROMPT, max_new_tokens=50, temperature=1.0, top_k=50, top_p=None, seed=123):
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        self.temperature, self.top_k, self.top_p, self.seed = temperature, top_k, top_p, seed

    def generate(self, model, tokenizer):
        ids = tokenizer(self.prompt, return_tensors="pt").input_ids.to(model.device)
        kwargs = {"max_new_tokens": self.max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
        if self.temperature and self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_k=self.top_k or 0,
                          top_p=self.top_p if self.top_p is not None else 1.0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        was_training = model.training
        model.eval()
        devices = [model.device.index] if model.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(self.seed)
                out = model.generate(ids, **kwargs)
        finally:
            model.train(was_training)
        return tokenizer.decode(out[0], skip_special_tokens=False)

    def on_evaluate(self, args, state, control, model=None, processing_class=None, metrics=None, **kwargs):
        if not metrics or "eval_loss" not in metrics:
            return
        fsdp = bool(getattr(args, "fsdp", None)) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
        sample = None
        if self.max_new_tokens > 0 and processing_class is not None and model is not None:
            if fsdp or state.is_world_process_zero:
                sample = self.generate(model, processing_class)
        if not state.is_world_process_zero:
            return
        train_loss = next((e["eval_train_loss"] for e in reversed(state.log_history)
                           if "eval_train_loss" in e and e.get("step") == state.global_step), None)
        parts = [f"Step {state.global_step:06d}", f"epoch {state.epoch or 0:.2f}",
                 f"tokens {state.num_input_tokens_seen:,}"]
        if train_loss is not None:
            parts.append(f"train loss {train_loss:.3f}")
        parts.append(f"val loss {metrics['eval_loss']:.3f}")
        if "eval_perplexity" in metrics:
            parts.append(f"val perplexity {metrics['eval_perplexity']:.1f}")
        print(" | ".join(parts), flush=True)
        if sample is not None:
            print(sample.replace("\n", " "), flush=True)
            with open(Path(args.output_dir) / "samples.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "prompt": self.prompt, "text": sample}) + "\n")


def plot_losses(log_history, path):
    """The book's `plot_losses`: training and validation loss against tokens seen, epochs on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        points = [(e["num_input_tokens_seen"], e.get("epoch", 0.0), e[key]) for e in log_history
                  if key in e and "num_input_tokens_seen" in e and math.isfinite(e[key])]
        return [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]

    train = series("loss")
    train_eval = series("eval_train_loss")
    val = series("eval_loss")
    if not (train[0] or val[0]):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if train[0]:
        ax.plot(train[0], train[2], label="Training loss (running)", alpha=0.8)
    if train_eval[0]:
        ax.plot(train_eval[0], train_eval[2], "o-", markersize=3, label="Training loss (at evaluation)")
    if val[0]:
        ax.plot(val[0], val[2], "s-.", markersize=3, label="Validation loss")
    ax.set_xlabel("Tokens seen")
    ax.set_ylabel("Loss")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    every = [(t, e) for t, e in zip(train[0] + val[0], train[1] + val[1])]
    if every and max(t for t, _ in every) > 0:
        tokens_per_epoch = max(t / e for t, e in every if e > 0) if any(e > 0 for _, e in every) else None
        if tokens_per_epoch:
            top = ax.secondary_xaxis("top", functions=(lambda t: t / tokens_per_epoch, lambda e: e * tokens_per_epoch))
            top.set_xlabel("Epochs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class LossPlotCallback(TrainerCallback):
    """Redraw `loss.png` in output_dir after each evaluation and at the end (main process only)."""

    def _draw(self, args, state):
        if state.is_world_process_zero:
            try:
                plot_losses(state.log_history, Path(args.output_dir) / "loss.png")
            except Exception as e:  # a plot must never stop a training run
                logger.warning(f"could not draw loss.png: {e}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics:
            self._draw(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        self._draw(args, state)


# ------------------------------------------------------------------------------------------------------ trainer


class PretrainingTrainer(Trainer):
    """The Trainer with what the book's loop has or names: decay groups, NaN stop, train-set loss at each
    evaluation, throughput in the logs, and checkpoints that are only ever taken up when complete."""

    def __init__(self, *args, train_eval_dataset=None, throughput=None, card_info=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_eval_dataset = train_eval_dataset
        self.throughput = throughput
        self.card_info = card_info or {}
        if throughput is not None:
            self.add_callback(throughput)

    def get_decay_parameter_names(self, model):
        return decay_parameter_names(model)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        bad = (~torch.isfinite(loss)).float()
        if self.args.world_size > 1:
            bad = self.accelerator.reduce(bad.reshape(1), reduction="sum")
        if bad.item() > 0:
            step = self.state.global_step + 1
            raise NonFiniteLossError(step, loss.item(), self.state.epoch,
                                     last_complete_checkpoint(self.args.output_dir))
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """One pass over the vocabulary-sized logits instead of two: the token NLLs give both the loss (their mean,
        what the model's loss is) and the perplexity metric's input."""
        labels = inputs.get("shift_labels")
        if prediction_loss_only or self.compute_metrics is None or labels is None:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        inputs = self._prepare_inputs(inputs)
        labels = inputs["shift_labels"]
        model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels")}
        with torch.no_grad():
            with self.compute_loss_context_manager():
                logits = model(**model_inputs, use_cache=False).logits
            nll = token_nll(logits, labels)
            mask = labels != -100
            loss = (nll * mask).sum() / mask.sum().clamp(min=1)
        return loss.detach(), nll, labels

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        """Validation metrics; on the standard call, first the loss on a fixed slice of the training data (the
        book's `evaluate_model` reports both)."""
        if eval_dataset is None and metric_key_prefix == "eval" and self.train_eval_dataset is not None:
            train_metrics = super().evaluate(self.train_eval_dataset, ignore_keys, "eval_train")
        else:
            train_metrics = {}
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        return {**{k: v for k, v in train_metrics.items() if k.endswith(("_loss", "_perplexity"))}, **metrics}

    def log(self, logs, start_time=None):
        if self.throughput is not None and "loss" in logs:
            logs.update(self.throughput.flush(self.args.world_size))
        super().log(logs, start_time)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if folder.is_dir():
                mark_checkpoint_complete(folder, self.state.global_step)

    def create_model_card(self, *args, **kwargs):
        """Our model card (hf_gpt.hub), so `push_to_hub` uploads it rather than the Trainer's generic one."""
        if not self.is_world_process_zero():
            return
        if not write_card(self.args.output_dir, self.model.config, self.args, **self.card_info):
            super().create_model_card(*args, **kwargs)


def write_card(output_dir, model_config, training_args, eval_results=None, train_results=None, dataset_name=None,
               base_model=None):
    """README.md through hf_gpt.hub when it is there; False when it is not."""
    try:
        from .hub import write_model_card
    except ImportError:
        return False
    write_model_card(output_dir, model_config=model_config, eval_results=eval_results, train_results=train_results,
                     training_args=training_args, dataset_name=dataset_name, loss_plot="loss.png",
                     base_model=base_model)
    return True


# ------------------------------------------------------------------------------------------------------ the run


def _setup_logging(training_args):
    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    logger.setLevel(level)
    import datasets
    import transformers

    log_level = training_args.get_process_log_level()
    datasets.utils.logging.set_verbosity(max(log_level, logging.WARNING))
    transformers.utils.logging.set_verbosity(log_level)


def load_datasets(tokenizer, data_args, training_args, plan):
    from .data import build_lm_datasets

    with training_args.main_process_first(desc="tokenizing the text"):
        try:
            return build_lm_datasets(
                tokenizer,
                text_files=data_args.train_files,
                validation_file=data_args.validation_file,
                dataset_name=data_args.dataset_name,
                dataset_config_name=data_args.dataset_config_name,
                text_column=data_args.text_column,
                max_length=plan.max_length,
                stride=plan.stride,
                validation_fraction=data_args.validation_fraction,
                streaming=data_args.streaming,
                num_proc=data_args.preprocessing_num_workers,
            )
        except (FileNotFoundError, ValueError) as e:
            raise PretrainingError(str(e)) from e


def _take(dataset, n):
    if n is None:
        return dataset
    if hasattr(dataset, "__len__"):
        return dataset.select(range(min(n, len(dataset))))
    return dataset.take(n)


def run_pretraining(model_args, data_args, training_args, callbacks=()):
    """Train as configured; returns {"train": metrics, "eval": metrics}. Raises `PretrainingError` on bad input
    (before the model is built or the data tokenized) and `NonFiniteLossError` when the loss diverges."""
    _setup_logging(training_args)
    plan = validate_arguments(model_args, data_args, training_args)
    output_dir = Path(training_args.output_dir)
    with training_args.main_process_first(desc="preparing output_dir"):
        if training_args.should_save:
            if plan.resume_from_checkpoint is None and training_args.overwrite_output_dir:
                _clear_previous_run(output_dir)
            remove_incomplete_checkpoints(output_dir)
    if plan.resume_from_checkpoint is not None:
        logger.info(f"Resuming from {plan.resume_from_checkpoint}")
        training_args.eval_on_start = False

    from . import load_tokenizer

    tokenizer = load_tokenizer(model_args.tokenizer_name)
    if plan.max_length is None:
        raise PretrainingError("--max_length is needed when the model's context length is only known from its weights.")
    datasets_ = load_datasets(tokenizer, data_args, training_args, plan)
    train_dataset = datasets_["train"]
    if "validation" not in datasets_:
        if training_args.eval_strategy != "no" or training_args.eval_on_start:
            raise PretrainingError("no validation split (--validation_fraction 0 and no --validation_file): give one, "
                                   "or turn evaluation off with --eval_strategy no --eval_on_start false.")
    eval_dataset = _take(datasets_.get("validation"), data_args.max_eval_samples) if "validation" in datasets_ else None
    check_dataset_sizes(train_dataset, eval_dataset, training_args, plan.max_length)
    n_train_eval = data_args.eval_train_samples
    train_eval_dataset = _take(train_dataset, n_train_eval) if n_train_eval else None

    from transformers import set_seed

    if training_args.use_cpu and training_args.cpu_reuse_freed_memory and reuse_freed_memory():
        logger.info("glibc malloc keeps freed memory for reuse (--cpu_reuse_freed_memory false to turn off)")
    set_seed(training_args.seed)
    model = build_model(model_args, plan)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"Model: {n_params / 1e6:.1f}M parameters, context {model.config.context_length}, "
                f"{'bf16 autocast' if training_args.bf16 else 'fp32'}; {len(train_dataset) if hasattr(train_dataset, '__len__') else '?'} "
                f"training windows of {plan.max_length} tokens")

    dataset_name = data_args.dataset_name or (data_args.train_files[0] if data_args.train_files
                                              else "pydoc_data.topics (Python's help texts, the default corpus)")
    card_info = {"dataset_name": dataset_name, "base_model": model_args.init_from or model_args.model_name_or_path}
    peak = peak_tflops(training_args)
    throughput = ThroughputCallback(training_flops_per_token(model, plan.max_length), peak * 1e12 if peak else None)
    trainer = PretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=default_data_collator,
        compute_metrics=PerplexityMetric(),
        callbacks=[
            SampleCallback(training_args.sample_prompt, training_args.sample_max_new_tokens,
                           training_args.sample_temperature, training_args.sample_top_k, training_args.sample_top_p,
                           training_args.seed),
            LossPlotCallback(),
            *callbacks,
        ],
        train_eval_dataset=train_eval_dataset,
        throughput=throughput,
        card_info=card_info,
    )

    train_result = trainer.train(resume_from_checkpoint=plan.resume_from_checkpoint)

    if not all(torch.isfinite(p).all() for p in trainer.model.parameters()):
        raise NonFiniteLossError(trainer.state.global_step, None, trainer.state.epoch,
                                 last_complete_checkpoint(training_args.output_dir),
                                 problem=f"the weights hold NaN/inf after step {trainer.state.global_step};")
    train_metrics = dict(train_result.metrics)
    if hasattr(train_dataset, "__len__"):
        train_metrics["train_samples"] = len(train_dataset)
    train_metrics["train_tokens"] = trainer.state.num_input_tokens_seen

    try:
        from .hub import sampling_generation_config

        trainer.model.generation_config = sampling_generation_config(trainer.model.config)
    except ImportError:
        pass
    trainer.save_model()
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    eval_metrics = None
    if eval_dataset is not None:
        last_eval = next((e for e in reversed(trainer.state.log_history) if "eval_loss" in e), None)
        if last_eval is not None and last_eval.get("step") == trainer.state.global_step:
            eval_metrics = {k: v for k, v in last_eval.items() if k.startswith("eval_") or k == "epoch"}
        else:
            eval_metrics = trainer.evaluate()
        if hasattr(eval_dataset, "__len__"):
            eval_metrics["eval_samples"] = len(eval_dataset)
        eval_metrics["perplexity"] = eval_metrics.get("eval_perplexity",
                                                      math.exp(min(eval_metrics["eval_loss"], 700)))
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)

    trainer.card_info.update(eval_results=eval_metrics, train_results=train_metrics)
    if trainer.is_world_process_zero():
        plot_losses(trainer.state.log_history, output_dir / "loss.png")
        write_card(output_dir, trainer.model.config, training_args, **trainer.card_info)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=dataset_name)
    summary = _summary(trainer.state.log_history)
    if summary and trainer.is_world_process_zero():
        logger.info(summary)
    return {"train": train_metrics, "eval": eval_metrics}


def _summary(log_history):
    evals = [e for e in log_history if "eval_loss" in e]
    if len(evals) < 2:
        return None
    first, last = evals[0], evals[-1]
    drop = 1 - last["eval_loss"] / first["eval_loss"]
    return (f"Validation loss {first['eval_loss']:.3f} at step {first['step']} -> {last['eval_loss']:.3f} at step "
            f"{last['step']} ({drop:.0%} lower)")


def main(argv=None, callbacks=()):
    """The `scripts/pretrain.py` entry point; returns the process exit code."""
    try:
        model_args, data_args, training_args = parse_arguments(argv)
        run_pretraining(model_args, data_args, training_args, callbacks=callbacks)
    except PretrainingError as e:
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            print(f"pretrain.py: error: {e}", file=sys.stderr, flush=True)
        return 2
    except NonFiniteLossError as e:
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            print(f"pretrain.py: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


__all__ = [
    "DataArguments", "ModelArguments", "NonFiniteLossError", "PretrainingArguments", "PretrainingError",
    "PretrainingTrainer", "build_parser", "decay_parameter_names", "default_bf16", "is_complete_checkpoint",
    "last_complete_checkpoint", "main", "parse_arguments", "plot_losses", "reuse_freed_memory", "run_pretraining",
    "validate_arguments",
]
