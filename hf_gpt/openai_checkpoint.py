"""OpenAI's original GPT-2 checkpoint (the folder the book's `gpt_download.py` fetches), read without TensorFlow:
just the parts of the LevelDB table and `BundleEntryProto` formats those files use (no crc32c; sizes are checked)."""

import json
import math
import re
from pathlib import Path

import numpy as np
import torch

PREFIX = "model.ckpt"
HPARAMS = "hparams.json"
_TABLE_MAGIC = 0xDB4775248B80FB57
# TensorFlow's DataType enum (tensorflow/core/framework/types.proto) -> torch; GPT-2's files are all float32.
_DTYPES = {1: torch.float32, 2: torch.float64, 14: torch.bfloat16, 19: torch.float16}
_LAYER_VARIABLES = ("ln_1/g", "ln_1/b", "attn/c_attn/w", "attn/c_attn/b", "attn/c_proj/w", "attn/c_proj/b",
                    "ln_2/g", "ln_2/b", "mlp/c_fc/w", "mlp/c_fc/b", "mlp/c_proj/w", "mlp/c_proj/b")
_GLOBAL_VARIABLES = {"model/wte": "wte.weight", "model/wpe": "wpe.weight", "model/ln_f/g": "ln_f.weight",
                     "model/ln_f/b": "ln_f.bias"}
_LAYER = re.compile(r"model/h(\d+)/(.+)/([gbw])")
_DOWNLOAD_AGAIN = "download the folder again (the book's gpt_download.py)"


def is_openai_folder(path):
    """A folder with OpenAI's `hparams.json` or a `model.ckpt.index`: the book's `gpt_download.py` layout."""
    path = Path(path)
    return path.is_dir() and ((path / HPARAMS).is_file() or (path / f"{PREFIX}.index").is_file())


