"""Score a finished model on a text: the book's loss and perplexity, strided as in Hugging Face's perplexity guide.
Texts are tokenized in parts, so a 1 GB text needs a few MB; bad input is refused before any weights are read."""

import itertools
import math
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import is_offline_mode

from . import windows
from .cli import UsageError, read_json
from .locations import looks_local
from .metrics import perplexity
from .model.configuration_gpt import GPT2_ALIASES, GPT2_CHECKPOINTS, GPTConfig
from .model.weight_files_gpt import OPENAI_HPARAMS, OPENAI_INDEX, WEIGHT_FILES
from .sources import FORMATS, expand_files, file_parts, first_non_utf8, load_files, text_parts
from .tokenization import TOKENIZER_FILES, load_tokenizer

BOOK_SUFFIXES = (".pth", ".pt")
PART_CHARS = 1 << 18  # characters tokenized at once: the tokenizer's output (~570 bytes a token) is most of the memory
RESULT_KEYS = ("tokens", "loss", "perplexity", "bits_per_byte", "word_perplexity")


def strided_windows(n_pairs, max_length, stride):
    """`(begin, end, n_targets)` of each window: only the last `n_targets`, unscored by earlier windows, count."""
    check_window_args(max_length, stride)
    return _WindowPlan(max_length, stride).advance(n_pairs, final=True)


class _WindowPlan:
    """`strided_windows` for a text whose length is known only at its end: each window as soon as it is certain."""

    def __init__(self, max_length, stride):
        self.max_length, self.stride, self.begin, self.prev_end = max_length, stride, 0, 0

    def advance(self, n_pairs, final):
        """The next windows once `n_pairs` pairs are known: the full ones (all the rest when `final`)."""
        windows = []
        while self.prev_end < n_pairs and (final or self.begin + self.max_length <= n_pairs):
            end = min(self.begin + self.max_length, n_pairs)
            windows.append((self.begin, end, end - self.prev_end))
            self.begin, self.prev_end = self.begin + self.stride, end
        return windows


def check_window_args(max_length, stride, batch_size=1, context_length=None):
    windows.check_window_args(max_length, stride)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
    if stride > max_length:
        raise UsageError(f"stride {stride} is above max_length {max_length}: tokens between windows would "
                              f"never be scored; use a stride in [1, {max_length}]")
    if context_length is not None and max_length > context_length:
        raise UsageError(f"max_length {max_length} is above the model's context of {context_length} tokens; "
                              f"use --max_length {context_length} or less")


def _batches(windows, batch_size):
    """Runs of up to `batch_size` windows of one length, each given once full, so a stream is never read ahead."""
    run = []
    for w in windows:
        if run and w[1] - w[0] != run[0][1] - run[0][0]:
            yield run
            run = []
        run.append(w)
        if len(run) == batch_size:
            yield run
            run = []
    if run:
        yield run


def strided_nll(model, ids, *, max_length, stride, batch_size=4, bf16=False, progress=None, return_token_nll=False):
    """`(nats, n_scored, token_nll)` of `ids[1:]` by the strided method; `token_nll[j]` is the NLL of `ids[j+1]`."""
    import torch

    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    n_pairs = max(ids.numel() - 1, 0)
    token_nll = torch.full((n_pairs,), float("nan"), dtype=torch.float64) if return_token_nll else None

    def keep_token_nll(batch, nll):
        for row, (_, e, t) in enumerate(batch):
            token_nll[e - t:e] = nll[row, -t:].double().cpu()

    n_windows = len(strided_windows(n_pairs, max_length, stride))
    total, scored, _ = strided_nll_stream(model, [ids], max_length=max_length, stride=stride, batch_size=batch_size,
                                          bf16=bf16, progress=progress, n_windows=n_windows,
                                          on_batch=keep_token_nll if return_token_nll else None)
    return total, scored, token_nll


