"""Make a saved model folder a complete Hub repository, and push it.

A complete folder (what `save_for_hub` writes, and what `push_folder` insists on) holds `config.json` (with
`auto_map` for hf_gpt models), `configuration_gpt.py` + `modeling_gpt.py`, the weights, the tokenizer files,
`generation_config.json` with sampling defaults, and a `README.md` model card rendered from `model_cards/`.

The token comes from `hf auth login` or `HF_TOKEN` (`huggingface_hub.get_token`); it is handed to `HfApi` and
nothing here prints, logs or writes it.
"""

import json
import math
import mmap
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, get_token, is_offline_mode
from huggingface_hub.errors import HFValidationError, HfHubHTTPError
from huggingface_hub.utils import validate_repo_id
from transformers.dynamic_module_utils import get_relative_imports

from .weight_files_gpt import WEIGHT_FILES

# Sampling, not greedy, for the folders we publish: a small model's greedy text loops quickly. The model class keeps
# transformers' greedy default so `model.generate()` in code stays deterministic.
SAMPLING_DEFAULTS = {"do_sample": True, "top_p": 0.9, "top_k": 0, "temperature": 1.0, "max_new_tokens": 100}
CARD_TEMPLATE = "hf_gpt_model_card.md"
USAGE_TEMPLATE = "usage.md"
CARD_TAGS = ["hf_gpt", "gpt", "causal-lm", "llms-from-scratch"]
LICENSE = "apache-2.0"
# Like the Trainer's own push: leave out intermediate checkpoints (optimizer states) and private files.
PUSH_IGNORE_PATTERNS = ["_*", "checkpoint-*"]
# What a Hub model repo can hold as a loadable transformers folder (hf_gpt.exports has the other formats).
PUSH_FORMATS = ("hf_gpt", "gpt2")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
HOW_TO_LOG_IN = (
    "Log in once with `hf auth login` (or `huggingface-cli login`), or set the HF_TOKEN environment variable to a "
    "token with write access (create one at https://huggingface.co/settings/tokens)."
)
LOGIN_HELP = "No Hugging Face token found. " + HOW_TO_LOG_IN
# The TrainingArguments worth showing on a card, in this order; nothing else of them is ever written.
HYPERPARAMETERS = (
    "learning_rate", "weight_decay", "per_device_train_batch_size", "per_device_eval_batch_size",
    "gradient_accumulation_steps", "total_train_batch_size", "num_train_epochs", "max_steps", "lr_scheduler_type",
    "warmup_steps", "warmup_ratio", "optim", "adam_beta1", "adam_beta2", "max_grad_norm", "seed", "bf16", "fp16",
)
_USAGE_BLOCK = re.compile(r"(<!-- hf_gpt:usage -->\n)(.*?)(\n<!-- /hf_gpt:usage -->)", re.S)
_DATA_FILE_SUFFIXES = (".txt", ".json", ".jsonl", ".csv", ".tsv", ".parquet", ".arrow", ".md")


class HubError(Exception):
    """A problem the user can fix (bad repo id, missing login, incomplete folder); the message says how."""


class NotAModelFolderError(HubError):
    def __init__(self, folder, missing):
        self.folder, self.missing = str(folder), list(missing)
        super().__init__(f"{self.folder} is not a complete model folder: missing {'; '.join(self.missing)}.")


# ---------------------------------------------------------------------------------------------- generation config


def sampling_generation_config(model_config, **overrides):
    """The `generation_config.json` published folders carry: nucleus sampling (top_p 0.9) and the eos/pad ids."""
    from transformers import GenerationConfig

    eos = getattr(model_config, "eos_token_id", None)
    pad = getattr(model_config, "pad_token_id", None)
    values = {
        **SAMPLING_DEFAULTS,
        "bos_token_id": getattr(model_config, "bos_token_id", None),
        "eos_token_id": eos,
        "pad_token_id": pad if pad is not None else eos,
        **overrides,
    }
    return GenerationConfig(**values)


def write_generation_config(save_directory, model_config, **overrides):
    """Write `generation_config.json` with the sampling defaults into a saved folder; returns the config."""
    config = sampling_generation_config(model_config, **overrides)
    config.save_pretrained(save_directory)
    return config


# ---------------------------------------------------------------------------------------------------- model card


def _template_dir():
    """`model_cards/` beside the package (a checkout or editable install), else where a wheel installs it."""
    for candidate in (Path(__file__).resolve().parents[1] / "model_cards", Path(sys.prefix) / "share" / "hf_gpt" / "model_cards"):
        if (candidate / CARD_TEMPLATE).is_file():
            return candidate
    raise FileNotFoundError(f"model card templates ({CARD_TEMPLATE}) not found beside hf_gpt nor in {sys.prefix}/share/hf_gpt")


