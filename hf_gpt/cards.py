"""A model folder's sampling defaults and its `README.md` model card, rendered from the templates in `model_cards/`."""

import os
import re
import sys
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .cli import read_json
from .metrics import perplexity

SAMPLING_DEFAULTS = {"do_sample": True, "top_p": 0.9, "top_k": 0, "temperature": 1.0, "max_new_tokens": 100}
CARD_TEMPLATE = "hf_gpt_model_card.md"
USAGE_TEMPLATE = "usage.md"
CARD_TAGS = ["hf_gpt", "gpt", "causal-lm", "llms-from-scratch"]
LOSS_PLOT = "loss.png"
# The TrainingArguments worth showing on a card, in this order; nothing else of them is ever written.
HYPERPARAMETERS = (
    "learning_rate", "weight_decay", "per_device_train_batch_size", "per_device_eval_batch_size",
    "gradient_accumulation_steps", "total_train_batch_size", "num_train_epochs", "max_steps", "lr_scheduler_type",
    "warmup_steps", "warmup_ratio", "optim", "adam_beta1", "adam_beta2", "max_grad_norm", "seed", "bf16", "fp16",
)
_USAGE_BLOCK = re.compile(r"(<!-- hf_gpt:usage -->\n)(.*?)(\n<!-- /hf_gpt:usage -->)", re.S)
_DATA_FILE_SUFFIXES = (".txt", ".json", ".jsonl", ".csv", ".tsv", ".parquet", ".arrow", ".md")


def sampling_generation_config(model_config, previous=None, **overrides):
    """Nucleus sampling for published folders: a small model's greedy text loops quickly."""
    from transformers import GenerationConfig

    eos = getattr(model_config, "eos_token_id", None)
    pad = getattr(model_config, "pad_token_id", None)
    suppressed = getattr(previous, "suppress_tokens", None)
    values = {
        **SAMPLING_DEFAULTS,
        "bos_token_id": getattr(model_config, "bos_token_id", None),
        "eos_token_id": eos,
        "pad_token_id": pad if pad is not None else eos,
        **({"suppress_tokens": suppressed} if suppressed else {}),
        **overrides,
    }
    return GenerationConfig(**values)


def _template_dir():
    """`model_cards/` beside the package (a checkout or editable install), else where a wheel installs it."""
    share = Path(sys.prefix, "share/hf_gpt/model_cards")
    for candidate in (Path(__file__).resolve().parents[1] / "model_cards", share):
        if (candidate / CARD_TEMPLATE).is_file():
            return candidate
    raise FileNotFoundError(f"model card templates ({CARD_TEMPLATE}) not found beside hf_gpt nor in {share.parent}")


def _arch(model_config):
    """Architecture facts under transformers' standard names, which both GPTConfig and GPT2Config answer to."""
    model_type = getattr(model_config, "model_type", "hf_gpt")
    return {
        "n_layers": model_config.num_hidden_layers,
        "n_heads": model_config.num_attention_heads,
        "emb_dim": model_config.hidden_size,
        "context_length": model_config.max_position_embeddings,
        "vocab_size": model_config.vocab_size,
        "qkv_bias": model_type == "gpt2" or bool(getattr(model_config, "qkv_bias", False)),
        "tied": bool(getattr(model_config, "tie_word_embeddings", False)),
        "drop_rate": getattr(model_config, "drop_rate", getattr(model_config, "resid_pdrop", None)),
        "num_parameters": _num_parameters(model_config),
    }


def _num_parameters(model_config):
    """Counted on the model itself, built on the meta device (no memory used), so the card agrees with it."""
    import torch
    from transformers import AutoModelForCausalLM

    from .model import modeling_gpt  # noqa: F401  (registers hf_gpt with AutoModelForCausalLM)

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(model_config).num_parameters()


def _human(n):
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _numbers(results):
    """Only the scalar numbers of a results dict: nothing else of it reaches a card."""
    return {k: v for k, v in (results or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _fmt(value):
    return f"{value:.6g}" if isinstance(value, float) else value


def _hyperparameters(training_args):
    if training_args is None:
        return {}
    values = {k: getattr(training_args, k, None) for k in HYPERPARAMETERS}
    values = {k: getattr(v, "value", v) for k, v in values.items()}  # Enums such as SchedulerType
    if values["per_device_train_batch_size"] is not None:
        world = getattr(training_args, "world_size", 1) or 1
        values["total_train_batch_size"] = (values["per_device_train_batch_size"]
                                            * (values["gradient_accumulation_steps"] or 1) * world)
    return {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool))
            and not (k == "max_steps" and v in (-1, 0)) and not (k in ("bf16", "fp16") and not v)}


def _is_hub_dataset(name):
    """A local file or folder is not a Hub dataset id: it stays out of the card's `datasets` metadata."""
    if not name or os.path.exists(name) or name.lower().endswith(_DATA_FILE_SUFFIXES):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _generation(folder):
    path = Path(folder) / "generation_config.json"
    return read_json(path, "generation config") if path.is_file() else None


def _sampling_summary(generation_config):
    if not generation_config:
        return ""
    keys = ("do_sample", "top_p", "top_k", "temperature", "max_new_tokens")
    return ", ".join(f"{k}={generation_config[k]}" for k in keys if generation_config.get(k) is not None)


def render_usage(repo_id, *, stock_gpt2=False, generation_config=None):
    """The card's "How to use" section for `repo_id`: remote-code loading, or stock GPT-2 loading."""
    import jinja2

    template = (_template_dir() / USAGE_TEMPLATE).read_text(encoding="utf-8")
    return jinja2.Template(template, keep_trailing_newline=False).render(
        repo_id=repo_id, stock_gpt2=stock_gpt2, sampling=_sampling_summary(generation_config)).strip()


