"""Where the text comes from (files, folders, globs, a dataset, or Python's help texts), as `datasets` splits,
checked cheaply before any tokenizing."""

import codecs
import glob
import hashlib
import json
import logging
import os
import re
from pathlib import Path

FORMATS = {".txt": "text", ".text": "text", ".md": "text", ".jsonl": "json", ".json": "json", ".csv": "csv",
           ".parquet": "parquet"}

PART_CHARS = 4 << 20  # a text file longer than this is stored in rows ("parts") of about this many characters
PART_COLUMN = "hf_gpt_continues"  # a text file's rows: True where a row continues the document of the row before
# Cut points where GPT-2's pre-tokenizer splits anyway, so the parts' ids are exactly the whole text's.
CUT = re.compile(r"(?<=\S)[ \n](?=\S)")
_CODE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]

_UNDERLINE = re.compile(r"([*=~^-])\1{3,}")
# `__getattr__` -> `getattr`, `"None"` -> `None`: pydoc's markup of code, else a small model's favourite tokens.
_MARKUP = re.compile(r'\b__|__\b|"')


def expand_files(files, role):
    """Sorted, existing files of one known format from a path, folder, glob or list of those."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    out = []
    for f in files:
        f = os.path.expanduser(os.fspath(f))
        if os.path.isdir(f):
            found = sorted(p for p in glob.glob(os.path.join(f, "*")) if Path(p).suffix.lower() in FORMATS)
            if not found:
                raise FileNotFoundError(f"{role} folder {f!r} holds no {'/'.join(FORMATS)} file")
            skipped = sorted(p.name for p in Path(f).iterdir() if p.is_file() and p.suffix.lower() not in FORMATS)
            if skipped:  # a folder may hold other files; say which are left out, in one line
                logging.getLogger("hf_gpt.data").warning(
                    f"{role} folder {f!r}: skipping {len(skipped)} file(s) of no text format ({', '.join(skipped[:8])}"
                    f"{', ...' if len(skipped) > 8 else ''}); known formats: {', '.join(FORMATS)}")
            out += found
        elif os.path.isfile(f):
            out.append(f)
        elif glob.has_magic(f) and glob.glob(f):
            out += sorted(glob.glob(f))
        else:
            raise FileNotFoundError(f"{role} file {f!r} does not exist (current folder: {os.getcwd()})")
    if not out:
        raise ValueError(f"no {role} files given")
    kinds = {FORMATS.get(Path(f).suffix.lower()) for f in out}
    if None in kinds:
        bad = next(f for f in out if Path(f).suffix.lower() not in FORMATS)
        raise ValueError(f"{role} file {bad!r}: unknown format; use one of {', '.join(FORMATS)}")
    if len(kinds) > 1:
        raise ValueError(f"{role} files mix formats ({', '.join(sorted(kinds))}); give one format per split")
    return out, kinds.pop()


def first_non_utf8(path):
    """`(byte offset, UnicodeDecodeError)` of the file's first byte that is not UTF-8, or None."""
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                return offset - pending + e.start, e
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as e:
            return offset - len(decoder.getstate()[0]) + e.start, e
    return None


def raise_if_non_utf8(files):
    for f in files:  # parquet is binary: skipped
        if FORMATS[Path(f).suffix.lower()] != "parquet" and (bad := first_non_utf8(f)):
            path = Path(f)
            raise ValueError(f"{f!r} is not UTF-8 text: byte {bad[0]} cannot be decoded; convert it, e.g. "
                             f"`iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`")


def check_text_column(ds, text_column, where):
    features = ds.features
    if features is None:  # a stream of unknown schema: look at its first row
        first = next(iter(ds.take(1)), None)
        columns = list(first) if first else []
    else:
        columns = list(features)
    if text_column not in columns:
        raise ValueError(f"{where} has no column {text_column!r}; its columns are {columns}: pass "
                         f"text_column=<one of them>")
    if features is None:
        return
    dtype = getattr(features[text_column], "dtype", None)
    if dtype not in ("string", "large_string"):
        raise ValueError(f"{where}: column {text_column!r} holds {features[text_column]}, not text")


