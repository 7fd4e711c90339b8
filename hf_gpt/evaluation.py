"""Score a finished model on a text: the book's loss and perplexity, strided for texts longer than the context.

The book's "Text evaluation" (ch. 5) cuts the text into windows of `max_length` inputs, each with the next token as
target, and averages the cross-entropy. Past the context a model must see windows, and a target at the start of a
window gets little context. The sliding-window method of Hugging Face's perplexity guide fixes that: windows start
every `stride` tokens and overlap, and only the targets not scored by an earlier window count (the others are
-100), so every token is scored exactly once with up to `max_length` tokens of context. Windows here are the book's
(`max_length` inputs, the same inputs shifted by one as targets), so at `stride == max_length` they are exactly the
windows of the book's `create_dataloader_v1` and the mean loss is the book's `calc_loss_loader`.

Model resolution, input checks and the results dict live here too, so `scripts/evaluate_model.py` stays a thin door
and every bad input is refused before any weights are read.
"""

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .configuration_gpt import GPT2_ALIASES, GPT2_CHECKPOINTS
from .hub import TOKENIZER_FILES
from .locations import looks_local
from .weight_files_gpt import WEIGHT_FILES

BOOK_SUFFIXES = (".pth", ".pt")
RESULT_KEYS = ("tokens", "loss", "perplexity", "bits_per_byte", "word_perplexity")


class EvaluationError(ValueError):
    """A bad input the user can fix; the message is one line saying what and how."""


# ------------------------------------------------------------------------------------------------ the windows


def strided_windows(n_pairs, max_length, stride):
    """`(begin, end, n_targets)` of each window over the `n_pairs` (input, next token) pairs of a text.

    Window `k` feeds pairs `[k*stride, end)` (inputs `ids[begin:end]`, targets `ids[begin+1:end+1]`) and scores
    only its last `n_targets` pairs, the ones no earlier window scored; the last window may be shorter.
    """
    check_window_args(max_length, stride)
    windows, prev_end = [], 0
    for begin in range(0, n_pairs, stride):
        end = min(begin + max_length, n_pairs)
        windows.append((begin, end, end - prev_end))
        prev_end = end
        if end == n_pairs:
            break
    return windows


