"""Language-modelling data that chunks text exactly like the book's `GPTDatasetV1`, built with `datasets`.

The book tokenizes one continuous text and slides a window of `max_length` tokens over it with a `stride`;
window `k` is `ids[k*stride : k*stride + max_length]` and its targets are the same slice shifted by one, so each
window trains `max_length` next-token predictions. Here a split's documents are joined with `<|endoftext|>` into
that one stream, tokenized in pieces by a cached `.map`, then windowed by a second `.map` that reads ahead across
batch boundaries, so the windows are exactly the book's while the data stays on disk (memory-mapped Arrow).

Rows hold `input_ids` and `shift_labels` (the book's `target_ids`): `default_data_collator` turns them into
LongTensors for `GPTForCausalLM(**batch)`. With the `Trainer`, pass `label_names=["shift_labels"]` in
`TrainingArguments` so evaluation reports a loss.
"""

import hashlib
import itertools
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .sources import PART_COLUMN, check_text_column, cut_after, document_starts, load_sources

logger = logging.getLogger(__name__)

PIECE_CHARS = 1 << 15  # tokenize long documents in pieces of about this many characters
ENCODE_GROUP = 32  # pieces per tokenizer call: bounds the tokenizer's per-token bookkeeping
BATCH_BYTES = 16 << 20  # about this much text per tokenizing batch (at most 64 documents): bounds its memory
TWIN_MIN_CHARS = 2 << 20  # below this, checking for (and building) the tiktoken twin costs more than it saves
ENDOFTEXT = "<|endoftext|>"
# Any change to this file invalidates the caches it wrote.
_CODE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def count_windows(n_tokens, max_length, stride):
    """How many windows the book's loop `range(0, n_tokens - max_length, stride)` makes."""
    return len(range(0, n_tokens - max_length, stride))


def _window_view(tokens, first, count, max_length, stride):
    """`count` windows of `max_length + 1` tokens starting at `tokens[first]`, every `stride` (a view, no copy)."""
    if count == 0:
        return np.empty((0, max_length + 1), dtype=tokens.dtype)
    return np.lib.stride_tricks.sliding_window_view(tokens, max_length + 1)[first::stride][:count]


def _pieces(text, size=None):
    size = size or PIECE_CHARS
    start, n = 0, len(text)
    while n - start > size:
        end = cut_after(text, start + size)
        if end is None:
            break
        yield text[start:end]
        start = end
    if start < n:
        yield text[start:]


