"""The Trainer with what the book's loop has or names: decay groups, NaN stop, the train-set loss, perplexity."""

import json
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..cards import write_model_card
from ..cli import raise_if_interrupted
from ..streaming import STATE_FILE, resume_point
from .book import book_dataloader, evaluate_like_book
from .checkpoints import last_complete_checkpoint, mark_checkpoint_complete
from .errors import NonFiniteLossError


def decay_parameter_names(model):
    """Parameters of 2-D and up get weight decay (the Trainer's name patterns would miss `norm1.scale`)."""
    return [name for name, param in model.named_parameters() if param.ndim >= 2]


def token_nll(logits, labels, chunk_tokens=8192):
    """Per-token NLL in fp32 (-100 targets score 0), a chunk of rows at a time so the fp32 logits stay small."""
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
        from ..metrics import load_perplexity

        self.metric = load_perplexity(keep_in_memory=True)

    def __call__(self, eval_pred):
        nll, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(nll, tuple):
            nll = nll[0]
        rows = [row_nll[row_labels != -100].tolist() for row_nll, row_labels in zip(nll, labels)]
        result = self.metric.compute(predictions=rows)
        return {"perplexity": result["perplexity"]}


def _fsdp_on_cpu(trainer):
    """accelerate turns FSDP on only for GPU-like setups, but fully_shard runs on CPU with gloo: switch it on here."""
    import os

    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true" \
            or state.distributed_type != DistributedType.MULTI_CPU:
        return
    plugin_args = trainer.args.fsdp_plugin_args
    plugin = FullyShardedDataParallelPlugin(**plugin_args) if plugin_args is not None \
        else FullyShardedDataParallelPlugin()
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    # Set in both: later `AcceleratorState()`s copy PartialState's fields, else it falls back to MULTI_CPU mid-run.
    PartialState().distributed_type = DistributedType.FSDP
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    trainer.is_fsdp_enabled = True


class PretrainingTrainer(Trainer):
    """Adds throughput to the logs, and checkpoints that are only ever taken up when complete."""

    def __init__(self, *args, train_eval_dataset=None, throughput=None, card_info=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_eval_dataset = train_eval_dataset
        self.throughput = throughput
        self.card_info = card_info or {}
        if throughput is not None:
            self.add_callback(throughput)

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        _fsdp_on_cpu(self)

    def get_decay_parameter_names(self, model):
        if getattr(self.args, "decay_all_parameters", False):
            return [name for name, _ in model.named_parameters()]
        return decay_parameter_names(model)

    def get_train_dataloader(self):
        if getattr(self.args, "data_order", "seedable") == "book" and self.train_dataset is not None \
                and hasattr(self.train_dataset, "__len__"):
            return book_dataloader(self, self.train_dataset, self._train_batch_size, shuffle=True, drop_last=True)
        return super().get_train_dataloader()

    def training_step(self, model, inputs, num_items_in_batch=None):
        raise_if_interrupted()  # a Ctrl-C whose KeyboardInterrupt was swallowed on the way (hf_gpt.cli)
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
        """One pass over the logits instead of two: the token NLLs give both the loss and the perplexity."""
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

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        """The loss as the mean of the gathered token NLLs: the Trainer's own keeps only rank 0's loss of a short last
        batch that accelerate splits, whereas `gather_for_metrics` drops exactly the windows that pad it."""
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        nll, labels = output.predictions, output.label_ids
        if isinstance(nll, np.ndarray) and isinstance(labels, np.ndarray) and nll.shape == labels.shape:
            mask = labels != -100
            if mask.any():
                output.metrics[f"{metric_key_prefix}_loss"] = float(nll[mask].mean(dtype=np.float64))
        return output

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        """Validation metrics, with the train-slice loss first as the book's `evaluate_model` reports both."""
        if getattr(self.args, "eval_iter", None) and eval_dataset is None and metric_key_prefix == "eval":
            metrics = evaluate_like_book(self, self.eval_dataset)
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics
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

    def finish_from_checkpoint(self, checkpoint):
        """A run stopped while writing its final model: write it, its metrics and card from the checkpoint."""
        from transformers.trainer_callback import TrainerState
        from transformers.trainer_utils import TrainOutput

        self._load_from_checkpoint(checkpoint)
        self.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
        losses = [entry["loss"] for entry in self.state.log_history if "loss" in entry]
        return TrainOutput(self.state.global_step, losses[-1] if losses else float("nan"),
                           {"finished_from_checkpoint": Path(checkpoint).name})

    def _save_checkpoint(self, model, trial):
        raise_if_interrupted()
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if folder.is_dir():
                self._save_stream_position(folder)
                mark_checkpoint_complete(folder, self.state.global_step)

    def save_model(self, output_dir=None, _internal_call=False):
        """Under sharded FSDP the Trainer saves no model: gather the final one from every rank, saved by rank 0."""
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None) if self.is_fsdp_enabled else None
        if plugin is None or _internal_call or "FULL_STATE_DICT" in str(plugin.state_dict_type):
            return super().save_model(output_dir, _internal_call)
        state_dict = self.accelerator.get_state_dict(self.model)  # collective: every rank takes part
        if self.args.should_save:
            # fully_shard's FSDPGPTForCausalLM would make save_pretrained copy torch's sources as the model's code.
            from torch.distributed.fsdp import FSDPModule
            from transformers import PreTrainedModel

            # Tied parameters are gathered as two copies; alias them so save_pretrained drops the tied key.
            first = {}
            for name, param in self.model.named_parameters(remove_duplicate=False):
                if id(param) in first and name in state_dict and first[id(param)] in state_dict:
                    state_dict[name] = state_dict[first[id(param)]]
                first.setdefault(id(param), name)
            fsdp_class = type(self.model)
            self.model.__class__ = next(c for c in fsdp_class.__mro__
                                        if issubclass(c, PreTrainedModel) and not issubclass(c, FSDPModule))
            try:
                self._save(output_dir if output_dir is not None else self.args.output_dir, state_dict=state_dict)
            finally:
                self.model.__class__ = fsdp_class
        self.accelerator.wait_for_everyone()
        if self.args.push_to_hub:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _save_stream_position(self, folder):
        """For a streamed training set, where a resume starts reading instead of re-reading the stream."""
        a = self.args
        windows = self.state.global_step * a.per_device_train_batch_size * a.world_size * a.gradient_accumulation_steps
        point = resume_point(self.train_dataset, windows)
        if point is not None:
            (folder / STATE_FILE).write_text(json.dumps({"windows_trained": windows, "point": point}))

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is not None and getattr(self.args, "resume_reset_optimizer", False):
            return  # asked for: the weights resume, the optimizer and schedule start afresh
        super()._load_optimizer_and_scheduler(checkpoint)

    def _issue_warnings_after_load(self, load_result):
        """A tied head's key is 'missing' from every checkpoint: not worth the Trainer's warning on each resume."""
        tied = set(getattr(self.model, "_tied_weights_keys", None) or ())
        if not self.model.config.tie_word_embeddings:
            tied = set()
        missing = [k for k in load_result.missing_keys if k not in tied]
        if tied & set(load_result.missing_keys):
            self.model.tie_weights()
        super()._issue_warnings_after_load(type(load_result)(missing, load_result.unexpected_keys))

    def create_model_card(self, *args, **kwargs):
        """Our model card (hf_gpt.hub), so `push_to_hub` uploads it rather than the Trainer's generic one."""
        if self.is_world_process_zero():
            write_model_card(self.args.output_dir, model_config=self.model.config, training_args=self.args,
                             **self.card_info)
