"""A whole pretraining run, in order: check the arguments, tokenize, build the model, train, save, report."""

import logging
import sys
from pathlib import Path

import torch
from transformers import default_data_collator
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from .. import cli
from ..cards import write_model_card
from ..cli import UsageError
from ..metrics import perplexity
from .args import parse_arguments
from .book import BookStepsCallback, RandomState, warn_if_not_exact
from .callbacks import ConsoleCallback, LossPlotCallback, SampleCallback, ThroughputCallback, plot_losses
from .checkpoints import _clear_previous_run, last_complete_checkpoint, remove_incomplete_checkpoints
from .errors import NonFiniteLossError, RunFinished
from .hardware import flops_per_token, peak_tflops, reuse_freed_memory, use_cpu_threads
from .trainer import PerplexityMetric, PretrainingTrainer
from .validation import _parse_overrides, check_dataset_sizes, validate_arguments

logger = logging.getLogger("hf_gpt.training")


def build_model(model_args, plan):
    from ..model.modeling_gpt import GPTForCausalLM

    overrides = _parse_overrides(model_args.config_overrides)
    if model_args.init_from:
        model = GPTForCausalLM.from_gpt2(model_args.init_from, **overrides)
    elif model_args.model_name_or_path:
        model = GPTForCausalLM.from_pretrained(model_args.model_name_or_path, config=plan.config)
    else:
        model = GPTForCausalLM(plan.config)
    if model_args.attn_implementation:
        model.set_attn_implementation(model_args.attn_implementation)
    if model_args.pad_vocab_to_multiple_of:
        pad_vocabulary(model, model_args.pad_vocab_to_multiple_of)
    if plan.max_length is not None and plan.max_length > model.config.context_length:
        raise UsageError(f"--max_length {plan.max_length} is larger than the model's context_length "
                         f"{model.config.context_length}.")
    return model


def pad_vocabulary(model, multiple):
    """Rows up to a multiple of `multiple` (new ones drawn around the old embeddings' mean, as transformers does);
    generation never picks the new ids, which no tokenizer produces."""
    real = model.config.vocab_size
    if real % multiple:
        model.resize_token_embeddings(real, pad_to_multiple_of=multiple)
        padding = range(real, model.config.vocab_size)
        model.generation_config.suppress_tokens = sorted({*(model.generation_config.suppress_tokens or ()), *padding})
        logger.info(f"Vocabulary padded from {real:,} to {model.config.vocab_size:,} rows (ids {real:,}+ suppressed "
                    f"in generation)")


class _Console(logging.StreamHandler):
    """hf_gpt's lines on whatever `sys.stdout` is when they are written."""

    def emit(self, record):
        self.stream = sys.stdout
        super().emit(record)


def _setup_logging(training_args):
    """The console is hf_gpt's lines alone, on the main process (`cli.run` turns the progress bars off): transformers
    and datasets say only warnings."""
    import datasets
    import transformers

    handler = _Console()
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = logging.getLogger("hf_gpt")
    ours.handlers[:] = [handler]
    ours.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    datasets.utils.logging.set_verbosity(logging.WARNING)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())


def load_datasets(tokenizer, data_args, training_args, plan):
    """`tokenizer` None: tiktoken's GPT-2 (the same ids as the default tokenizer's, faster)."""
    from ..data import build_lm_datasets

    with training_args.main_process_first(desc="tokenizing the text"):
        try:
            return build_lm_datasets(
                tokenizer, text_files=data_args.train_files, validation_file=data_args.validation_file,
                dataset_name=data_args.dataset_name, dataset_config_name=data_args.dataset_config_name,
                text_column=data_args.text_column, max_length=plan.max_length, stride=plan.stride,
                validation_fraction=data_args.validation_fraction, streaming=data_args.streaming,
                num_proc=data_args.preprocessing_num_workers)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(str(e)) from e


def _take(dataset, n):
    if n is None:
        return dataset
    if hasattr(dataset, "__len__"):
        return dataset.select(range(min(n, len(dataset))))
    return dataset.take(n)


def run_pretraining(model_args, data_args, training_args, callbacks=()):
    """Train as configured; returns {"train": metrics, "eval": metrics}. Raises `UsageError` on bad input
    (before the model is built or the data tokenized) and `NonFiniteLossError` when the loss diverges."""
    plan = validate_arguments(model_args, data_args, training_args)
    try:
        return _run(plan, model_args, data_args, training_args, callbacks)
    finally:
        if plan.lock is not None:
            plan.lock.release()