class _Encoder:
    """One interface over a fast or slow `transformers` tokenizer or a tiktoken `Encoding` (the book's)."""

    def __init__(self, tokenizer, use_twin=False):
        # Only what encoding needs is kept (a fast tokenizer's Rust backend pickles as one JSON string), so that
        # `datasets` hashes and ships this object to workers quickly.
        self.tokenizer, self._twin, self.use_twin = None, None, use_twin
        if hasattr(tokenizer, "encode_ordinary_batch"):  # tiktoken
            from .tokenization import GPT2_PAT_STR

            self.kind, self.eos_id, self.tokenizer = "tiktoken", tokenizer.eot_token, tokenizer
            self.exact_cuts = tokenizer._pat_str == GPT2_PAT_STR
        elif getattr(tokenizer, "is_fast", False):
            from tokenizers import Tokenizer
            from tokenizers.pre_tokenizers import ByteLevel

            self.kind, self.eos_id = "fast", tokenizer.eos_token_id
            backend = tokenizer.backend_tokenizer
            if backend.truncation is not None or backend.padding is not None:
                backend = Tokenizer.from_str(backend.to_str())
                backend.no_truncation()
                backend.no_padding()
            self.backend = backend
            pre = backend.pre_tokenizer
            self.exact_cuts = (isinstance(pre, ByteLevel) and pre.use_regex and not pre.add_prefix_space
                               and backend.normalizer is None)
        elif callable(tokenizer):
            self.kind, self.eos_id, self.exact_cuts, self.tokenizer = "slow", tokenizer.eos_token_id, False, tokenizer
        else:
            raise TypeError(f"expected a transformers tokenizer or a tiktoken Encoding, got {type(tokenizer).__name__}")
        if self.eos_id is None:
            raise ValueError("the tokenizer has no eos token to join documents with; set tokenizer.eos_token")

    def digest(self):
        if self.kind == "tiktoken":
            t = self.tokenizer
            ranks = b"".join(k + b"\0" + str(v).encode() + b"\0" for k, v in sorted(t._mergeable_ranks.items()))
            return hashlib.sha256(repr((t._pat_str, sorted(t._special_tokens.items()))).encode() + ranks).hexdigest()
        if self.kind == "fast":
            return hashlib.sha256(self.backend.to_str().encode()).hexdigest()
        from datasets.fingerprint import Hasher

        return Hasher.hash(self.tokenizer)

    def encode(self, texts, twin=None):
        """Token ids of each text, as int32 arrays, without added special tokens (the book adds none)."""
        if twin is not None or self.kind == "tiktoken":
            enc = twin or self.tokenizer
            if hasattr(enc, "encode_to_numpy"):  # tiktoken >= 0.8: no list of Python ints
                return [enc.encode_to_numpy(t, allowed_special={ENDOFTEXT}).view(np.int32) for t in texts]
            ids = enc.encode_batch(texts, allowed_special={ENDOFTEXT})
        elif self.kind == "fast":
            encode_batch = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)  # skips offsets
            ids = [e.ids for e in encode_batch(texts, add_special_tokens=False)]
        else:
            ids = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [np.asarray(x, dtype=np.int32) for x in ids]

    def gpt2_twin(self):
        """tiktoken's "gpt2" when this fast tokenizer is exactly GPT-2's BPE (same vocab, merges, pre-tokenizer and
        special token): the same ids ~4x faster, so big corpora tokenize faster than with the book's own code."""
        if self._twin is None:
            self._twin = False
            try:
                import tiktoken  # noqa: F401
            except ImportError:
                return None
            if self.kind == "fast" and self.exact_cuts and not self.backend.encode_special_tokens:
                from tokenizers.models import BPE

                from .tokenization import gpt2_bpe_files, tiktoken_gpt2

                encoder, merges = map(str, gpt2_bpe_files())
                gpt2 = BPE.from_file(encoder, merges, dropout=None, continuing_subword_prefix="",
                                     end_of_word_suffix="", fuse_unk=False)  # as GPT2Tokenizer builds it
                added = {i: t.content for i, t in self.backend.get_added_tokens_decoder().items()}
                if (added == {50256: ENDOFTEXT} and self.eos_id == 50256
                        and self.backend.model.__getstate__() == gpt2.__getstate__()):
                    self._twin = tiktoken_gpt2()
                    logger.info("tokenizing with tiktoken: the tokenizer is GPT-2's BPE, same ids, faster")
        return self._twin or None

    def __getstate__(self):
        return {**self.__dict__, "_twin": None}

    def iter_encoded(self, texts):
        """`(text index, int32 ids)` for each piece of each text, in order. Long texts are cut where the ids stay
        the same, and pieces are cut and encoded a group at a time, so a huge text never has them all alive."""
        twin = self.gpt2_twin() if self.use_twin else None
        pieces = ((i, p) for i, t in enumerate(texts) for p in (_pieces(t) if self.exact_cuts else [t] if t else []))
        while group := list(itertools.islice(pieces, ENCODE_GROUP)):
            yield from zip((i for i, _ in group), self.encode([p for _, p in group], twin))

    def encode_documents(self, texts):
        """Per text, the int32 arrays of its pieces."""
        out = [[] for _ in texts]
        for i, ids in self.iter_encoded(texts):
            out[i].append(ids)
        return out

    def encode_stream(self, text):
        """The whole text as one int64 array, like the book's `tokenizer.encode(txt)`."""
        arrays = self.encode_documents([text])[0]
        return np.concatenate(arrays).astype(np.int64) if arrays else np.empty(0, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------------
# Input checks: all cheap, all before tokenizing.


def _check_window_args(max_length, stride, validation_fraction, context_length, num_proc):
    for name, value in (("max_length", max_length), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive int (the book uses max_length=256, stride=256 for "
                             f"pretraining), got {value!r}")
    if context_length is not None and not isinstance(context_length, (int, np.integer)):
        config = context_length
        context_length = getattr(config, "context_length", None) or getattr(config, "max_position_embeddings", None)
        if context_length is None:
            raise TypeError(f"context_length must be an int or a config with `context_length`, got {config!r}")
    if context_length is not None and max_length > context_length:
        raise ValueError(f"max_length={max_length} is longer than the model's context ({context_length} tokens): "
                         f"lower max_length to at most {context_length}")
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    if num_proc is not None and (not isinstance(num_proc, int) or num_proc < 1):
        raise ValueError(f"num_proc must be a positive int or None, got {num_proc!r}")


# ---------------------------------------------------------------------------------------------------------------
# The map path


def _tokenize_batch(batch, indices, *, encoder, text_column, first_doc, char_cut):
    """Documents -> rows of token ids (pieces of the split's stream); `<|endoftext|>` before every document
    but the split's first non-empty one. `char_cut` (see `_texts`) keeps the head or tail of a lone document."""
    column = batch.column(text_column)
    texts = _texts(column.to_pylist(), char_cut, indices)
    continues = batch.column(PART_COLUMN).to_pylist() if PART_COLUMN in batch.column_names else None
    # Ids land in one buffer sized for the worst case (a token holds at least one UTF-8 byte): pages never written
    # cost no memory, and the table needs no concatenating copy.
    values = _Buffer(int(pc.sum(pc.binary_length(column)).as_py() or 0) + len(texts))
    offsets, last = [0], None
    for i, ids in encoder.iter_encoded(texts):
        if i != last and indices[i] > first_doc and not (continues and continues[i]):
            values.append([encoder.eos_id])
        values.append(ids)
        offsets.append(len(values))
        last = i
    ids = pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32)), pa.array(values.array()))
    return pa.table({"ids": ids})


