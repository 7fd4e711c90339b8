"""Every check of a run's arguments that needs neither the model nor the tokenized data."""

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..cli import UsageError, is_main_process, read_json
from ..model.configuration_gpt import GPT2_ALIASES, GPT2_CHECKPOINTS, PRESETS, GPTConfig, check_config_fields
from ..model.conversion_gpt import check_weights_fit, gpt2_config_to_gpt_config
from ..model.modeling_gpt import GPTForCausalLM
from .checkpoints import _holds_a_run, final_model_problems, resolve_resume
from .errors import RunFinished
from .lock import OutputDirLock

ARCHITECTURE_FIELDS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "qkv_bias",
                       "tie_word_embeddings")


def _typed(value):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value.lower() in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _parse_overrides(text):
    """`'n_layers=2,drop_rate=0.0,init_scheme=gpt2'` -> typed dict (ints, floats, booleans, None, strings)."""
    overrides = {}
    for item in filter(str.strip, (text or "").split(",")):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise UsageError(f"--config_overrides: expected key=value pairs separated by commas, got {item!r}.")
        overrides[key] = _typed(value)
    try:
        return check_config_fields(overrides)
    except ValueError as e:
        raise UsageError(f"--config_overrides: {e}") from None


def _gpt2_config(init_from, overrides):
    """The GPTConfig `--init_from` will produce, when it can be told without loading weights (else None)."""
    from ..openai_checkpoint import OpenAICheckpoint, gpt2_config, is_openai_folder

    if init_from in GPT2_ALIASES:
        return GPTConfig.from_preset(GPT2_ALIASES[init_from], **overrides)
    path = Path(init_from)
    if path.is_dir() and (path / "config.json").is_file():
        return gpt2_config_to_gpt_config(json.loads((path / "config.json").read_text()), **overrides)
    if is_openai_folder(path):  # the book's gpt_download.py folder: its index and data files are checked too
        config = gpt2_config_to_gpt_config(gpt2_config(path / "hparams.json"), **overrides)
        OpenAICheckpoint(path).close()
        return config
    return None