def _align_special_tokens_quietly(model, tokenizer):
    """The Trainer aligns the model's special tokens with the tokenizer's (GPT-2's tokenizer pads with
    <|endoftext|>, which the config leaves unset) and announces it as a warning on every run; do it first, quietly."""
    import transformers.trainer_utils as trainer_utils

    level = trainer_utils.logger.level
    trainer_utils.logger.setLevel(logging.ERROR)
    try:
        trainer_utils.align_special_tokens(model, tokenizer)
    finally:
        trainer_utils.logger.setLevel(level)


def _run(plan, model_args, data_args, training_args, callbacks):
    output_dir = Path(training_args.output_dir)
    with training_args.main_process_first(desc="preparing output_dir"):
        if training_args.should_save:
            if plan.resume_from_checkpoint is None and training_args.overwrite_output_dir:
                _clear_previous_run(output_dir)
            remove_incomplete_checkpoints(output_dir)
    if plan.resume_from_checkpoint is not None:
        logger.info(f"Resuming from {plan.resume_from_checkpoint}")
        training_args.eval_on_start = False

    from ..tokenization import folder_tokenizer, load_tokenizer

    # A GPT-2 folder's own tokenizer goes with its weights (OpenAI's folder has encoder.json + vocab.bpe).
    own = folder_tokenizer(model_args.init_from) if model_args.init_from else None
    tokenizer = load_tokenizer(model_args.tokenizer_name or own)
    if plan.max_length is None:
        raise UsageError("--max_length is needed when the model's context length is only known from its weights.")
    if data_args.streaming and training_args.dataloader_num_workers > 0:
        logger.warning(f"--dataloader_num_workers {training_args.dataloader_num_workers} -> 0: a streamed split is "
                       f"read in the main process, which notes where to resume it (hf_gpt.streaming)")
        training_args.dataloader_num_workers = 0
        training_args.dataloader_prefetch_factor, training_args.dataloader_persistent_workers = None, False
    given = model_args.tokenizer_name or own  # else GPT-2's own, which tiktoken tokenizes faster
    datasets_ = load_datasets(tokenizer if given else None, data_args, training_args, plan)
    train_dataset = datasets_["train"]
    if plan.resume_from_checkpoint is not None and data_args.streaming:
        from ..streaming import resume_from_checkpoint

        windows = resume_from_checkpoint(train_dataset, plan.resume_from_checkpoint)
        if windows is not None:  # the stream starts at the next window: nothing to skip
            training_args.ignore_data_skip = True
            logger.info(f"The stream resumes after {windows:,} trained windows, from its saved position")
    if "validation" not in datasets_ and (training_args.eval_strategy != "no" or training_args.eval_on_start):
        raise UsageError("no validation split (--validation_fraction 0 and no --validation_file): give one, or turn "
                         "evaluation off with --eval_strategy no --eval_on_start false.")
    eval_dataset = _take(datasets_.get("validation"), data_args.max_eval_samples) if "validation" in datasets_ else None
    check_dataset_sizes(train_dataset, eval_dataset, training_args, plan.max_length)
    train_eval_dataset = _take(train_dataset, data_args.eval_train_samples) if data_args.eval_train_samples else None

    from transformers import set_seed

    set_seed(training_args.seed)
    model = build_model(model_args, plan)
    after_init = RandomState()
    warn_if_not_exact(model_args, training_args, model)
    _align_special_tokens_quietly(model, tokenizer)
    use_cache = model.config.use_cache  # the Trainer switches it off for training; the saved config keeps ours
    n_params = sum(p.numel() for p in model.parameters())
    n_windows = len(train_dataset) if hasattr(train_dataset, "__len__") else "?"
    logger.info(f"Model: {n_params / 1e6:.1f}M parameters, context {model.config.context_length}, "
                f"{'bf16 autocast' if training_args.bf16 else 'fp32'}; {n_windows} training windows of "
                f"{plan.max_length} tokens")

    dataset_name = data_args.dataset_name or (data_args.train_files[0] if data_args.train_files
                                              else "pydoc_data.topics (Python's help texts, the default corpus)")
    card_info = {"dataset_name": dataset_name, "base_model": model_args.init_from or model_args.model_name_or_path}
    peak = peak_tflops(training_args)
    throughput = ThroughputCallback(flops_per_token(model, plan.max_length, len(tokenizer)),
                                    peak * 1e12 if peak else None)
    trainer = PretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=default_data_collator,
        compute_metrics=PerplexityMetric(),
        callbacks=[
            ConsoleCallback(),
            SampleCallback(),
            LossPlotCallback(),
            *([BookStepsCallback()] if training_args.step_numbering == "book" else []),
            *callbacks,
        ],
        train_eval_dataset=train_eval_dataset,
        throughput=throughput,
        card_info=card_info,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if training_args.rng_order == "book":
        after_init.restore()

    if plan.finish_only:  # resumed at its last step, the Trainer would train one step more
        train_result = trainer.finish_from_checkpoint(plan.resume_from_checkpoint)
    elif training_args.max_steps == 0:  # the Trainer would read 0 as "not set" and run the epochs
        logger.info("--max_steps 0: no training step; the model is evaluated and saved as initialised")
        from transformers.trainer_utils import TrainOutput

        train_result = TrainOutput(0, 0.0, {"train_steps": 0})
    else:
        train_result = trainer.train(resume_from_checkpoint=plan.resume_from_checkpoint)

    if not all(torch.isfinite(p).all() for p in trainer.model.parameters()):
        raise NonFiniteLossError(trainer.state.global_step, None, trainer.state.epoch,
                                 last_complete_checkpoint(training_args.output_dir),
                                 problem=f"the weights hold NaN/inf after step {trainer.state.global_step};")
    train_metrics = dict(train_result.metrics)
    if hasattr(train_dataset, "__len__"):
        train_metrics["train_samples"] = len(train_dataset)
    train_metrics["train_tokens"] = trainer.state.num_input_tokens_seen

    from ..cards import sampling_generation_config
    from ..sampling import BOOK_SAMPLING

    overrides = BOOK_SAMPLING if training_args.generation_defaults == "book" else {}
    trainer.model.generation_config = sampling_generation_config(
        trainer.model.config, trainer.model.generation_config, **overrides)
    trainer.model.config.use_cache = use_cache
    trainer.save_model()
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    eval_metrics = None
    if eval_dataset is not None:
        last_eval = next((e for e in reversed(trainer.state.log_history) if "eval_loss" in e), None)
        # The book's run ends without a last evaluation: its results are those of its last printed line.
        book_steps = training_args.step_numbering == "book"
        if last_eval is not None and (book_steps or last_eval.get("step") == trainer.state.global_step):
            eval_metrics = {k: v for k, v in last_eval.items() if k.startswith("eval_") or k == "epoch"}
        else:
            eval_metrics = trainer.evaluate()
        if hasattr(eval_dataset, "__len__"):
            eval_metrics["eval_samples"] = len(eval_dataset)
        eval_metrics["perplexity"] = eval_metrics.get("eval_perplexity", perplexity(eval_metrics["eval_loss"]))
        trainer.save_metrics("eval", eval_metrics)

    trainer.card_info.update(eval_results=eval_metrics, train_results=train_metrics)
    if trainer.is_world_process_zero():
        plot_losses(trainer.state.log_history, output_dir / "loss.png", style=training_args.report_style)
        write_model_card(output_dir, model_config=trainer.model.config, training_args=training_args,
                         **trainer.card_info)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=dataset_name)
    if trainer.is_world_process_zero():
        summary = _summary(trainer.state.log_history)
        logger.info(f"{summary + '; ' if summary else ''}model, tokenizer, loss.png and card in {output_dir}")
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
    """The `scripts/pretrain.py` entry point; returns the exit code: 0 done (or nothing left to do), 2 a bad input or
    a fault the user can fix, 1 a diverging loss, 130 Ctrl-C, each with one line that says what happened and, where
    the run stopped, the last complete checkpoint to resume from."""
    run_state = {}

    def _main(argv):
        model_args, data_args, training_args = parse_arguments(argv)
        run_state["output_dir"] = training_args.output_dir
        # What the script's own process opts into; run_pretraining alone leaves the calling process as it is.
        _setup_logging(training_args)
        if training_args.use_cpu:
            logger.info(use_cpu_threads())
            if training_args.cpu_reuse_freed_memory and reuse_freed_memory():
                logger.info("glibc malloc keeps freed memory for reuse (--cpu_reuse_freed_memory false to turn off)")
        try:
            run_pretraining(model_args, data_args, training_args, callbacks=callbacks)
        except RunFinished as e:
            cli.say("pretrain.py", str(e))
        except (OSError, RuntimeError) as e:
            if cli.disk_full_folder(e, training_args.output_dir):
                e.add_note(where_to_resume())
            raise

    def where_to_resume():
        last = last_complete_checkpoint(run_state["output_dir"]) if "output_dir" in run_state else None
        return (f"The last complete checkpoint is {last}: continue with --resume_from_checkpoint last."
                if last else "No complete checkpoint was written.")

    return cli.run(_main, argv, prog="pretrain.py", folder=lambda: run_state.get("output_dir"),
                   interrupted=lambda: "stopped. " + where_to_resume())