def strided_nll_stream(model, parts, *, max_length, stride, batch_size=4, bf16=False, progress=None, n_windows=None,
                       on_batch=None):
    """`strided_nll` over ids given in `parts`, holding only a batch's windows and one part in memory."""
    import torch

    check_window_args(max_length, stride, batch_size)
    device = next(model.parameters()).device
    plan = _WindowPlan(max_length, stride)
    buf, offset, keep_from = torch.empty(0, dtype=torch.long), 0, 0  # buf[j] is id offset + j

    def windows():
        nonlocal buf, offset, n_windows
        given = 0
        for part in parts:
            part = torch.as_tensor(part, dtype=torch.long).flatten()
            buf, offset = (torch.cat([buf[keep_from - offset:], part]), keep_from) if buf.numel() else (part, 0)
            ready = plan.advance(offset + buf.numel() - 1, final=False)
            given += len(ready)
            yield from ready
        if offset + buf.numel() < 2:
            raise UsageError(f"the text is {buf.numel()} token(s) long; scoring needs at least 2 (one token pair)")
        last = plan.advance(offset + buf.numel() - 1, final=True)
        n_windows = given + len(last)
        yield from last

    from tqdm.auto import tqdm

    total, scored, done, bar = 0.0, 0, 0, None
    was_training = model.training
    model.eval()
    try:
        for i, batch in enumerate(_batches(windows(), batch_size)):
            if bar is None and (progress or (progress is None and i == 1 and sys.stderr.isatty())):
                bar = tqdm(total=n_windows, initial=done, unit="window", desc="scoring", file=sys.stderr,
                           dynamic_ncols=True)
            nll, n = _score_batch(model, buf, offset, batch, device, bf16)
            total += nll.sum(dtype=torch.float64).item()
            scored += n
            if on_batch is not None:
                on_batch(batch, nll)
            keep_from, done = batch[-1][0] + stride, done + len(batch)
            if bar is not None:
                bar.total = n_windows
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return total, scored, done


def _score_batch(model, buf, offset, batch, device, bf16):
    """NLLs `(len(batch), keep)` of one batch's scored targets (overlap positions 0) and how many were scored."""
    import torch
    import torch.nn.functional as F

    keep = max(t for _, _, t in batch)
    length = batch[0][1] - batch[0][0]
    inputs = torch.stack([buf[b - offset:e - offset] for b, e, _ in batch]).to(device)
    targets = torch.stack([buf[b + 1 - offset:e + 1 - offset] for b, e, _ in batch])[:, length - keep:].clone()
    for row, (_, _, t) in enumerate(batch):
        targets[row, :keep - t] = -100  # the overlap, already scored by the previous window
    targets = targets.to(device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=inputs, use_cache=False, logits_to_keep=0 if keep == length else keep).logits
    nll = F.cross_entropy(logits[:, -keep:].float().flatten(0, 1), targets.flatten(), ignore_index=-100,
                          reduction="none").view(len(batch), keep)
    return nll, int((targets != -100).sum())


def results(nats, tokens, text_size=None, **extra):
    """The book's loss and perplexity, and lm-eval's bits per byte and word perplexity from `text_size`."""
    loss = nats / tokens
    out = {"tokens": tokens, "loss": loss, "perplexity": perplexity(loss), "bits_per_byte": None, "word_perplexity": None}
    if text_size is not None:
        n_bytes, n_words = text_size
        out["bits_per_byte"] = nats / math.log(2) / n_bytes
        out["word_perplexity"] = perplexity(nats / n_words) if n_words else None
        extra = {"bytes": n_bytes, "words": n_words, **extra}
    return {**out, "nats": nats, **extra}


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

        from .model.modeling_gpt import GPTForCausalLM

        if self.kind == "book":
            model = GPTForCausalLM.from_book_checkpoint(self.source, self.config, dtype=torch.float32)
        elif self.kind == "gpt2":
            model = GPTForCausalLM.from_gpt2(self.source, dtype=torch.float32)
        else:
            model = GPTForCausalLM.from_pretrained(self.source, dtype=torch.float32)
        return model.to(device).eval()

    def load_tokenizer(self):
        return load_tokenizer(self.tokenizer_folder)