def resolve_model_config(model_args):
    """The config the run will train (None when only the weights can tell, for a remote `--init_from`)."""
    overrides = _parse_overrides(model_args.config_overrides)
    sources = [name for name in ("config_name", "model_name_or_path", "init_from") if getattr(model_args, name)]
    if len(sources) > 1:
        raise UsageError(f"give at most one of --config_name, --model_name_or_path, --init_from (got "
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
                    raise UsageError(f"--{name} {value!r}: no config file there ({config_file} is missing).")
                written = read_json(config_file, f"--{name}")
                if written.get("model_type") == "gpt2":
                    raise UsageError(f"--{name} {value!r} holds OpenAI GPT-2 weights (model_type 'gpt2'); start from "
                                     f"them with --init_from {value}.")
                config = GPTConfig.from_dict(dict(written))
                for key, val in overrides.items():
                    setattr(config, key, val)
                config._validate()
                if name == "model_name_or_path":
                    check_weights_fit(GPTForCausalLM, config, path, None if overrides else written)
                return config
        if model_args.preset not in PRESETS:
            raise UsageError(f"unknown preset {model_args.preset!r}; choose one of {', '.join(PRESETS)}.")
        return GPTConfig.from_preset(model_args.preset, **overrides)
    except UsageError:
        raise
    except (ValueError, FileNotFoundError) as e:  # FileNotFoundError: a file missing from an OpenAI folder
        raise UsageError(str(e)) from e


def _check_writable(output_dir):
    if not str(output_dir or "").strip():
        raise UsageError("--output_dir is empty: give the folder the run writes to (default: outputs/pretrain).")
    path = Path(output_dir)
    probe_dir = path
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise UsageError(f"--output_dir {str(path)!r}: {probe_dir} is a file, not a folder.")
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise UsageError(f"--output_dir {str(path)!r} is not writable (no write permission on {probe_dir}).")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UsageError(f"--output_dir {str(path)!r} is not writable: {e.strerror or e}.") from e


@dataclass
class RunPlan:
    config: GPTConfig | None
    max_length: int | None
    stride: int | None
    resume_from_checkpoint: str | None
    lock: OutputDirLock | None = None
    finish_only: bool = False  # the run reached its last step: write the final model from the checkpoint


def _check_sources(model_args, training_args):
    """Names of things to download: a missing local path fails at once; a Hub id must be cached or reachable."""
    from ..locations import check_source

    if model_args.init_from:
        preset = GPT2_ALIASES.get(model_args.init_from) if not Path(model_args.init_from).exists() else None
        check_source(model_args.init_from, "--init_from", suggestions=GPT2_ALIASES,
                     repo_id=GPT2_CHECKPOINTS[preset][0] if preset else None)
    if model_args.tokenizer_name:
        check_source(model_args.tokenizer_name, "--tokenizer_name", cached_file="tokenizer_config.json")
    if training_args.push_to_hub:
        from huggingface_hub import is_offline_mode

        from ..hub import check_repo_id, require_token

        if is_offline_mode():
            raise UsageError("--push_to_hub: HF_HUB_OFFLINE is set, so nothing can reach the Hub; unset it, or "
                             "train without --push_to_hub and push later with scripts/push_to_hub.py.")
        try:
            if training_args.hub_model_id:
                check_repo_id(training_args.hub_model_id)
            require_token()
        except UsageError as e:
            raise UsageError(f"--push_to_hub: {e}") from None


def _check_flags(model_args, data_args, training_args):
    """Flags whose bad values the libraries would meet only after tokenizing or building the model (or never)."""
    from ..sampling import check_sampling

    for name in ("learning_rate", "weight_decay", "max_grad_norm", "warmup_steps"):
        value = getattr(training_args, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UsageError(f"--{name} must be a finite number >= 0, got {value}.")
    if training_args.num_train_epochs < 0:
        raise UsageError(f"--num_train_epochs must be >= 0, got {training_args.num_train_epochs}.")
    if training_args.max_steps < -1:
        raise UsageError(f"--max_steps must be >= 0 (or -1: run --num_train_epochs), got "
                         f"{training_args.max_steps}.")
    if training_args.sample_max_new_tokens > 0 and not training_args.sample_prompt:
        raise UsageError("--sample_prompt is empty: give a prompt, or --sample_max_new_tokens 0 for no sample.")
    check_sampling(lambda name: f"--sample_{name}", temperature=training_args.sample_temperature,
                   top_k=training_args.sample_top_k, top_p=training_args.sample_top_p,
                   max_new_tokens=training_args.sample_max_new_tokens)
    if training_args.gradient_accumulation_steps < 1:
        raise UsageError(f"--gradient_accumulation_steps must be >= 1, got "
                         f"{training_args.gradient_accumulation_steps}.")
    if not 0 <= training_args.seed < 2**32:
        raise UsageError(f"--seed must be in [0, 2**32 - 1] (numpy's range), got {training_args.seed}.")
    if training_args.dataloader_num_workers < 0:
        raise UsageError(f"--dataloader_num_workers must be >= 0 (0: load in the main process), got "
                         f"{training_args.dataloader_num_workers}.")
    evaluating = training_args.eval_strategy != "no" or training_args.eval_on_start
    if evaluating and data_args.validation_fraction == 0 and not data_args.validation_file \
            and not data_args.dataset_name:  # a dataset may bring its own validation split
        raise UsageError("no validation split (--validation_fraction 0 and no --validation_file): give one, or turn "
                         "evaluation off with --eval_strategy no --eval_on_start false.")
    if data_args.max_eval_samples is not None and data_args.max_eval_samples < 1:
        raise UsageError(f"--max_eval_samples must be >= 1 (or left out: the whole validation split), got "
                         f"{data_args.max_eval_samples}.")
    implementation = model_args.attn_implementation
    if implementation:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        known = ["eager", *(name for name in ALL_ATTENTION_FUNCTIONS if "|" not in name)]
        if implementation not in known and "/" not in implementation:  # "org/kernel": a Hub kernel
            raise UsageError(f"--attn_implementation {implementation!r}: choose one of {', '.join(known)}.")
    for name in training_args.report_to or ():
        from transformers.integrations import get_reporting_integration_callbacks

        try:
            for callback in get_reporting_integration_callbacks([name]):
                callback()  # each integration's callback checks its package at construction
        except (RuntimeError, ImportError, ValueError) as e:
            raise UsageError(f"--report_to {name}: {' '.join(str(e).split())}") from None


def _padded(config, multiple):
    """The config as trained: with `--pad_vocab_to_multiple_of`, the vocabulary rounded up."""
    if config is None or not multiple or config.vocab_size % multiple == 0:
        return config
    return GPTConfig(**{**config.to_dict(), "vocab_size": -(-config.vocab_size // multiple) * multiple})


def _check_resume_matches(resume, config, training_args):
    """A resume needs the same architecture and a step left; True when only the final model is left to write."""
    path = Path(resume)
    if config is not None and (path / "config.json").is_file():
        try:
            saved = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except ValueError as e:
            raise UsageError(f"{path / 'config.json'} is not readable JSON ({e}).") from None
        differ = [f"{k}={saved.get(k)!r} there, {getattr(config, k)!r} here" for k in ARCHITECTURE_FIELDS
                  if k in saved and saved[k] != getattr(config, k)]
        if differ:
            raise UsageError(
                f"--resume_from_checkpoint {resume} holds another model than this run's config ({'; '.join(differ)}). "
                f"Resume with the --preset / --config_overrides of the run that wrote it, or start a new run.")
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    step = state.get("global_step", 0)
    if training_args.max_steps > 0:
        target, how = training_args.max_steps, f"--max_steps {training_args.max_steps}"
    elif state.get("num_train_epochs") == training_args.num_train_epochs and state.get("max_steps", 0) > 0:
        target, how = state["max_steps"], f"--num_train_epochs {training_args.num_train_epochs:g}"
    else:
        return
    if step >= target:
        missing = final_model_problems(training_args.output_dir, step)
        if missing:  # killed while writing its final model: finish it from the checkpoint, as the Trainer resumes
            logging.getLogger("hf_gpt.training").warning(
                f"The run in {training_args.output_dir} reached step {step} ({path.name}) but its final model is not "
                f"there ({'; '.join(missing[:3])}): it was stopped while writing it. Writing it from {path.name}.")
            return True
        raise RunFinished(
            f"the run in {training_args.output_dir} is finished: {path.name} is at step {step} and {how} asks for "
            f"{target}. Nothing was trained and the model is left as it is; raise --max_steps (or --num_train_epochs) "
            f"to train further.")


def validate_arguments(model_args, data_args, training_args):
    """Every check that needs neither the model nor the tokenized data; raises `UsageError`."""
    config = resolve_model_config(model_args)
    context = config.context_length if config is not None else None
    max_length = data_args.max_length if data_args.max_length is not None else context
    if max_length is not None and max_length <= 1:
        raise UsageError(f"--max_length must be at least 2 tokens, got {max_length}.")
    if context is not None and max_length > context:
        raise UsageError(
            f"--max_length {max_length} is larger than the model's context_length {context} (the positional "
            f"embedding has {context} rows); use --max_length <= {context}, or a model with a longer context "
            f"(--config_overrides context_length={max_length} when training from scratch)."
        )
    stride = data_args.stride if data_args.stride is not None else max_length
    if stride is not None and stride <= 0:
        raise UsageError(f"--stride must be positive, got {stride}.")
    if not 0 <= data_args.validation_fraction < 1:
        raise UsageError(f"--validation_fraction must be in [0, 1), got {data_args.validation_fraction}.")
    if data_args.streaming and training_args.max_steps <= 0:
        raise UsageError("--streaming needs --max_steps (a stream has no length to count epochs in).")
    if data_args.train_files and data_args.dataset_name:
        raise UsageError("give --train_files or --dataset_name, not both.")
    if training_args.per_device_train_batch_size < 1:
        raise UsageError("--per_device_train_batch_size must be at least 1.")
    multiple = model_args.pad_vocab_to_multiple_of
    if multiple is not None and multiple < 1:
        raise UsageError(f"--pad_vocab_to_multiple_of must be a positive number of rows (64 is usual), got "
                         f"{multiple}.")
    _check_flags(model_args, data_args, training_args)
    if training_args.hub_token:
        raise UsageError(
            "--hub_token would be saved in training_args.bin and pushed with it; log in with `hf auth login` or "
            "set the HF_TOKEN environment variable instead."
        )
    _check_sources(model_args, training_args)
    _check_writable(training_args.output_dir)
    # Taken before looking at the folder, so two runs started together cannot both find it free.
    lock = OutputDirLock(training_args.output_dir).acquire() if is_main_process() else None
    try:
        resume = resolve_resume(training_args)
        finish_only = resume is not None and bool(_check_resume_matches(resume, _padded(config, multiple),
                                                                        training_args))
        previous = _holds_a_run(training_args.output_dir)
        if previous and resume is None and not training_args.overwrite_output_dir:
            shown = ", ".join(previous[:5]) + (", ..." if len(previous) > 5 else "")
            raise UsageError(
                f"--output_dir {training_args.output_dir!r} holds another run ({shown}). Continue it with "
                f"--resume_from_checkpoint last, replace it with --overwrite_output_dir, or pick another --output_dir.")
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return RunPlan(config=config, max_length=max_length, stride=stride, resume_from_checkpoint=resume, lock=lock,
                   finish_only=finish_only)


def check_dataset_sizes(train_dataset, eval_dataset, training_args, max_length):
    """A clear message when the tokenized text cannot fill one batch (before the model is built)."""
    if not hasattr(train_dataset, "__len__"):
        return
    per_step = training_args.per_device_train_batch_size * training_args.world_size
    if len(train_dataset) < per_step:
        raise UsageError(
            f"the training data is smaller than one batch: {len(train_dataset)} window(s) of {max_length} tokens, "
            f"but one step takes {per_step} ({training_args.per_device_train_batch_size} per device x "
            f"{training_args.world_size} process(es)). Give more text, or lower --per_device_train_batch_size, "
            f"--max_length or --stride."
        )
    if training_args.eval_strategy != "no" and eval_dataset is not None and len(eval_dataset) == 0:
        raise UsageError(
            f"the validation split is empty (no window of {max_length} tokens fits in the held-out text); give more "
            f"text, raise --validation_fraction or lower --max_length."
        )
