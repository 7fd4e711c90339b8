"""Language-modelling data windowed exactly like the book's `GPTDatasetV1`, built with cached `datasets` maps on disk.
Rows hold `input_ids` and `shift_labels` (the book's `target_ids`): pass `label_names=["shift_labels"]`."""

import hashlib
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import sources, windows
from .sources import PART_COLUMN, check_text_column, document_starts, load_sources
from .streaming import build_streaming
from .tokenization import tiktoken_gpt2
from .windows import (
    Encoder,
    check_window_args,
    count_windows,
    cut_texts,
    plan_splits,
    too_few_tokens,
    window_features,
    window_view,
)

logger = logging.getLogger(__name__)

BATCH_BYTES = 16 << 20  # about this much text per tokenizing batch (at most 64 documents): bounds its memory
# Any change to the code that writes the caches invalidates them.
_CODE_DIGEST = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (sources, windows))
                              + Path(__file__).read_bytes()).hexdigest()[:16]


def _check_args(max_length, stride, validation_fraction, context_length, num_proc):
    check_window_args(max_length, stride)
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


def _tokenize_batch(batch, indices, *, encoder, text_column, first_doc, char_cut):
    """Documents -> rows of token ids, `<|endoftext|>` before every document but the split's first non-empty one."""
    column = batch.column(text_column)
    texts = cut_texts(column.to_pylist(), char_cut, indices)
    continues = batch.column(PART_COLUMN).to_pylist() if PART_COLUMN in batch.column_names else None
    # One worst-case buffer (a token holds at least one byte): unwritten pages cost nothing, and no concatenating copy.
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
        ids = pc.list_flatten(rows).to_numpy()
        spans = window_view(ids, k_lo * stride - a, count, max_length, stride).astype(np.int64)
    else:
        spans = np.empty((0, max_length + 1), dtype=np.int64)
    return pa.table({"input_ids": _fixed_lists(spans[:, :-1]), "shift_labels": _fixed_lists(spans[:, 1:])})


def _fixed_lists(matrix):
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix).ravel()), matrix.shape[1])


def _fingerprint(*args):
    from datasets.fingerprint import Hasher

    return Hasher.hash([_CODE_DIGEST, *args])


def _first_nonempty(ds, text_column):
    lengths = pc.fill_null(pc.binary_length(ds.data.column(text_column)), 0)  # offsets only: reads no text
    nonzero = np.flatnonzero(lengths.to_numpy())
    return int(nonzero[0]) if len(nonzero) else len(ds)


def build_lm_datasets(tokenizer=None, *, text_files=None, validation_file=None, dataset_name=None,
                      dataset_config_name=None, text_column="text", max_length, stride, validation_fraction=0.1,
                      streaming=False, num_proc=None, context_length=None, cache_dir=None,
                      load_from_cache_file=True):
    """Train and validation windows of `max_length` tokens every `stride` tokens, as the book's `GPTDatasetV1`.

    Without a validation split, a lone document is cut by characters as in the book, several by document like
    `run_clm.py`. The default tokenizer is the book's tiktoken GPT-2 (the same ids, several times faster)."""
    import datasets

    _check_args(max_length, stride, validation_fraction, context_length, num_proc)
    encoder = Encoder(tiktoken_gpt2() if tokenizer is None else tokenizer)
    splits = load_sources(text_files, validation_file, dataset_name, dataset_config_name, streaming, cache_dir)
    for name, ds in splits.items():
        check_text_column(ds, text_column, f"the {name} data")
    if streaming:
        return build_streaming(splits, encoder, text_column, max_length, stride, validation_fraction)

    # Byte lengths come from the offsets alone; counting characters would read (and map) the whole text.
    sizes = {name: pc.sum(pc.binary_length(ds.data.column(text_column))).as_py() or 0 for name, ds in splits.items()}
    total_bytes = sum(sizes.values())
    if total_bytes == 0:
        raise ValueError("the corpus is empty: its documents hold no text; check text_files / text_column")
    plan = plan_splits(splits, validation_fraction, lambda train: _scan_documents(train, text_column))
    digest = encoder.digest()
    tokenized = {}
    for split, (ds, char_cut) in plan.items():
        fp = _fingerprint(ds._fingerprint, "tokenize", text_column, char_cut, digest)
        source = split if split in splits else "train"  # a validation split cut from train has its documents
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
            raise too_few_tokens(split, int(starts[split][-1]), max_length, validation_fraction)

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
            features=window_features(max_length), desc=f"Windowing {split}").with_format(None)
        assert len(out[split]) == n_windows, (split, len(out[split]), n_windows)
        logger.info(f"{split}: {n_tokens:,} tokens -> {n_windows:,} windows of {max_length} (stride {stride})")
    return out


def _scan_documents(ds, text_column):
    """`plan_splits`' scan of a prepared split: the lengths (which read the text) only for a lone document."""
    starts = document_starts(ds)
    lengths = pc.utf8_length(ds.data.column(text_column)).to_numpy(zero_copy_only=False) if len(starts) == 1 else None
    return starts, lengths


def create_dataloader(text, tokenizer=None, batch_size=4, max_length=256, stride=128, shuffle=True, drop_last=True,
                      num_workers=0):
    """The book's `create_dataloader_v1`: the same batches, in the same order under the same `torch.manual_seed`."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    check_window_args(max_length, stride)
    ids = Encoder(tiktoken_gpt2() if tokenizer is None else tokenizer).encode_stream(text)
    if len(ids) < max_length + 1:
        raise too_few_tokens("text", len(ids), max_length, None)
    spans = window_view(ids, 0, count_windows(len(ids), max_length, stride), max_length, stride)
    dataset = TensorDataset(torch.from_numpy(spans[:, :-1].copy()), torch.from_numpy(spans[:, 1:].copy()))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=num_workers)


__all__ = ["build_lm_datasets", "create_dataloader", "count_windows"]