def _arch(model_config):
    """Architecture facts under transformers' standard names, which both GPTConfig and GPT2Config answer to."""
    if isinstance(model_config, dict):
        from .configuration_gpt import GPTConfig

        model_config = GPTConfig(**{k: v for k, v in model_config.items() if k not in ("model_type", "auto_map")})
    d = model_config.hidden_size
    vocab = model_config.vocab_size
    context = model_config.max_position_embeddings
    layers = model_config.num_hidden_layers
    model_type = getattr(model_config, "model_type", "hf_gpt")
    qkv_bias = True if model_type == "gpt2" else bool(getattr(model_config, "qkv_bias", False))
    tied = bool(getattr(model_config, "tie_word_embeddings", False))
    drop = getattr(model_config, "drop_rate", getattr(model_config, "resid_pdrop", None))
    return {
        "model_type": model_type,
        "n_layers": layers,
        "n_heads": model_config.num_attention_heads,
        "emb_dim": d,
        "context_length": context,
        "vocab_size": vocab,
        "qkv_bias": qkv_bias,
        "tied": tied,
        "drop_rate": drop,
        "num_parameters": _num_parameters(model_config),
    }


def _num_parameters(model_config):
    """Counted on the model itself, built on the meta device (no memory used), so the card agrees with it."""
    import torch
    from transformers import AutoModelForCausalLM

    from . import modeling_gpt  # noqa: F401  (registers hf_gpt with AutoModelForCausalLM)

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
    if isinstance(training_args, dict):
        values = dict(training_args)
    else:
        values = {k: getattr(training_args, k, None) for k in HYPERPARAMETERS}
        world = getattr(training_args, "world_size", 1) or 1
        if values.get("per_device_train_batch_size") is not None:
            values["total_train_batch_size"] = (
                values["per_device_train_batch_size"] * (values.get("gradient_accumulation_steps") or 1) * world
            )
    out = {}
    for key in HYPERPARAMETERS:
        value = values.get(key)
        if hasattr(value, "value"):  # Enums such as SchedulerType
            value = value.value
        if value is None or (key == "max_steps" and value in (-1, 0)) or (key in ("bf16", "fp16") and not value):
            continue
        if isinstance(value, (int, float, str, bool)):
            out[key] = value
    return out


def _is_hub_dataset(name):
    """A local file or folder is not a Hub dataset id: it stays out of the card's `datasets` metadata."""
    if not name or os.path.exists(name) or name.lower().endswith(_DATA_FILE_SUFFIXES):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _sampling_summary(generation_config):
    if not generation_config:
        return ""
    keys = ("do_sample", "top_p", "top_k", "temperature", "max_new_tokens")
    return ", ".join(f"{k}={generation_config[k]}" for k in keys if generation_config.get(k) is not None)


def render_usage(repo_id, *, stock_gpt2=False, generation_config=None, template_dir=None):
    """The card's "How to use" section for `repo_id`: remote-code loading, or stock GPT-2 loading."""
    import jinja2

    template = (Path(template_dir or _template_dir()) / USAGE_TEMPLATE).read_text(encoding="utf-8")
    return jinja2.Template(template, keep_trailing_newline=False).render(
        repo_id=repo_id, stock_gpt2=stock_gpt2, sampling=_sampling_summary(generation_config)
    ).strip()