def default_corpus_texts():
    """Python's help topics (~465 KB on every install) without pydoc's markup, which a small model would learn."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:
        raise ImportError("the default corpus (pydoc_data.topics) is missing from this Python; "
                          "pass text_files=...") from e
    texts = []
    for text in topics.values():
        lines = [line for line in text.splitlines() if not _UNDERLINE.fullmatch(line.strip())]
        texts.append(" ".join(_MARKUP.sub("", " ".join(lines)).split()))
    return texts


def _pydoc_topics():
    for text in default_corpus_texts():
        yield {"text": text}


def _default_corpus(streaming, cache_dir):
    import datasets

    features = datasets.Features({"text": datasets.Value("string")})
    if streaming:
        return datasets.IterableDatasetDict({"train": datasets.IterableDataset.from_generator(
            _pydoc_topics, features=features)})
    digest = hashlib.sha256("\0".join(default_corpus_texts()).encode()).hexdigest()[:16]
    ds = datasets.Dataset.from_generator(_pydoc_topics, features=features, cache_dir=cache_dir,
                                         fingerprint=f"pydoc-{digest}")
    return datasets.DatasetDict({"train": ds})


def load_sources(text_files, validation_file, dataset_name, dataset_config_name, streaming, cache_dir):
    """{"train": dataset} plus "validation" when one is given, streamed or not."""
    import datasets

    if text_files is not None and dataset_name is not None:
        raise ValueError("give text_files or dataset_name, not both")
    if dataset_name is not None:
        validation = expand_files(validation_file, "validation") if validation_file is not None else None
        raw = datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, streaming=streaming)
        if "train" not in raw:
            raise ValueError(f"dataset {dataset_name!r} has no 'train' split (it has {list(raw)})")
        splits = {k: raw[k] for k in ("train", "validation") if k in raw}
        if validation is not None:
            splits["validation"] = load_files(*validation, streaming, cache_dir)
        return splits
    if text_files is None:
        if validation_file is not None:
            raise ValueError("validation_file needs text_files (or dataset_name) for the training text")
        return dict(_default_corpus(streaming, cache_dir))
    if isinstance(text_files, dict):
        unknown = set(text_files) - {"train", "validation"}
        if unknown or "train" not in text_files:
            raise ValueError(f"text_files as a dict takes the keys 'train' and optionally 'validation', "
                             f"got {list(text_files)}")
        if "validation" in text_files and validation_file is not None:
            raise ValueError("validation files given twice: in text_files['validation'] and validation_file")
        validation_file = text_files.get("validation", validation_file)
        text_files = text_files["train"]
    files = {"train": expand_files(text_files, "train")}
    if validation_file is not None:
        files["validation"] = expand_files(validation_file, "validation")
    # A stream fails late, and the JSON loader keeps invalid UTF-8 silently: check those up front.
    raise_if_non_utf8([f for fs, kind in files.values() for f in fs if streaming or kind == "json"])
    splits = {}
    try:
        for split, (fs, kind) in files.items():
            splits[split] = load_files(fs, kind, streaming, cache_dir)
    except Exception:
        raise_if_non_utf8([f for fs, _ in files.values() for f in fs])
        raise
    return splits


def cut_after(text, start):
    """The first cut point (see CUT) at or after `start`, or None."""
    m = CUT.search(text, start)
    return None if m is None else m.start() if m.group() == " " else m.end()


def _text_parts(files, part_chars):
    """Each file as one document in rows of about `part_chars` characters: never one string in memory."""
    for path in files:
        for i, text in enumerate(file_parts(path, part_chars)):
            yield {"text": text, PART_COLUMN: i > 0}


def file_parts(path, part_chars=None):
    """The text of a UTF-8 file (universal newlines) in parts, as `text_parts` cuts them."""
    part_chars = PART_CHARS if part_chars is None else part_chars
    with open(path, encoding="utf-8") as f:
        yield from text_parts(iter(lambda: f.read(part_chars), ""), part_chars)


def text_parts(strings, part_chars=None):
    """The text that `strings` make end to end, in parts of about `part_chars` (default `PART_CHARS`)
    characters, cut only where GPT-2's pre-tokenizer splits anyway (see CUT): the parts' ids, concatenated, are the
    whole text's. An empty text is one empty part; no other part is empty."""
    part_chars = PART_CHARS if part_chars is None else part_chars
    text, held, size, cut = "", [], 0, False
    for s in strings:
        held.append(s)
        size += len(s)
        if len(text) + size <= part_chars:
            continue
        text += "".join(held)
        held, size = [], 0
        start = 0  # parts of one long string are sliced from it, not cut off one by one (quadratic)
        while len(text) - start > part_chars:
            end = cut_after(text, start + part_chars)
            if end is None:
                if len(text) - start < 8 * part_chars:
                    break  # no cut point past part_chars yet: read on (a cut elsewhere could change ids)
                end = cut_after(text, start + 1) or len(text)  # the first cut point, else (no word gap) the end
            yield text[start:end]
            start, cut = end, True
        text = text[start:]
    text += "".join(held)
    if text or not cut:
        yield text