def check_window_args(max_length, stride, batch_size=1, context_length=None):
    for name, value in (("max_length", max_length), ("stride", stride), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EvaluationError(f"{name} must be a positive integer, got {value!r}")
    if stride > max_length:
        raise EvaluationError(f"stride {stride} is above max_length {max_length}: tokens between windows would "
                              f"never be scored; use a stride in [1, {max_length}]")
    if context_length is not None and max_length > context_length:
        raise EvaluationError(f"max_length {max_length} is above the model's context of {context_length} tokens; "
                              f"use --max_length {context_length} or less")


def _batches(windows, batch_size):
    """Runs of up to `batch_size` consecutive windows of one length (only the last window can be shorter)."""
    run = []
    for w in windows:
        if run and (len(run) == batch_size or w[1] - w[0] != run[0][1] - run[0][0]):
            yield run
            run = []
        run.append(w)
    if run:
        yield run


def strided_nll(model, ids, *, max_length, stride, batch_size=4, bf16=False, progress=None, return_token_nll=False):
    """Total negative log-likelihood (nats) of `ids[1:]` given what precedes each, by the strided method.

    `model` is any causal LM returning `.logits` (hf_gpt's, or a stock `GPT2LMHeadModel`) and taking
    `logits_to_keep`, so only the scored positions go through the output head. `bf16` runs under autocast; the
    cross-entropy is always computed in fp32. `progress`: a tqdm bar (None: when there is more than one batch).
    Returns `(nats, n_scored, token_nll)`; `token_nll[j]` is the NLL of `ids[j+1]` when `return_token_nll`.
    """
    import torch
    import torch.nn.functional as F

    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    n_pairs = ids.numel() - 1
    if n_pairs < 1:
        raise EvaluationError(f"the text is {ids.numel()} token(s) long; scoring needs at least 2 (one token pair)")
    windows = strided_windows(n_pairs, max_length, stride)
    batches = list(_batches(windows, batch_size))
    device = next(model.parameters()).device
    token_nll = torch.full((n_pairs,), float("nan"), dtype=torch.float64) if return_token_nll else None
    total, scored = 0.0, 0
    from tqdm.auto import tqdm

    bar = tqdm(total=len(windows), unit="window", desc="scoring", file=sys.stderr, dynamic_ncols=True,
               disable=(len(batches) < 2) if progress is None else not progress)
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            keep = max(t for _, _, t in batch)
            length = batch[0][1] - batch[0][0]
            inputs = torch.stack([ids[b:e] for b, e, _ in batch]).to(device)
            targets = torch.stack([ids[b + 1:e + 1] for b, e, _ in batch])[:, length - keep:].clone()
            for row, (_, _, t) in enumerate(batch):
                targets[row, :keep - t] = -100  # the overlap, already scored by the previous window
            targets = targets.to(device)
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(input_ids=inputs, use_cache=False, logits_to_keep=0 if keep == length else keep).logits
            nll = F.cross_entropy(logits[:, -keep:].float().flatten(0, 1), targets.flatten(), ignore_index=-100,
                                  reduction="none").view(len(batch), keep)
            total += nll.sum(dtype=torch.float64).item()
            scored += int((targets != -100).sum())
            if token_nll is not None:
                for row, (_, e, t) in enumerate(batch):
                    token_nll[e - t:e] = nll[row, keep - t:].double().cpu()
            bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    return total, scored, token_nll


def results(nats, tokens, text=None, **extra):
    """The results dict: the five keys of `RESULT_KEYS` (and more from `extra`).

    `loss` is mean nats per scored token and `perplexity` its exp, as the book computes them. `bits_per_byte` =
    nats / ln 2 / UTF-8 bytes of the text, and `word_perplexity` = exp(nats / words) with words counted by
    `str.split()`: lm-eval's definitions (lm-eval counts words with `re.split(r"\\s+")`, one more where the text
    starts or ends with whitespace). Without `text` the last two are None.
    """
    loss = nats / tokens
    out = {"tokens": tokens, "loss": loss, "perplexity": _exp(loss), "bits_per_byte": None, "word_perplexity": None}
    if text is not None:
        n_bytes, n_words = len(text.encode("utf-8")), len(text.split())
        out["bits_per_byte"] = nats / math.log(2) / n_bytes
        out["word_perplexity"] = _exp(nats / n_words) if n_words else None
        extra = {"bytes": n_bytes, "words": n_words, **extra}
    return {**out, "nats": nats, **extra}


def _exp(x):
    return math.exp(x) if x < 709.0 else float("inf")


# ------------------------------------------------------------------------------------------ model resolution


@dataclass
class ModelSpec:
    """What a MODEL argument names, found from its config alone (no weights read)."""

    source: str
    kind: str  # "hf_gpt" (a save_pretrained folder), "gpt2" (OpenAI's weights) or "book" (a .pth + config)
    context_length: int
    vocab_size: int
    config: object = None  # the book config (path or dict) for kind "book"
    tokenizer_folder: str | None = None

    def load_model(self, device="cpu"):
        import torch

        from . import GPTForCausalLM

        if self.kind == "book":
            model = GPTForCausalLM.from_book_checkpoint(self.source, self.config, dtype=torch.float32)
        elif self.kind == "gpt2":
            model = GPTForCausalLM.from_gpt2(self.source, dtype=torch.float32)
        else:
            model = GPTForCausalLM.from_pretrained(self.source, dtype=torch.float32)
        return model.to(device).eval()

    def load_tokenizer(self):
        from . import GPTForCausalLM, load_tokenizer  # noqa: F401  (registers hf_gpt: no remote-code prompt)

        return load_tokenizer(self.tokenizer_folder) if self.tokenizer_folder else load_tokenizer()


def _read_json(path, what):
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EvaluationError(f"{what} {path} is not readable JSON ({err.__class__.__name__}: {err})") from None
    if not isinstance(value, dict):
        raise EvaluationError(f"{what} {path} holds a JSON {type(value).__name__}, not an object")
    return value


def _sizes(config, where):
    """(context, vocab) from an hf_gpt, book or GPT-2 config dict."""
    context = next((config[k] for k in ("context_length", "n_positions", "max_position_embeddings") if k in config), None)
    vocab = config.get("vocab_size")
    if not isinstance(context, int) or not isinstance(vocab, int):
        raise EvaluationError(f"{where}: no context_length / n_positions and vocab_size in the config")
    return context, vocab


def resolve_model(model, config=None):
    """A `ModelSpec` for an hf_gpt folder, a GPT-2 folder or Hub id, or a book `.pth` with its `config` JSON."""
    path = Path(os.path.expanduser(os.fspath(model)))
    if path.is_file():
        if path.suffix not in BOOK_SUFFIXES:
            raise EvaluationError(f"{model}: a model file must be the book's .pth (with --config); for other "
                                  "weights give the folder that holds them and their config.json")
        if config is None:
            raise EvaluationError(f"{model}: a book checkpoint needs its config: --config CONFIG.json (the book's "
                                  "GPT_CONFIG dict as JSON)")
        book = config if isinstance(config, dict) else _read_json(config, "--config")
        return ModelSpec(str(path), "book", *_sizes(book, f"--config {config}"), config=book)
    if config is not None:
        raise EvaluationError("--config is only for a book .pth checkpoint; folders carry their own config.json")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EvaluationError(f"{model} is not a model folder: it has no config.json")
        cfg = _read_json(path / "config.json", "model config")
        kind = cfg.get("model_type")
        if kind not in ("hf_gpt", "gpt2"):
            raise EvaluationError(f"{model}: model_type {kind!r} is not supported; give an hf_gpt or gpt2 folder, "
                                  "or use lm-eval (--tasks) for other models")
        if not any((path / f).is_file() for f in WEIGHT_FILES):
            raise EvaluationError(f"{model}: no weights in the folder (looked for {', '.join(WEIGHT_FILES)})")
        tokenizer = str(path) if any((path / f).is_file() for f in TOKENIZER_FILES) else None
        return ModelSpec(str(path), kind, *_sizes(cfg, str(path / "config.json")), tokenizer_folder=tokenizer)
    if looks_local(str(model)):
        raise EvaluationError(f"{model}: no such model folder or file")
    return _resolve_hub_id(str(model))


def _resolve_hub_id(repo_id):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError

    preset = GPT2_ALIASES.get(repo_id)
    hub_id = GPT2_CHECKPOINTS[preset][0] if preset else repo_id
    try:
        config_path = hf_hub_download(hub_id, "config.json")
    except HFValidationError:
        raise EvaluationError(f"{repo_id}: no such model folder or file, and not a Hub model id") from None
    except Exception as err:  # offline, not cached, no such repo, network
        from huggingface_hub import constants

        why = "the Hub is offline (HF_HUB_OFFLINE) and it is not cached" if constants.HF_HUB_OFFLINE else (
            f"the Hub has no config.json for it ({err.__class__.__name__})")
        raise EvaluationError(f"{repo_id}: no such model folder or file, and {why}") from None
    cfg = _read_json(config_path, "model config")
    kind = cfg.get("model_type")
    if kind not in ("hf_gpt", "gpt2"):
        raise EvaluationError(f"{repo_id}: model_type {kind!r} is not supported; use lm-eval (--tasks) for it")
    tokenizer = hub_id if kind == "hf_gpt" else None  # GPT-2 repos use GPT-2's tokenizer, which load_tokenizer has
    return ModelSpec(hub_id, kind, *_sizes(cfg, f"{repo_id} config.json"), tokenizer_folder=tokenizer)


# -------------------------------------------------------------------------------------------------- the text


def read_text(text_file=None, dataset_name=None, dataset_config_name=None, split="test", text_column=None):
    """The text to score: a UTF-8 file, or a dataset split's text column joined with blank lines (as the guide)."""
    if (text_file is None) == (dataset_name is None):
        raise EvaluationError("give exactly one of --text_file FILE or --dataset_name NAME")
    if text_file is not None:
        try:
            text = Path(text_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise EvaluationError(f"cannot read --text_file {text_file}: {err.__class__.__name__}: {err}") from None
        if not text:
            raise EvaluationError(f"--text_file {text_file} is empty: nothing to score")
        return text
    import datasets

    try:
        ds = datasets.load_dataset(dataset_name, dataset_config_name, split=split)
    except Exception as err:  # datasets raises many kinds; all mean the same to the user
        msg = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise EvaluationError(f"cannot load split {split!r} of dataset {dataset_name}: {msg}") from None
    columns = [n for n, f in ds.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
    if text_column is None:
        text_column = "text" if "text" in columns else (columns[0] if len(columns) == 1 else None)
        if text_column is None:
            raise EvaluationError(f"dataset {dataset_name} has text columns {columns}; pick one with --text_column")
    elif text_column not in columns:
        raise EvaluationError(f"dataset {dataset_name} has no text column {text_column!r}; its text columns: {columns}")
    text = "\n\n".join(t for t in ds[text_column] if t is not None)
    if not text:
        raise EvaluationError(f"column {text_column!r} of split {split!r} of {dataset_name} is empty: nothing to score")
    return text


def encode(tokenizer, text, vocab_size=None):
    """Token ids of the whole text (no special tokens added); refuses ids the model has no embedding for."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) < 2:
        raise EvaluationError(f"the text is {len(ids)} token(s) long; scoring needs at least 2 (one token pair)")
    if vocab_size is not None and max(ids) >= vocab_size:
        raise EvaluationError(f"the tokenizer gives id {max(ids)} but the model's vocabulary has {vocab_size} "
                              "tokens: this tokenizer does not belong to this model")
    return ids


# ------------------------------------------------------------------------------------------------ all at once


def evaluate(model, *, text=None, config=None, max_length=None, stride=None, batch_size=4, bf16=False,
             device=None, progress=None, spec=None, **text_kwargs):
    """Resolve, check, then load and score: the results dict. Every check runs before any weights are read."""
    import torch

    spec = spec or resolve_model(model, config)
    max_length = spec.context_length if max_length is None else max_length
    stride = max_length if stride is None else stride
    check_window_args(max_length, stride, batch_size, spec.context_length)
    if text is None:
        text = read_text(**text_kwargs)
    elif not text:
        raise EvaluationError("the text is empty: nothing to score")
    ids = encode(spec.load_tokenizer(), text, spec.vocab_size)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if bf16 and torch.device(device).type == "cuda" and not torch.cuda.is_bf16_supported():
        raise EvaluationError("--bf16: this GPU has no bf16; run in fp32")
    loaded = spec.load_model(device)
    start = time.perf_counter()
    nats, tokens, _ = strided_nll(loaded, ids, max_length=max_length, stride=stride, batch_size=batch_size,
                                  bf16=bf16, progress=progress)
    seconds = time.perf_counter() - start
    return results(nats, tokens, text, model=str(model), kind=spec.kind, max_length=max_length, stride=stride,
                   windows=len(strided_windows(len(ids) - 1, max_length, stride)), batch_size=batch_size,
                   precision="bf16" if bf16 else "fp32", seconds=seconds, tokens_per_second=tokens / seconds)


def lm_eval_tasks(spec, tasks, *, include_path=None, batch_size=4, bf16=False, device=None, limit=None,
                  num_fewshot=None):
    """Run lm-eval harness tasks on the model `spec` names (any kind, a book .pth included), via its Python API.

    Task names are matched before the weights load, so a typo fails fast. Returns lm-eval's `results` per task.
    """
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise EvaluationError("--tasks needs the lm-eval harness: pip install 'hf_gpt[eval]'") from None
    import torch

    # Indexing lm-eval's thousands of built-in tasks takes ~10 s: skip it when --include_path has them all.
    manager = TaskManager(include_path=include_path, include_defaults=False) if include_path else None
    if manager is None or not all(manager.match_tasks([t]) for t in tasks):
        manager = TaskManager(include_path=include_path)
    unknown = [t for t in tasks if not manager.match_tasks([t])]
    if unknown:
        where = f" (built-in or in --include_path {include_path})" if include_path else " (add --include_path DIR for your own)"
        raise EvaluationError(f"lm-eval knows no task {', '.join(unknown)}{where}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    lm = HFLM(pretrained=spec.load_model(device), tokenizer=spec.load_tokenizer(), batch_size=batch_size,
              max_length=spec.context_length, mixed_precision_dtype=torch.bfloat16 if bf16 else None)
    out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                                  num_fewshot=num_fewshot)
    return out["results"]


__all__ = ["EvaluationError", "ModelSpec", "RESULT_KEYS", "check_window_args", "encode", "evaluate", "lm_eval_tasks",
           "read_text", "resolve_model", "results", "strided_nll", "strided_windows"]