def write_model_card(
    save_directory,
    *,
    model_config,
    eval_results=None,
    train_results=None,
    training_args=None,
    dataset_name=None,
    loss_plot="loss.png",
    base_model=None,
    repo_id=None,
    license=LICENSE,
    tags=None,
    language="en",
    template_path=None,
):
    """Render `README.md` into `save_directory` and return the `ModelCard`.

    `eval_results` (`eval_loss`, `perplexity`; perplexity is exp(eval_loss) when absent) become the card's
    `model-index`; `training_args` (a `TrainingArguments` or dict) contributes only a fixed list of hyperparameters,
    so no token or path of it can reach the card. `loss_plot` is shown if that file exists in `save_directory`.
    `repo_id` names the repo in the usage snippets (`push_folder` fills it in when pushing).
    """
    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)
    arch = _arch(model_config)
    stock_gpt2 = arch["model_type"] == "gpt2"
    model_name = repo_id or save_directory.resolve().name
    eval_metrics = _numbers(eval_results)
    if "perplexity" not in eval_metrics and "eval_perplexity" in eval_metrics:
        eval_metrics["perplexity"] = eval_metrics.pop("eval_perplexity")
    if "perplexity" not in eval_metrics and "eval_loss" in eval_metrics:
        eval_metrics["perplexity"] = math.exp(min(eval_metrics["eval_loss"], 700.0))

    dataset_label = (dataset_name if _is_hub_dataset(dataset_name) else Path(dataset_name).name) if dataset_name else "unrecorded text"
    index = [
        EvalResult(
            task_type="text-generation",
            task_name="Causal language modeling",
            dataset_type=dataset_name if _is_hub_dataset(dataset_name) else "text",
            dataset_name=dataset_label,
            dataset_split="validation",
            metric_type=metric,
            metric_name=label,
            metric_value=float(eval_metrics[key]),
        )
        for key, metric, label in (("eval_loss", "loss", "Validation loss"), ("perplexity", "perplexity", "Perplexity"))
        if key in eval_metrics
    ]
    all_tags = list(CARD_TAGS) + ["gpt2" if stock_gpt2 else "custom_code"] + list(tags or [])
    card_data = ModelCardData(
        language=language,
        license=license,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=all_tags,
        datasets=[dataset_name] if _is_hub_dataset(dataset_name) else None,
        base_model=base_model,
        model_name=model_name,
        eval_results=index or None,
    )
    gen_path = save_directory / "generation_config.json"
    generation = json.loads(gen_path.read_text()) if gen_path.is_file() else None
    template_dir = Path(template_path).parent if template_path else _template_dir()
    loss_plot_present = bool(loss_plot) and (save_directory / loss_plot).is_file()
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path or template_dir / CARD_TEMPLATE),
        model_name=model_name,
        trained=bool(train_results or training_args),
        stock_gpt2=stock_gpt2,
        base_model=base_model,
        dataset_name=dataset_name if _is_hub_dataset(dataset_name) or not dataset_name else Path(dataset_name).name,
        num_parameters_human=_human(arch["num_parameters"]),
        usage=render_usage(repo_id or "<your-username>/<model-name>", stock_gpt2=stock_gpt2,
                           generation_config=generation, template_dir=template_dir),
        hyperparameters=_hyperparameters(training_args),
        train_metrics={k: _fmt(v) for k, v in _numbers(train_results).items()},
        eval_metrics={k: _fmt(v) for k, v in eval_metrics.items()},
        loss_plot=loss_plot if loss_plot_present else None,
        **{k: v for k, v in arch.items() if k != "model_type"},
    )
    card.save(save_directory / "README.md")
    return card


def card_from_folder(folder, **card_kwargs):
    """A card for a folder that has none, from what the folder holds (config, `*_results.json`, `loss.png`)."""
    from transformers import AutoConfig

    folder = Path(folder)
    config = _read_json(folder / "config.json")
    if config.get("model_type") == "gpt2":
        model_config = AutoConfig.from_pretrained(folder)
    else:
        model_config = config
    for key, name in (("eval_results", "eval_results.json"), ("train_results", "train_results.json")):
        if key not in card_kwargs and (folder / name).is_file():
            card_kwargs[key] = _read_json(folder / name)
    return write_model_card(folder, model_config=model_config, **card_kwargs)


def _set_card_repo(folder, repo_id, *, stock_gpt2=None):
    """Point an existing card at `repo_id` (its usage snippets and model-index name); optionally switch its usage
    section and tags to the stock GPT-2 form."""
    path = Path(folder) / "README.md"
    card = ModelCard.load(path)
    if card.data.get("eval_results"):
        card.data.model_name = repo_id
    gen_path = Path(folder) / "generation_config.json"
    generation = json.loads(gen_path.read_text()) if gen_path.is_file() else None
    if stock_gpt2 is None:
        stock_gpt2 = "gpt2" in (card.data.tags or []) and "custom_code" not in (card.data.tags or [])
    if stock_gpt2:
        card.data.tags = [t for t in (card.data.tags or []) if t != "custom_code"] + (
            [] if "gpt2" in (card.data.tags or []) else ["gpt2"]
        )
    usage = render_usage(repo_id, stock_gpt2=stock_gpt2, generation_config=generation)
    card.text = _USAGE_BLOCK.sub(lambda m: m.group(1) + usage + m.group(3), card.text)
    card.save(path)
    return card


# ------------------------------------------------------------------------------------------------------- saving