def write_model_card(save_directory, *, model_config, eval_results=None, train_results=None, training_args=None,
                     dataset_name=None, base_model=None, repo_id=None):
    """Render `README.md` into `save_directory`; only a fixed list of `training_args` reaches it, so no token can."""
    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)
    arch = _arch(model_config)
    stock_gpt2 = getattr(model_config, "model_type", "hf_gpt") == "gpt2"
    model_name = repo_id or save_directory.resolve().name
    eval_metrics = _numbers(eval_results)
    if "perplexity" not in eval_metrics and "eval_perplexity" in eval_metrics:
        eval_metrics["perplexity"] = eval_metrics.pop("eval_perplexity")
    if "perplexity" not in eval_metrics and "eval_loss" in eval_metrics:
        eval_metrics["perplexity"] = perplexity(eval_metrics["eval_loss"])

    hub_dataset = _is_hub_dataset(dataset_name)
    shown_dataset = dataset_name if hub_dataset or not dataset_name else Path(dataset_name).name
    metrics = (("eval_loss", "loss", "Validation loss"), ("perplexity", "perplexity", "Perplexity"))
    index = [EvalResult(task_type="text-generation", task_name="Causal language modeling",
                        dataset_type=dataset_name if hub_dataset else "text",
                        dataset_name=shown_dataset or "unrecorded text", dataset_split="validation",
                        metric_type=metric, metric_name=label, metric_value=float(eval_metrics[key]))
             for key, metric, label in metrics if key in eval_metrics]
    tags = CARD_TAGS + ["gpt2" if stock_gpt2 else "custom_code"]
    card_data = ModelCardData(language="en", license="apache-2.0", library_name="transformers",
                              pipeline_tag="text-generation", tags=tags,
                              datasets=[dataset_name] if hub_dataset else None, base_model=base_model,
                              model_name=model_name, eval_results=index or None)
    usage = render_usage(repo_id or "<your-username>/<model-name>", stock_gpt2=stock_gpt2,
                         generation_config=_generation(save_directory))
    card = ModelCard.from_template(
        card_data, template_path=str(_template_dir() / CARD_TEMPLATE), model_name=model_name,
        trained=bool(train_results or training_args), stock_gpt2=stock_gpt2, base_model=base_model,
        dataset_name=shown_dataset, num_parameters_human=_human(arch["num_parameters"]), usage=usage,
        hyperparameters=_hyperparameters(training_args),
        train_metrics={k: _fmt(v) for k, v in _numbers(train_results).items()},
        eval_metrics={k: _fmt(v) for k, v in eval_metrics.items()},
        loss_plot=LOSS_PLOT if (save_directory / LOSS_PLOT).is_file() else None, **arch)
    card.save(save_directory / "README.md")
    return card


def card_from_folder(folder, **card_kwargs):
    """A card for a folder that has none, from what the folder holds (config, `*_results.json`, `loss.png`)."""
    from transformers import AutoConfig

    from .model.configuration_gpt import GPTConfig

    folder = Path(folder)
    gpt2 = read_json(folder / "config.json", "model config").get("model_type") == "gpt2"
    model_config = (AutoConfig if gpt2 else GPTConfig).from_pretrained(folder)
    for key, name in (("eval_results", "eval_results.json"), ("train_results", "train_results.json")):
        if key not in card_kwargs and (folder / name).is_file():
            card_kwargs[key] = read_json(folder / name, "results file")
    return write_model_card(folder, model_config=model_config, **card_kwargs)


def read_eval_results(folder):
    """`{"eval_loss", "perplexity", "dataset"}` (those it has) from the folder's card, else its `eval_results.json`."""
    folder = Path(folder)
    results = {}
    if (folder / "README.md").is_file():
        try:
            entries = ModelCard.load(folder / "README.md").data.eval_results or []
        except Exception:  # a hand-written card whose metadata does not parse: read the JSON instead
            entries = []
        names = {"loss": "eval_loss", "perplexity": "perplexity"}
        for entry in entries:
            if entry.metric_type in names and isinstance(entry.metric_value, (int, float)):
                results[names[entry.metric_type]] = float(entry.metric_value)
                results["dataset"] = entry.dataset_name
    if "eval_loss" not in results and (folder / "eval_results.json").is_file():
        numbers = _numbers(read_json(folder / "eval_results.json", "results file"))
        results.update({k: float(numbers[k]) for k in ("eval_loss", "perplexity") if k in numbers})
    if "eval_loss" in results and "perplexity" not in results:
        results["perplexity"] = perplexity(results["eval_loss"])
    return results


def _set_card_repo(folder, repo_id, *, stock_gpt2=None):
    """Point an existing card at `repo_id`, optionally in the stock GPT-2 form."""
    path = Path(folder) / "README.md"
    card = ModelCard.load(path)
    if card.data.get("eval_results"):
        card.data.model_name = repo_id
    tags = card.data.tags or []
    if stock_gpt2 is None:
        stock_gpt2 = "gpt2" in tags and "custom_code" not in tags
    if stock_gpt2:
        card.data.tags = [t for t in tags if t != "custom_code"] + ([] if "gpt2" in tags else ["gpt2"])
    usage = render_usage(repo_id, stock_gpt2=stock_gpt2, generation_config=_generation(folder))
    card.text = _USAGE_BLOCK.sub(lambda m: m.group(1) + usage + m.group(3), card.text)
    card.save(path)
    return card


