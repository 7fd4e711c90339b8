"""What the book's loop prints and draws, as Trainer callbacks: the sample, `loss.png`, tokens/s and MFU."""

import json
import logging
import math
import os
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..sampling import BOOK_SAMPLING, sampling_kwargs

logger = logging.getLogger(__name__)


class ThroughputCallback(TrainerCallback):
    """Tokens/s of the training steps alone (logging, evaluation and saving left out), and MFU when known."""

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

    on_evaluate = on_save = on_log = on_train_begin  # the time they take is not the steps'

    def on_step_end(self, args, state, control, **kwargs):
        if self._mark is None:
            self._reset_mark(state)
            return
        now = time.perf_counter()
        self._seconds += now - self._mark
        self._tokens += state.num_input_tokens_seen - self._last_tokens
        self._mark, self._last_tokens = now, state.num_input_tokens_seen

    def flush(self, world_size=1):
        if self._seconds <= 0 or self._tokens <= 0:
            return {}
        tokens_per_second = self._tokens / self._seconds
        logs = {"tokens_per_second": round(tokens_per_second, 1)}
        if self.flops_per_token and self.peak_flops:
            logs["mfu"] = round(tokens_per_second * self.flops_per_token / (self.peak_flops * world_size), 4)
        self._seconds, self._tokens = 0.0, 0
        return logs


class ConsoleCallback(TrainerCallback):
    """The run's console as nanoGPT's `train.py` prints it (or the book's lines), instead of the Trainer's dicts."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs or args.report_style == "book":
            return
        parts = [f"step {state.global_step}/{state.max_steps}", f"loss {logs['loss']:.4f}"]
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        if "tokens_per_second" in logs:
            parts.append(f"{logs['tokens_per_second']:,.0f} tokens/s")
        if "mfu" in logs:
            parts.append(f"MFU {logs['mfu']:.1%}")
        logger.info(" | ".join(parts))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not state.is_world_process_zero or not metrics or "eval_loss" not in metrics:
            return
        train_loss = metrics.get("eval_train_loss")
        if train_loss is None:
            train_loss = next((e["eval_train_loss"] for e in reversed(state.log_history)
                               if "eval_train_loss" in e and e.get("step") == state.global_step), None)
        logger.info(progress_line(args, state, train_loss, metrics))


class SampleCallback(TrainerCallback):
    """A sample after each validation, like the book's `generate_and_print_sample`, on its own RNG stream so
    sampling never changes the run; every rank generates under FSDP (its forward needs all ranks)."""

    def _sample(self, args, state, model, tokenizer):
        fsdp = bool(args.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
        if args.sample_max_new_tokens <= 0 or tokenizer is None or model is None:
            return
        if not (fsdp or state.is_world_process_zero):
            return
        ids = tokenizer(args.sample_prompt, return_tensors="pt").input_ids.to(model.device)
        kwargs = sampling_kwargs(temperature=args.sample_temperature or 0, top_k=args.sample_top_k,
                                 top_p=args.sample_top_p, defaults=BOOK_SAMPLING)
        was_training = model.training
        model.eval()
        devices = [model.device.index] if model.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(args.seed)
                out = model.generate(ids, max_new_tokens=args.sample_max_new_tokens,
                                     pad_token_id=tokenizer.pad_token_id, **kwargs)
        finally:
            model.train(was_training)
        sample = tokenizer.decode(out[0], skip_special_tokens=False)
        if state.is_world_process_zero:
            logger.info(sample.replace("\n", " "))
            with open(Path(args.output_dir) / "samples.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, "prompt": args.sample_prompt, "text": sample}) + "\n")

    def on_evaluate(self, args, state, control, model=None, processing_class=None, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics and args.sample_strategy == "eval":
            self._sample(args, state, model, processing_class)

    def on_epoch_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if args.sample_strategy == "epoch":
            self._sample(args, state, model, processing_class)


def progress_line(args, state, train_loss, metrics):
    """The line printed at each evaluation; `report_style="book"` prints `train_model_simple`'s."""
    from .book import book_step

    step = book_step(args, state.global_step)
    if getattr(args, "report_style", "default") == "book":
        epoch = max(1, math.ceil(state.epoch or 0))
        train = "nan" if train_loss is None else f"{train_loss:.3f}"
        return f"Ep {epoch} (Step {step:06d}): Train loss {train}, Val loss {metrics['eval_loss']:.3f}"
    parts = [f"step {step}/{state.max_steps}", f"epoch {state.epoch or 0:.2f}",
             f"tokens {state.num_input_tokens_seen:,}"]
    if train_loss is not None:
        parts.append(f"train loss {train_loss:.4f}")
    parts.append(f"val loss {metrics['eval_loss']:.4f}")
    if "eval_perplexity" in metrics:
        parts.append(f"val perplexity {metrics['eval_perplexity']:.1f}")
    return "eval " + " | ".join(parts)


def plot_losses(log_history, path, style="default"):
    """Training and validation loss against tokens seen, or with `style="book"` the book's `plot_losses`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if style == "book":
        return _plot_losses_book(log_history, path, plt)

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
    tokens_per_epoch = max((t / e for t, e in zip(train[0] + val[0], train[1] + val[1]) if e > 0), default=0)
    if tokens_per_epoch > 0:
        top = ax.secondary_xaxis("top", functions=(lambda t: t / tokens_per_epoch, lambda e: e * tokens_per_epoch))
        top.set_xlabel("Epochs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_losses_book(log_history, path, plt):
    """The book's chapter 5 `plot_losses(epochs_seen, tokens_seen, train_losses, val_losses)`, called as there."""
    from matplotlib.ticker import MaxNLocator

    evals = [e for e in log_history if "eval_loss" in e and "eval_train_loss" in e]
    if not evals:
        return None
    epochs = max(e.get("epoch", 0.0) for e in log_history)
    epochs_seen = torch.linspace(0, epochs, len(evals)).tolist()
    train_losses = [e["eval_train_loss"] for e in evals]
    tokens_seen = [e.get("num_input_tokens_seen", 0) for e in evals]
    fig, ax1 = plt.subplots(figsize=(5, 3))
    ax1.plot(epochs_seen, train_losses, label="Training loss")
    ax1.plot(epochs_seen, [e["eval_loss"] for e in evals], linestyle="-.", label="Validation loss")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel("Loss")
    ax1.legend(loc="upper right")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2 = ax1.twiny()
    ax2.plot(tokens_seen, train_losses, alpha=0)
    ax2.set_xlabel("Tokens seen")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


class LossPlotCallback(TrainerCallback):
    """Redraw `loss.png` in output_dir after each evaluation and at the end (main process only)."""

    def _draw(self, args, state):
        if state.is_world_process_zero:
            try:
                plot_losses(state.log_history, Path(args.output_dir) / "loss.png",
                            style=getattr(args, "report_style", "default"))
            except Exception as e:  # a plot must never stop a training run
                logger.warning(f"could not draw loss.png: {e}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics:
            self._draw(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        self._draw(args, state)