def save_for_hub(model, tokenizer, save_directory, *, generation_overrides=None, **card_kwargs):
    """`save_pretrained` of model and tokenizer, plus sampling `generation_config.json` and the `README.md` card.

    `card_kwargs` go to `write_model_card`. Returns the folder's `Path`.
    """
    save_directory = Path(save_directory)
    model.save_pretrained(save_directory)
    tokenizer.save_pretrained(save_directory)
    write_generation_config(save_directory, model.config, **(generation_overrides or {}))
    write_model_card(save_directory, model_config=model.config, **card_kwargs)
    check_model_folder(save_directory)
    return save_directory


# ---------------------------------------------------------------------------------------------------- checking


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HubError(f"{path} is not readable JSON ({err.__class__.__name__}: {err}).") from None


def check_model_folder(folder, *, need_tokenizer=True, need_card=False):
    """Raise `NotAModelFolderError` naming everything missing for `from_pretrained` (and the Hub) to work.

    Needed: `config.json`, weights, tokenizer files, and for hf_gpt models the `auto_map` and the two source files
    it names. Returns the parsed `config.json`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotAModelFolderError(folder, ["the folder itself (no such directory)"])
    missing = []
    config = None
    if not (folder / "config.json").is_file():
        missing.append("config.json (the model's configuration; write it with `model.save_pretrained(folder)`)")
    else:
        config = _read_json(folder / "config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append("the weights (model.safetensors; write them with `model.save_pretrained(folder)`)")
    elif (folder / "model.safetensors").is_file():
        from .weight_files_gpt import SafetensorsSource

        try:  # a header that parses and a file as long as it says: a truncated copy fails here, not deep in loading
            SafetensorsSource._read_header(folder / "model.safetensors")
        except ValueError as err:
            raise HubError(str(err)) from None
    if need_tokenizer and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("the tokenizer files (tokenizer.json; write them with `tokenizer.save_pretrained(folder)`)")
    if config is not None and config.get("model_type") != "gpt2":
        auto_map = config.get("auto_map") or {}
        if "AutoModelForCausalLM" not in auto_map:
            missing.append("`auto_map` in config.json (save with hf_gpt imported, so the model's code ships with it)")
        for ref in sorted(set(auto_map.values()) if isinstance(auto_map, dict) else []):
            source = ref.split("--")[-1].split(".")[0] + ".py"
            if not (folder / source).is_file():
                missing.append(f"{source} (the model's code that `auto_map` points to)")
                continue
            for needed in get_relative_imports(folder / source):
                if not (folder / f"{needed}.py").is_file():
                    missing.append(f"{needed}.py (the model's code that {source} imports)")
    if need_card and not (folder / "README.md").is_file():
        missing.append("README.md (the model card; write it with `hf_gpt.hub.write_model_card`)")
    if missing:
        raise NotAModelFolderError(folder, missing)
    return config


def check_repo_id(repo_id):
    """Raise `HubError` saying what is wrong with a repo id, before anything touches the network."""
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise HubError("The repo id is empty: give `name` or `username/name`, e.g. `alice/gpt-verdict`.")
    if repo_id.startswith(("http://", "https://")) or "huggingface.co" in repo_id:
        raise HubError(f"{repo_id!r} is a URL, not a repo id: give only `username/name`, e.g. `alice/gpt-verdict`.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubError(f"{repo_id!r} is not a valid repo id: {err} Example: `alice/gpt-verdict`.") from None
    return repo_id


def require_token():
    """The token from `hf auth login` / `HF_TOKEN`, or a `HubError` saying how to log in."""
    token = get_token()
    if not token:
        raise HubError(LOGIN_HELP)
    return token


def _files(folder):
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts)


def upload_file_list(folder):
    """The files `push_folder` uploads from `folder`: all of them but intermediate checkpoints and `_*` files."""
    from huggingface_hub.utils import filter_repo_objects

    return sorted(filter_repo_objects(_files(folder), ignore_patterns=PUSH_IGNORE_PATTERNS))


def _refuse_if_token_inside(folder, token, files):
    """A token can hide in a pickled TrainingArguments (`training_args.bin` with `--hub_token`): never upload it."""
    needle = token.encode()
    for name in files:
        path = Path(folder) / name
        if path.stat().st_size == 0:
            continue
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:  # weights can be GBs
            found = data.find(needle) != -1
        if found:
            raise HubError(
                f"{name} contains your Hugging Face token; refusing to upload it. Delete the file or write it again "
                f"without the token (log in with `hf auth login` instead of passing --hub_token), then push again."
            )


# ------------------------------------------------------------------------------------------------------ pushing


def is_hf_gpt_model_file(name):
    """Files of the hf_gpt form that the stock export replaces or that mean nothing to it."""
    return (
        name in ("config.json", "training_args.bin", *WEIGHT_FILES)
        or name.endswith(".py")
        or re.fullmatch(r"(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)", name) is not None
    )


def _transport_errors():
    """Connection failures of the HTTP client huggingface_hub uses (httpx2 in 2.x, httpx in 1.x)."""
    import importlib

    errors = []
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _stage_upload(folder, tmp):
    """A folder in `tmp` holding links to the files `push_folder` uploads from `folder`, with `README.md` as a copy
    (the card is pointed at the repo there, not in the user's folder)."""
    stage = tmp / "upload"
    for name in upload_file_list(folder):
        target = stage / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name == "README.md":
            shutil.copyfile(folder / name, target)
        else:
            os.symlink((folder / name).resolve(), target)
    stage.mkdir(exist_ok=True)
    return stage


def push_folder(folder, repo_id, *, private=None, revision=None, format="hf_gpt", commit_message=None, log=print):
    """Upload a saved model folder to the Hub repo `repo_id` (created if needed); returns the commit URL.

    Everything that can be checked locally is checked first (repo id, folder contents, offline mode, login), so a
    bad input fails before any upload. A folder without a card gets one (written into the folder); an existing
    card's usage snippets are pointed at `repo_id`. `format="gpt2"` pushes the stock GPT-2 export instead. `private`
    None leaves a new repo's visibility to the Hub's default for that namespace; it never changes an existing repo.
    """
    if format not in PUSH_FORMATS:
        raise HubError(f"cannot push format {format!r}; choose one of {', '.join(PUSH_FORMATS)}.")
    check_repo_id(repo_id)
    folder = Path(folder)
    config = check_model_folder(folder)
    if revision is not None and not str(revision).strip():
        raise HubError("--revision is empty: give a branch name such as `main` or `experiment-1`.")
    if is_offline_mode():
        raise HubError("HF_HUB_OFFLINE is set, so nothing can reach the Hub: unset HF_HUB_OFFLINE to push.")
    token = require_token()

    with tempfile.TemporaryDirectory(prefix="hf_gpt-push-") as tmp:
        exported = False
        if format == "gpt2" and config.get("model_type") == "gpt2":
            log(f"{folder} already holds a stock GPT-2 model; pushing it as is.")
        elif format == "gpt2":
            log("Exporting to stock GPT-2 format (no remote code needed to load it)...")
            from .exports.gpt2 import export_folder

            exported = True
        # The upload is staged apart from the user's folder (links to its files, a card of its own), so the folder
        # is never changed, least of all before an upload that fails.
        upload_dir = export_folder(folder, Path(tmp) / "export") if exported else _stage_upload(folder, Path(tmp))
        if (upload_dir / "README.md").is_file():
            _set_card_repo(upload_dir, repo_id, stock_gpt2=True if exported else None)
        else:
            card_from_folder(upload_dir, repo_id=repo_id)
            log(f"Wrote a model card for the upload ({folder} is left as it is).")
        files = upload_file_list(upload_dir)
        _refuse_if_token_inside(upload_dir, token, files)

        api = HfApi(token=token)
        try:
            repo_url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            if repo_url.repo_id != repo_id:  # `name` alone: the Hub put it in the user's namespace
                _set_card_repo(upload_dir, repo_url.repo_id)
            if revision:
                api.create_branch(repo_url.repo_id, branch=revision, exist_ok=True)
            log(f"Uploading {len(files)} files to {repo_url.repo_id}" + (f" (branch {revision})" if revision else ""))
            info = api.upload_folder(
                repo_id=repo_url.repo_id,
                folder_path=upload_dir,
                revision=revision,
                commit_message=commit_message or ("Upload stock GPT-2 export" if exported else "Upload model"),
                ignore_patterns=list(PUSH_IGNORE_PATTERNS),
            )
        except _transport_errors() as err:
            raise HubError(f"Could not reach the Hub at {api.endpoint}: {err}. Check the connection (and HF_ENDPOINT).") from None
        except HfHubHTTPError as err:
            status = getattr(err.response, "status_code", None)
            if status in (401, 403):
                raise HubError(
                    f"The Hub refused the token for {repo_id!r} (HTTP {status}): it may be invalid, read-only, or "
                    f"without rights on that namespace. {HOW_TO_LOG_IN}"
                ) from None
            raise
    log(f"Done: {info.commit_url}")
    return info.commit_url


__all__ = [
    "HubError",
    "NotAModelFolderError",
    "SAMPLING_DEFAULTS",
    "card_from_folder",
    "check_model_folder",
    "check_repo_id",
    "push_folder",
    "render_usage",
    "require_token",
    "sampling_generation_config",
    "save_for_hub",
    "upload_file_list",
    "write_generation_config",
    "write_model_card",
]