class _Buffer:
    """A growable int32 array."""

    def __init__(self, capacity):
        self.data, self.n = np.empty(max(capacity, 16), dtype=np.int32), 0

    def __len__(self):
        return self.n

    def append(self, ids):
        if self.n + len(ids) > len(self.data):
            self.data = np.concatenate([self.data[:self.n], np.empty(max(len(self.data), len(ids)), np.int32)])
        self.data[self.n:self.n + len(ids)] = ids
        self.n += len(ids)

    def array(self):
        return self.data[:self.n]


def _texts(texts, char_cut, indices):
    """The texts of rows `indices`; `char_cut=(part, row, offset)` keeps row `row`'s text before ("head") or from
    ("tail") character `offset`."""
    texts = [t or "" for t in texts]
    if char_cut is not None:
        part, row, offset = char_cut
        for i, index in enumerate(indices):
            if index == row:
                texts[i] = texts[i][:offset] if part == "head" else texts[i][offset:]
    return texts


def _window_batch(batch, indices, *, tokens, starts, n_windows, max_length, stride):
    """The windows whose first token lies in this batch of rows, reading later rows when a window runs past it."""
    i0, i1 = indices[0], indices[-1] + 1
    a, b = int(starts[i0]), int(starts[i1])
    k_lo, k_hi = -(-a // stride), min(-(-b // stride), n_windows)
    count = max(0, k_hi - k_lo)
    if count:
        end = (k_hi - 1) * stride + max_length + 1
        j = int(np.searchsorted(starts, end, side="left"))
        rows = batch.column("ids") if j <= i1 else tokens.slice(i0, j - i0).column("ids")
        seg = pc.list_flatten(rows).to_numpy()
        windows = _window_view(seg, k_lo * stride - a, count, max_length, stride).astype(np.int64)
    else:
        windows = np.empty((0, max_length + 1), dtype=np.int64)
    return pa.table({"input_ids": _fixed_lists(windows[:, :-1]), "shift_labels": _fixed_lists(windows[:, 1:])})


def _fixed_lists(matrix):
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix).ravel()), matrix.shape[1])


def _window_features(max_length):
    import datasets

    column = datasets.List(datasets.Value("int64"), length=max_length)
    return datasets.Features({"input_ids": column, "shift_labels": column})


def _fingerprint(*parts):
    from datasets.fingerprint import Hasher

    return Hasher.hash([_CODE_DIGEST, *parts])


def _first_nonempty(ds, text_column):
    lengths = pc.fill_null(pc.binary_length(ds.data.column(text_column)), 0)  # offsets only: reads no text
    nonzero = np.flatnonzero(lengths.to_numpy())
    return int(nonzero[0]) if len(nonzero) else len(ds)