def _sizes(config, where):
    """(context, vocab) from an hf_gpt, book or GPT-2 config dict."""
    context = next((config[k] for k in ("context_length", "n_positions", "max_position_embeddings") if k in config), None)
    vocab = config.get("vocab_size")
    if not isinstance(context, int) or not isinstance(vocab, int):
        raise UsageError(f"{where}: no context_length / n_positions and vocab_size in the config")
    return context, vocab


def resolve_model(model, config=None):
    """A `ModelSpec` for an hf_gpt folder, a GPT-2 folder or Hub id, or a book `.pth` with its `config` JSON."""
    path = Path(os.path.expanduser(os.fspath(model)))
    if path.is_file():
        if path.suffix not in BOOK_SUFFIXES:
            raise UsageError(f"{model}: a model file must be the book's .pth (with --config); for other "
                                  "weights give the folder that holds them and their config.json")
        if config is None:
            raise UsageError(f"{model}: a book checkpoint needs its config: --config CONFIG.json (the book's "
                                  "GPT_CONFIG dict as JSON)")
        book = config if isinstance(config, dict) else read_json(config, "--config")
        try:
            GPTConfig(**book)
        except ValueError as err:
            raise UsageError(f"--config {config}: {err}") from None
        return ModelSpec(str(path), "book", *_sizes(book, f"--config {config}"), config=book)
    if config is not None:
        raise UsageError("--config is only for a book .pth checkpoint; folders carry their own config.json")
    if path.is_dir():
        if not (path / "config.json").is_file() and any((path / f).is_file() for f in OPENAI_FILES):
            return _resolve_openai_folder(path)
        if not (path / "config.json").is_file():
            raise UsageError(f"{model} is not a model folder: it has no config.json")
        cfg = read_json(path / "config.json", "model config")
        kind = cfg.get("model_type")
        if kind not in ("hf_gpt", "gpt2"):
            raise UsageError(f"{model}: model_type {kind!r} is not supported; give an hf_gpt or gpt2 folder, "
                                  "or use lm-eval (--tasks) for other models")
        if not any((path / f).is_file() for f in WEIGHT_FILES):
            raise UsageError(f"{model}: no weights in the folder (looked for {', '.join(WEIGHT_FILES)})")
        tokenizer = str(path) if any((path / f).is_file() for f in TOKENIZER_FILES) else None
        return ModelSpec(str(path), kind, *_sizes(cfg, str(path / "config.json")), tokenizer_folder=tokenizer)
    if looks_local(str(model)):
        raise UsageError(f"{model}: no such model folder or file")
    return _resolve_hub_id(str(model))


OPENAI_FILES = (OPENAI_HPARAMS, OPENAI_INDEX)  # the book's gpt_download.py folder


def _resolve_openai_folder(path):
    """OpenAI's TensorFlow GPT-2 folder (the book's gpt_download.py), checked without reading a tensor."""
    from .openai_checkpoint import OpenAICheckpoint, gpt2_config
    from .tokenization import folder_tokenizer

    try:
        cfg = gpt2_config(path / "hparams.json")
        OpenAICheckpoint(path).close()
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    return ModelSpec(str(path), "gpt2", *_sizes(cfg, str(path / "hparams.json")),
                     tokenizer_folder=folder_tokenizer(path))


def _resolve_hub_id(repo_id):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError

    preset = GPT2_ALIASES.get(repo_id)
    hub_id = GPT2_CHECKPOINTS[preset][0] if preset else repo_id
    try:
        config_path = hf_hub_download(hub_id, "config.json")
    except HFValidationError:
        raise UsageError(f"{repo_id}: no such model folder or file, and not a Hub model id") from None
    except Exception as err:  # offline, not cached, no such repo, network
        why = "the Hub is offline (HF_HUB_OFFLINE) and it is not cached" if is_offline_mode() else (
            f"the Hub has no config.json for it ({err.__class__.__name__})")
        raise UsageError(f"{repo_id}: no such model folder or file, and {why}") from None
    cfg = read_json(config_path, "model config")
    kind = cfg.get("model_type")
    if kind not in ("hf_gpt", "gpt2"):
        raise UsageError(f"{repo_id}: model_type {kind!r} is not supported; use lm-eval (--tasks) for it")
    tokenizer = hub_id if kind == "hf_gpt" else None  # GPT-2 repos use GPT-2's tokenizer, which load_tokenizer has
    return ModelSpec(hub_id, kind, *_sizes(cfg, f"{repo_id} config.json"), tokenizer_folder=tokenizer)


