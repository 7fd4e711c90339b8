"""What prepared and streamed splits share: the book's window arithmetic and character split, and `Encoder`."""

import hashlib
import itertools

import numpy as np

from .cli import UsageError
from .sources import text_parts
from .tokenization import ENDOFTEXT, GPT2_PAT_STR

ENCODE_PART_CHARS = 1 << 15  # long texts are tokenized in parts of about this many characters
PARTS_PER_CALL = 32  # parts per tokenizer call: bounds the tokenizer's per-token bookkeeping


def count_windows(n_tokens, max_length, stride):
    """How many windows the book's loop `range(0, n_tokens - max_length, stride)` makes."""
    return len(range(0, n_tokens - max_length, stride))


def window_view(tokens, first, count, max_length, stride):
    """`count` windows of `max_length + 1` tokens starting at `tokens[first]`, every `stride` (a view, no copy)."""
    if count == 0:
        return np.empty((0, max_length + 1), dtype=tokens.dtype)
    return np.lib.stride_tricks.sliding_window_view(tokens, max_length + 1)[first::stride][:count]


def window_features(max_length):
    import datasets

    column = datasets.List(datasets.Value("int64"), length=max_length)
    return datasets.Features({"input_ids": column, "shift_labels": column})


def check_window_args(max_length, stride):
    for name, value in (("max_length", max_length), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")


def too_few_tokens(split, n_tokens, max_length, validation_fraction):
    # A window needs max_length >= 2 (pretraining refuses less), so below 3 tokens the only fix is more text.
    fix = f"lower max_length to at most {n_tokens - 1}" if n_tokens > 2 else "give it more text"
    if split == "validation":
        fix += f", or raise validation_fraction (now {validation_fraction})"
    elif n_tokens > 2:
        fix += ", or give more text"
    return ValueError(f"the {split} split holds {n_tokens} tokens, fewer than max_length + 1 = {max_length + 1} "
                      f"needed for one window: {fix}")


def plan_splits(splits, validation_fraction, scan):
    """{split: (rows, char_cut)}: without a validation split, the book's character split of a lone document, or
    `run_clm.py`'s split by document."""
    train = splits["train"]
    if "validation" in splits:
        return {"train": (train, None), "validation": (splits["validation"], None)}
    if validation_fraction == 0:
        return {"train": (train, None)}
    starts, lengths = scan(train)
    if len(starts) == 0:
        raise ValueError("the corpus is empty: it holds no documents")
    if len(starts) == 1:
        ends = np.cumsum(np.asarray(lengths, dtype=np.int64))
        cut = int((1 - validation_fraction) * int(ends[-1]))
        row = min(int(np.searchsorted(ends, cut, side="right")), len(ends) - 1)
        offset = cut - int(ends[row] - lengths[row])
        return {"train": (train.take(row + 1), ("head", row, offset)),
                "validation": (train.skip(row), ("tail", 0, offset))}
    row = int(starts[min(max(int((1 - validation_fraction) * len(starts)), 1), len(starts) - 1)])
    return {"train": (train.take(row), None), "validation": (train.skip(row), None)}


def cut_texts(texts, char_cut, indices):
    """The texts of rows `indices`, `char_cut=(side, row, offset)` keeping the "head" or "tail" of row `row`."""
    texts = [t or "" for t in texts]
    if char_cut is not None:
        side, row, offset = char_cut
        for i, index in enumerate(indices):
            if index == row:
                texts[i] = texts[i][:offset] if side == "head" else texts[i][offset:]
    return texts


class Encoder:
    """One interface over a fast or slow `transformers` tokenizer or a tiktoken `Encoding` (the book's)."""

    def __init__(self, tokenizer):
        # Only what encoding needs, so `datasets` hashes and ships this object to workers quickly.
        self.tokenizer = None
        if hasattr(tokenizer, "encode_ordinary_batch"):  # tiktoken
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

    def encode(self, texts):
        """Token ids of each text, as int32 arrays, without added special tokens (the book adds none)."""
        if self.kind == "tiktoken":
            enc = self.tokenizer
            return [enc.encode_to_numpy(t, allowed_special={ENDOFTEXT}).view(np.int32) for t in texts]
        elif self.kind == "fast":
            encode_batch = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)  # skips offsets
            ids = [e.ids for e in encode_batch(texts, add_special_tokens=False)]
        else:
            ids = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [np.asarray(x, dtype=np.int32) for x in ids]

    def iter_encoded(self, texts):
        """`(text index, int32 ids)` for each part of each text, cut where the ids stay the same, a few at a time."""
        parts = ((i, p) for i, t in enumerate(texts) if t
                 for p in (text_parts([t], ENCODE_PART_CHARS) if self.exact_cuts else [t]))
        while batch := list(itertools.islice(parts, PARTS_PER_CALL)):
            yield from zip((i for i, _ in batch), self.encode([p for _, p in batch]))

    def encode_stream(self, text):
        """The whole text as one int64 array, like the book's `tokenizer.encode(txt)`."""
        arrays = [ids for _, ids in self.iter_encoded([text])]
        return np.concatenate(arrays).astype(np.int64) if arrays else np.empty(0, dtype=np.int64)