def _too_few_tokens(split, n_tokens, max_length, validation_fraction):
    # A window needs max_length >= 2 (pretraining refuses less), so below 3 tokens the only fix is more text.
    fix = f"lower max_length to at most {n_tokens - 1}" if n_tokens > 2 else "give it more text"
    if split == "validation":
        fix += f", or raise validation_fraction (now {validation_fraction})"
    elif n_tokens > 2:
        fix += ", or give more text"
    return ValueError(f"the {split} split holds {n_tokens} tokens, fewer than max_length + 1 = {max_length + 1} "
                      f"needed for one window: {fix}")


def build_lm_datasets(tokenizer=None, *, text_files=None, validation_file=None, dataset_name=None,
                      dataset_config_name=None, text_column="text", max_length, stride, validation_fraction=0.1,
                      streaming=False, num_proc=None, context_length=None, cache_dir=None,
                      load_from_cache_file=True, verbose=True):
    """Train and validation windows of `max_length` tokens every `stride` tokens, as the book's `GPTDatasetV1`.

    Sources: `text_files` (a path, folder, glob, list, or `{"train": ..., "validation": ...}`; a .txt file is one
    document; .jsonl/.json/.csv/.parquet take `text_column`), a Hub `dataset_name`/`dataset_config_name`, or by
    default Python's help topics (present on every install). Splits: an explicit validation file or split wins;
    else a lone document is cut at character `int((1 - validation_fraction) * len(text))` as in the book, and
    several documents are split by document, the last `validation_fraction` of them for validation (like
    `run_clm.py`'s `train[90%:]`). `validation_fraction=0` returns only "train". Each split's documents are joined
    with `<|endoftext|>` into one token stream, and windows never cross splits.

    `context_length` (an int or a model config) guards `max_length`. Returns a `DatasetDict` whose rows hold
    `input_ids` and `shift_labels` (int64, `max_length` each), cached by fingerprint so an identical second call
    tokenizes nothing; with `streaming=True` an `IterableDatasetDict` yielding the same windows lazily.
    `tokenizer` may also be the book's tiktoken encoding; a GPT-2 tokenizer tokenizes big corpora through
    tiktoken when it is installed (verified to be the same BPE, so the same ids, ~4x faster).
    """
    import datasets

    _check_window_args(max_length, stride, validation_fraction, context_length, num_proc)
    if tokenizer is None:
        from .tokenization import load_tokenizer

        tokenizer = load_tokenizer()
    encoder = _Encoder(tokenizer)
    splits = load_sources(text_files, validation_file, dataset_name, dataset_config_name, streaming, cache_dir)
    for name, ds in splits.items():
        check_text_column(ds, text_column, f"the {name} data")
    if streaming:
        encoder.use_twin = True  # a stream is read once, and is usually big
        from .streaming import build_streaming

        return build_streaming(splits, encoder, text_column, max_length, stride, validation_fraction, verbose)

    # Byte lengths come from the offsets alone; counting characters would read (and map) the whole text.
    sizes = {name: pc.sum(pc.binary_length(ds.data.column(text_column))).as_py() or 0 for name, ds in splits.items()}
    total_bytes = sum(sizes.values())
    if total_bytes == 0:
        raise ValueError("the corpus is empty: its documents hold no text; check text_files / text_column")
    encoder.use_twin = total_bytes >= TWIN_MIN_CHARS
    parts = _plan_splits(splits, validation_fraction, text_column)
    digest = encoder.digest()
    tokenized = {}
    for split, (ds, char_cut) in parts.items():
        fp = _fingerprint(ds._fingerprint, "tokenize", text_column, char_cut, digest)
        source = split if split in splits else "train"  # a validation part cut from train has train's documents
        batch_size = int(min(64, max(1, BATCH_BYTES * len(splits[source]) // max(1, sizes[source]))))
        tokenized[split] = ds.with_format("arrow").map(
            _tokenize_batch, batched=True, batch_size=batch_size, with_indices=True, remove_columns=ds.column_names,
            fn_kwargs={"encoder": encoder, "text_column": text_column, "first_doc": _first_nonempty(ds, text_column),
                       "char_cut": char_cut},
            num_proc=num_proc, new_fingerprint=fp, load_from_cache_file=load_from_cache_file,
            writer_batch_size=512, features=datasets.Features({"ids": datasets.List(datasets.Value("int32"))}),
            desc=f"Tokenizing {split}")
    starts = {}
    for split, tok in tokenized.items():
        lengths = pc.list_value_length(tok.data.column("ids")).to_numpy(zero_copy_only=False)
        starts[split] = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        if starts[split][-1] < max_length + 1:
            raise _too_few_tokens(split, int(starts[split][-1]), max_length, validation_fraction)

    out = datasets.DatasetDict()
    for split, tok in tokenized.items():
        n_tokens = int(starts[split][-1])
        n_windows = count_windows(n_tokens, max_length, stride)
        fp = _fingerprint(tok._fingerprint, "windows", max_length, stride)
        out[split] = tok.map(
            _window_batch, batched=True, batch_size=64, with_indices=True, remove_columns=["ids"],
            fn_kwargs={"tokens": tok.data, "starts": starts[split], "n_windows": n_windows,
                       "max_length": max_length, "stride": stride},
            num_proc=num_proc, new_fingerprint=fp, load_from_cache_file=load_from_cache_file,
            features=_window_features(max_length), desc=f"Windowing {split}").with_format(None)
        assert len(out[split]) == n_windows, (split, len(out[split]), n_windows)
        _report(split, n_tokens, n_windows, max_length, stride, verbose)
    return out


def _plan_splits(splits, validation_fraction, text_column):
    """{split: (dataset, char_cut)} following the book for one document and `run_clm.py` for many."""
    train = splits["train"]
    if "validation" in splits:
        return {"train": (train, None), "validation": (splits["validation"], None)}
    if validation_fraction == 0:
        return {"train": (train, None)}
    starts = document_starts(train)
    n_docs = len(train) if starts is None else len(starts)
    if n_docs == 1:
        lengths = pc.utf8_length(train.data.column(text_column)).to_numpy(zero_copy_only=False)
        row, offset = book_cut(lengths, 1 - validation_fraction)
        return {"train": (train.select(range(row + 1)), ("head", row, offset)),
                "validation": (train.select(range(row, len(train))), ("tail", 0, offset))}
    n_train = min(max(int((1 - validation_fraction) * n_docs), 1), n_docs - 1)
    row = n_train if starts is None else int(starts[n_train])
    return {"train": (train.select(range(row)), None), "validation": (train.select(range(row, len(train))), None)}


def book_cut(lengths, keep):
    """`(row, offset)` of the book's split of one document, `text[:int(keep * len(text))]` for training, when its
    text is stored in rows of `lengths` characters."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    cut = int(keep * int(ends[-1]))
    row = min(int(np.searchsorted(ends, cut, side="right")), len(lengths) - 1)
    return row, cut - int(ends[row] - lengths[row])


def _report(split, n_tokens, n_windows, max_length, stride, verbose):
    message = f"{split}: {n_tokens:,} tokens -> {n_windows:,} windows of {max_length} (stride {stride})"
    logger.info(message)
    if verbose:
        print(message)


# ---------------------------------------------------------------------------------------------------------------
# The book's DataLoader


def create_dataloader(text, tokenizer=None, batch_size=4, max_length=256, stride=128, shuffle=True, drop_last=True,
                      num_workers=0):
    """The book's `create_dataloader_v1`: batches of `(input_ids, target_ids)` LongTensors over one text.

    Same windows, same order under the same `torch.manual_seed` (both shuffle with a `RandomSampler` over the
    same number of windows). `tokenizer` may be a `transformers` tokenizer (default: `load_tokenizer()`) or the
    book's tiktoken encoding. `model(input_ids=x, shift_labels=y).loss` is the book's `calc_loss_batch(x, y, ...)`.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    _check_window_args(max_length, stride, 0.0, None, None)
    if tokenizer is None:
        from .tokenization import load_tokenizer

        tokenizer = load_tokenizer()
    ids = _Encoder(tokenizer, use_twin=len(text) >= TWIN_MIN_CHARS).encode_stream(text)
    if len(ids) < max_length + 1:
        raise _too_few_tokens("text", len(ids), max_length, None)
    windows = _window_view(ids, 0, count_windows(len(ids), max_length, stride), max_length, stride)
    dataset = TensorDataset(torch.from_numpy(windows[:, :-1].copy()), torch.from_numpy(windows[:, 1:].copy()))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=num_workers)


__all__ = ["build_lm_datasets", "create_dataloader", "count_windows"]
