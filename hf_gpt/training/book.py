"""The options that make a Trainer run the book's chapter 5 cell to the printed digit (`recipes/book-ch5.yaml`)."""

import logging

import torch
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from ..metrics import perplexity

logger = logging.getLogger("hf_gpt.training")


def book_dataloader(trainer, dataset, batch_size, shuffle, drop_last, description="Training"):
    """The book's `DataLoader`, with no generator, so each pass draws from the global torch RNG as the book's do."""
    dataset = trainer._remove_unused_columns(dataset, description=description)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                        collate_fn=trainer.data_collator, num_workers=trainer.args.dataloader_num_workers,
                        pin_memory=trainer.args.dataloader_pin_memory)
    return trainer.accelerator.prepare(loader)


def mean_batch_loss(trainer, loader, num_batches):
    """The book's `calc_loss_loader(loader, model, device, num_batches)`."""
    model = trainer.model
    num_batches = min(num_batches, len(loader))
    if num_batches == 0:
        return float("nan")
    total = 0.0
    for i, batch in enumerate(loader):
        if i >= num_batches:
            break
        batch = trainer._prepare_inputs(batch)
        with trainer.compute_loss_context_manager():
            loss = model(**batch, use_cache=False).loss
        if trainer.args.world_size > 1:
            loss = trainer.accelerator.reduce(loss.detach(), reduction="mean")
        total += loss.item()
    return total / num_batches


def evaluate_like_book(trainer, eval_dataset):
    """The book's `evaluate_model` (eval mode, no gradients; train loss first, so its shuffle draws first)."""
    args = trainer.args
    train_loader = book_dataloader(trainer, trainer.train_dataset, trainer._train_batch_size,
                                   shuffle=args.data_order == "book", drop_last=True)
    val_loader = book_dataloader(trainer, eval_dataset, args.eval_batch_size, shuffle=False, drop_last=False,
                                 description="Evaluation")
    model = trainer.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            train_loss = mean_batch_loss(trainer, train_loader, args.eval_iter)
            val_loss = mean_batch_loss(trainer, val_loader, args.eval_iter)
    finally:
        model.train(was_training)
    return {"eval_train_loss": train_loss, "eval_loss": val_loss,
            "eval_perplexity": perplexity(val_loss)}


def book_step(args, global_step):
    """The step number a run shows: the book counts the first update as step 0."""
    return global_step - 1 if args.step_numbering == "book" else global_step


class BookStepsCallback(TrainerCallback):
    """`step_numbering="book"`: evaluate after book steps 0, eval_steps, ... and not at the end, as the book does."""

    def on_step_end(self, args, state, control, **kwargs):
        if args.eval_strategy == "steps" and state.eval_steps:
            control.should_evaluate = (state.global_step - 1) % state.eval_steps == 0
        return control


class RandomState:
    """The global RNG states (CPU and CUDA), to put back after the Trainer re-seeds (`rng_order="book"`)."""

    def __init__(self):
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def restore(self):
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def exactness_breakers(model_args, training_args, model=None):
    """What in a run on the book's random stream keeps its numbers from the book's (empty when none)."""
    flags = {"bf16": "bf16 autocast", "fp16": "fp16 autocast", "tf32": "TF32 matrix products",
             "torch_compile": "torch.compile"}
    reasons = [reason for flag, reason in flags.items() if getattr(training_args, flag)]
    if training_args.world_size > 1:
        reasons.append(f"{training_args.world_size} processes")
    if training_args.gradient_accumulation_steps > 1:
        reasons.append(f"gradient accumulation over {training_args.gradient_accumulation_steps} batches")
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None) or model_args.attn_implementation
    if attention not in (None, "eager") or (model is not None and attention is None):
        reasons.append(f"{attention or 'default'} attention (the book's is eager)")
    if (getattr(model_args, "pad_vocab_to_multiple_of", None) or 1) > 1:
        reasons.append(f"a vocabulary padded to a multiple of {model_args.pad_vocab_to_multiple_of}")
    for name in ("data_order", "rng_order"):
        if getattr(training_args, name) != "book":
            reasons.append(f"{name}={getattr(training_args, name)}")
    return reasons


def warn_if_not_exact(model_args, training_args, model=None):
    """One warning line when a run asks for the book's random stream but computes differently."""
    if "book" not in (training_args.data_order, training_args.rng_order) or training_args.process_index != 0:
        return
    reasons = exactness_breakers(model_args, training_args, model)
    if reasons:
        logger.warning(f"the numbers will no longer match the book's: {', '.join(reasons)} (the book's chapter 5 run "
                       f"is one process, fp32, eager attention, no torch.compile, data_order and rng_order 'book').")