def load_files(files, kind, streaming, cache_dir):
    import datasets

    if kind == "text":
        features = datasets.Features({"text": datasets.Value("string"), PART_COLUMN: datasets.Value("bool")})
        kwargs = {"generator": _text_parts, "features": features,
                  "gen_kwargs": {"files": files, "part_chars": PART_CHARS}}
        if streaming:
            return datasets.IterableDataset.from_generator(**kwargs)
        stats = [(os.path.abspath(f), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
        fingerprint = hashlib.sha256(repr((_CODE_DIGEST, PART_CHARS, stats)).encode()).hexdigest()[:16]
        # Rows are written a few at a time (`datasets` pools 1000 by default: up to 1000 whole files in memory).
        return datasets.Dataset.from_generator(**kwargs, cache_dir=cache_dir, fingerprint=f"text-{fingerprint}",
                                               writer_batch_size=4)
    json_logger = logging.getLogger("datasets.packaged_modules.json.json")
    level = json_logger.level
    json_logger.setLevel(logging.CRITICAL)  # its error line names no line; ours follows
    try:
        ds = datasets.load_dataset(kind, data_files=files, split="train", cache_dir=cache_dir, streaming=streaming)
        if streaming:
            next(iter(ds), None)  # the parser meets a bad first block here, not mid-training
        return ds
    except Exception:
        bad = first_bad_json(files) if kind == "json" else None
        if bad is None:
            raise
        raise ValueError(bad) from None
    finally:
        json_logger.setLevel(level)


def first_bad_json(files):
    """`FILE: line N is not valid JSON ...` for the first bad line of `files` (JSON Lines, or one JSON document)."""
    for path in files:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    line.strip() and json.loads(line)
                except json.JSONDecodeError as err:
                    where = (number, err.msg) if number > 1 else _json_document_error(path)
                    if where is None:  # one JSON document over many lines, which the loader reads too
                        break
                    return f"{path}: line {where[0]} is not valid JSON ({where[1]}); fix or remove that line."
    return None


def _json_document_error(path):
    try:
        json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        return err.lineno, err.msg
    return None


def document_starts(ds):
    """Rows where documents start: all of them, except a text file's continuation parts."""
    import numpy as np

    if PART_COLUMN not in (ds.column_names or ()):
        return np.arange(len(ds))
    return np.flatnonzero(~ds.data.column(PART_COLUMN).to_numpy(zero_copy_only=False))