def gpt2_config(hparams_path):
    """`hparams.json` (n_vocab, n_ctx, n_embd, n_head, n_layer) as the GPT-2 `config.json` dict it stands for."""
    if not Path(hparams_path).is_file():
        raise FileNotFoundError(f"{hparams_path}: missing; it gives the model's sizes: {_DOWNLOAD_AGAIN}")
    try:
        hparams = json.loads(Path(hparams_path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{hparams_path}: not valid JSON ({err}); {_DOWNLOAD_AGAIN}") from err
    keys = {"vocab_size": "n_vocab", "n_positions": "n_ctx", "n_embd": "n_embd", "n_head": "n_head",
            "n_layer": "n_layer"}
    bad = [k for k in keys.values() if not isinstance(hparams, dict) or type(hparams.get(k)) is not int]
    if bad:
        raise ValueError(f"{hparams_path}: no integer {', '.join(bad)}; OpenAI's hparams.json has n_vocab, n_ctx, "
                         f"n_embd, n_head and n_layer: {_DOWNLOAD_AGAIN}")
    # GPT-2's <|endoftext|> is id 50256 where the vocabulary has it (as GPTConfig assumes), none in a toy vocabulary.
    endoftext = 50256 if hparams["n_vocab"] > 50256 else None
    return {"model_type": "gpt2", **{k: hparams[v] for k, v in keys.items()},
            "bos_token_id": endoftext, "eos_token_id": endoftext}


def hf_name(tf_name):
    """`model/h0/attn/c_attn/w` -> `h.0.attn.c_attn.weight`; other names are kept, so they show as unexpected."""
    if tf_name in _GLOBAL_VARIABLES:
        return _GLOBAL_VARIABLES[tf_name]
    m = _LAYER.fullmatch(tf_name)
    if m and f"{m[2]}/{m[3]}" in _LAYER_VARIABLES:
        return f"h.{m[1]}.{m[2].replace('/', '.')}.{'bias' if m[3] == 'b' else 'weight'}"
    return tf_name


def _varint(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return result, pos
        shift += 7


class _Corrupt(Exception):
    """Bytes that decode to nothing sensible."""


def _proto_fields(buf):
    """A protobuf message as `{field number: [values]}`: varints as ints, length-delimited fields as bytes."""
    fields, pos = {}, 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        wire = tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos:pos + size]), pos + size
        elif wire in (1, 5):  # fixed64, fixed32 (the entries' crc32c)
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        else:  # groups (3, 4) and wire types 6, 7 are in no message read here
            raise _Corrupt(f"protobuf wire type {wire}")
        fields.setdefault(tag >> 3, []).append(value)
    return fields


def _block(data, handle, path):
    """The key/value pairs of the table block that `handle` (offset and size varints) points at."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if offset + size + 5 > len(data):  # a block is followed by its compression type and crc
        raise ValueError(f"{path}: a block lies past the end of the file; the index is truncated: {_DOWNLOAD_AGAIN}")
    if data[offset + size] != 0:
        raise ValueError(f"{path}: compressed table blocks (type {data[offset + size]}) are not read; TensorFlow "
                         "writes checkpoints uncompressed, so this is not one of OpenAI's files")
    block = data[offset:offset + size]
    end, pos, key = size - 4 * (int.from_bytes(block[-4:], "little") + 1), 0, b""  # restart points at the end
    while pos < end:  # each key shares a prefix with the one before it
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + bytes(block[pos:pos + unshared])
        yield key, block[pos + unshared:pos + unshared + length]
        pos += unshared + length


def _entry(value):
    """A `BundleEntryProto`'s fields, its shape (field 2, a `TensorShapeProto` of `Dim`s) as a list of sizes."""
    fields = _proto_fields(value)
    fields[2] = [_proto_fields(dim).get(1, [0])[0] for dim in _proto_fields(fields.get(2, [b""])[0]).get(2, [])]
    return fields


def read_index(path):
    """`{variable name: BundleEntryProto fields}` of a `.index` file; the empty name holds the header's."""
    data = memoryview(Path(path).read_bytes())
    if len(data) < 48 or int.from_bytes(data[-8:], "little") != _TABLE_MAGIC:
        raise ValueError(f"{path}: not a TensorFlow checkpoint index (no table footer); it is truncated or another "
                         f"kind of file: {_DOWNLOAD_AGAIN}")
    footer = len(data) - 48  # metaindex handle, index handle, padding, magic
    index_handle = _varint(data, _varint(data, footer)[1])[1]  # past the metaindex handle's two varints
    try:
        return {key.decode(): _entry(value) if key else _proto_fields(value)
                for _, handle in _block(data, data[index_handle:], path) for key, value in _block(data, handle, path)}
    except (IndexError, UnicodeDecodeError, _Corrupt) as err:  # a varint or message running past its end
        raise ValueError(f"{path}: a corrupt checkpoint index ({err}): {_DOWNLOAD_AGAIN}") from None


class OpenAICheckpoint:
    """The tensors of `folder/model.ckpt.*` under GPT-2's Hugging Face names, read one at a time; Conv1D weights
    lose OpenAI's leading 1 ([1, in, out] -> (in, out))."""

    def __init__(self, folder):
        self.folder = Path(folder)
        index = self.folder / f"{PREFIX}.index"
        if not index.is_file():
            raise FileNotFoundError(f"{index}: missing, so the folder's TensorFlow checkpoint cannot be read: "
                                    f"{_DOWNLOAD_AGAIN}")
        entries = read_index(index)
        header = entries.pop("", {})
        if header.get(2, [0])[0] != 0:
            raise ValueError(f"{index}: a big-endian checkpoint; only little-endian ones (every TensorFlow on x86 and "
                             "ARM writes those) are read")
        shards = header.get(1, [1])[0]
        paths = [self.folder / f"{PREFIX}.data-{i:05d}-of-{shards:05d}" for i in range(shards)]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing (the index names {shards} data file(s)): {_DOWNLOAD_AGAIN}")
        self._entries = {}
        for name, fields in entries.items():
            dtype = _DTYPES.get(fields.get(1, [0])[0])
            if dtype is None:
                raise ValueError(f"{index}: variable {name!r} has TensorFlow dtype {fields.get(1, [0])[0]} (the "
                                 f"DataType enum of types.proto); only float32, float16, bfloat16 and float64 are read")
            if 7 in fields:
                raise ValueError(f"{index}: variable {name!r} is saved in slices (a partitioned variable); "
                                 "OpenAI's checkpoints have none, and this reader does not join them")
            dims = fields[2]
            shape = tuple(dims[1:] if len(dims) == 3 and dims[0] == 1 else dims)
            shard, offset, nbytes = (fields.get(k, [0])[0] for k in (3, 4, 5))
            path = paths[shard] if shard < shards else None
            if nbytes != math.prod(dims) * dtype.itemsize or path is None:
                raise ValueError(f"{index}: the entry of {name!r} is corrupt (shape {dims}, {nbytes} bytes in shard "
                                 f"{shard}): {_DOWNLOAD_AGAIN}")
            if offset + nbytes > path.stat().st_size:
                raise ValueError(f"{path}: truncated: {name!r} ends at byte {offset + nbytes:,} but the file has "
                                 f"{path.stat().st_size:,} bytes; {_DOWNLOAD_AGAIN}")
            self._entries[hf_name(name)] = (name, path, offset, nbytes, dtype, shape)
        self._check_variables(index, entries)

    @staticmethod
    def _check_variables(index, names):
        """Every variable of every block that is there, by OpenAI's name: an incomplete file says what it lacks."""
        layers = {int(m[1]) for m in map(_LAYER.fullmatch, names) if m}
        wanted = [*_GLOBAL_VARIABLES, *(f"model/h{i}/{v}" for i in range(max(layers, default=-1) + 1)
                                         for v in _LAYER_VARIABLES)]
        missing = [name for name in wanted if name not in names]
        if missing:
            more = f" ... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ValueError(f"{index}: no variable {', '.join(missing[:10])}{more}; the checkpoint is incomplete: "
                             f"{_DOWNLOAD_AGAIN}")

    def keys(self):
        return list(self._entries)

    def shape(self, key):
        return self._entries[key][5]

    def get(self, key):
        name, path, offset, nbytes, dtype, shape = self._entries[key]
        raw = np.empty(nbytes, dtype=np.uint8)
        with open(path, "rb") as f:
            f.seek(offset)
            read = f.readinto(memoryview(raw))
        if read != nbytes:
            raise ValueError(f"{path}: truncated: {name!r} ends past the end of the file; {_DOWNLOAD_AGAIN}")
        return torch.from_numpy(raw).view(dtype).view(shape)

    def close(self):
        pass