def _dataset_column(dataset_name, dataset_config_name=None, split="test", text_column=None):
    """The split (memory-mapped) with only its text column: the one given, else `text`, else the only string one."""
    import datasets

    path = Path(os.path.expanduser(dataset_name))
    if not path.exists() and looks_local(dataset_name):
        raise UsageError(f"--dataset_name {dataset_name}: no such file or folder")
    try:
        if path.is_file():  # a data file is its own split
            ds = load_files(*expand_files(path, "--dataset_name"), streaming=False, cache_dir=None)
        else:
            ds = datasets.load_dataset(dataset_name, dataset_config_name, split=split)
    except Exception as err:  # datasets raises many kinds; all mean the same to the user
        msg = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        what = "" if path.is_file() else f"split {split!r} of "
        raise UsageError(f"cannot load {what}dataset {dataset_name}: {msg}") from None
    columns = [n for n, f in ds.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
    if text_column is None:
        text_column = "text" if "text" in columns else (columns[0] if len(columns) == 1 else None)
        if text_column is None:
            raise UsageError(f"dataset {dataset_name} has text columns {columns}; pick one with --text_column")
    elif text_column not in columns:
        raise UsageError(f"dataset {dataset_name} has no text column {text_column!r}; its text columns: {columns}")
    return ds.select_columns([text_column]), text_column


def read_parts(text_file=None, dataset_name=None, dataset_config_name=None, split="test", text_column=None):
    """The text to score, lazily in parts whose ids concatenate to the whole text's; checked up front."""
    if (text_file is None) == (dataset_name is None):
        raise UsageError("give exactly one of --text_file FILE or --dataset_name NAME")
    if dataset_name is not None and FORMATS.get(Path(dataset_name).suffix.lower()) == "text":
        text_file, dataset_name = dataset_name, None  # a text file is read whole, as --text_file reads it
    if dataset_name is not None:
        ds, column = _dataset_column(dataset_name, dataset_config_name, split, text_column)

        def joined():  # the rows (but missing ones) with a blank line between
            sep = ""
            for batch in ds.iter(batch_size=1024):
                for row in batch[column]:
                    if row is not None:
                        yield sep + row
                        sep = "\n\n"

        empty = f"column {column!r} of split {split!r} of {dataset_name} is empty: nothing to score"
        return _checked(text_parts(joined(), PART_CHARS), empty)

    def unreadable(err):
        return UsageError(f"cannot read --text_file {text_file}: {err.__class__.__name__}: {err}")

    try:  # a pipe (`<(xzcat big.xz)`) can be read once only: its UTF-8 is checked as its parts are read
        bad = first_non_utf8(text_file) if stat.S_ISREG(os.stat(text_file).st_mode) else None
    except OSError as err:
        raise unreadable(err) from None
    if bad is not None:
        offset, err = bad
        n = err.end - err.start
        where = f"byte 0x{err.object[err.start]:02x} in position {offset}" if n == 1 else (
            f"bytes in position {offset}-{offset + n - 1}")
        raise UsageError(f"cannot read --text_file {text_file}: UnicodeDecodeError: 'utf-8' codec can't "
                              f"decode {where}: {err.reason}")
    return _checked(file_parts(text_file, PART_CHARS), f"--text_file {text_file} is empty: nothing to score",
                    unreadable)


def _checked(parts, empty, unreadable=None):
    """`parts`, refusing an empty text (its only empty part) and naming the file a read fails on."""
    try:
        for part in parts:
            if not part:
                raise UsageError(empty)
            yield part
    except (OSError, UnicodeDecodeError) as err:
        if unreadable is None:
            raise
        raise unreadable(err) from None


def encode_parts(tokenizer, parts, vocab_size=None, text_size=None):
    """Each part's ids, counting bytes and words into `text_size`; a bad text is refused before any weights load."""
    text_size = [0, 0] if text_size is None else text_size

    def ids_of_parts():
        last = ""
        for part in parts:
            glued = last and part and not last.isspace() and not part[0].isspace()
            text_size[0] += len(part.encode("utf-8"))
            text_size[1] += len(part.split()) - bool(glued)
            last = part[-1:] or last
            ids = tokenizer(part, add_special_tokens=False, verbose=False)["input_ids"]
            if vocab_size is not None and ids and max(ids) >= vocab_size:
                raise UsageError(f"the tokenizer gives id {max(ids)} but the model's vocabulary has {vocab_size} "
                                 "tokens: this tokenizer does not belong to this model")
            yield ids

    rest, head, n = ids_of_parts(), [], 0
    while n < 2:
        ids = next(rest, None)
        if ids is None:
            raise UsageError(f"the text is {n} token(s) long; scoring needs at least 2 (one token pair)")
        head.append(ids)
        n += len(ids)
    return itertools.chain(head, rest)


def evaluate(model, *, text=None, config=None, max_length=None, stride=None, batch_size=4, bf16=False,
             device=None, progress=None, spec=None, **text_kwargs):
    """Resolve, check, then load and score: the results dict. Every check runs before any weights are read."""
    import torch

    spec = spec or resolve_model(model, config)
    max_length = spec.context_length if max_length is None else max_length
    stride = max_length if stride is None else stride
    check_window_args(max_length, stride, batch_size, spec.context_length)
    if text is None:
        parts = read_parts(**text_kwargs)
    elif not text:
        raise UsageError("the text is empty: nothing to score")
    else:
        parts = [text]
    text_size = [0, 0]
    part_ids = encode_parts(spec.load_tokenizer(), parts, spec.vocab_size, text_size)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if bf16 and torch.device(device).type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("--bf16: this GPU has no bf16; run in fp32")
    loaded = spec.load_model(device)
    start = time.perf_counter()
    nats, tokens, windows = strided_nll_stream(loaded, part_ids, max_length=max_length, stride=stride,
                                               batch_size=batch_size, bf16=bf16, progress=progress)
    seconds = time.perf_counter() - start
    return results(nats, tokens, text_size=tuple(text_size), model=str(model), kind=spec.kind, max_length=max_length,
                   stride=stride, windows=windows, batch_size=batch_size, precision="bf16" if bf16 else "fp32",
                   seconds=seconds, tokens_per_second=tokens / seconds)


def lm_eval_tasks(spec, tasks, *, include_path=None, batch_size=4, bf16=False, device=None, limit=None,
                  num_fewshot=None):
    """lm-eval's `results` per task for the model `spec` names; task names are matched before the weights load."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UsageError("--tasks needs the lm-eval harness: pip install 'hf_gpt[eval]'") from None
    import torch

    # Indexing lm-eval's thousands of built-in tasks takes ~10 s: skip it when --include_path has them all.
    manager = TaskManager(include_path=include_path, include_defaults=False) if include_path else None
    if manager is None or not all(manager.match_tasks([t]) for t in tasks):
        manager = TaskManager(include_path=include_path)
    unknown = [t for t in tasks if not manager.match_tasks([t])]
    if unknown:
        where = f" (built-in or in --include_path {include_path})" if include_path else " (add --include_path DIR for your own)"
        raise UsageError(f"lm-eval knows no task {', '.join(unknown)}{where}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    lm = HFLM(pretrained=spec.load_model(device), tokenizer=spec.load_tokenizer(), batch_size=batch_size,
              max_length=spec.context_length, mixed_precision_dtype=torch.bfloat16 if bf16 else None)
    out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                                  num_fewshot=num_fewshot)
    return out["results"]


__all__ = ["UsageError", "ModelSpec", "RESULT_KEYS", "check_window_args", "encode_parts", "evaluate", "lm_eval_tasks",
           "read_parts", "resolve_model", "results", "strided_nll", "strided_nll_stream", "strided_windows"]
