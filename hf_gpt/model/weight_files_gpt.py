"""Finding a checkpoint's weight files and reading them one tensor at a time, for `conversion_gpt` (remote code)."""

import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

try:
    from .configuration_gpt import GPT2_ALIASES, GPT2_CHECKPOINTS
except ImportError:  # loaded as a lone file
    from configuration_gpt import GPT2_ALIASES, GPT2_CHECKPOINTS

WEIGHT_FILES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
# What the book's gpt_download.py leaves in a folder: OpenAI's original TensorFlow checkpoint and its sizes.
OPENAI_HPARAMS, OPENAI_INDEX = "hparams.json", "model.ckpt.index"
_MAX_LISTED = 20


def names(keys, sep=", "):
    """Keys for an error message: the first 20, then how many more."""
    keys = list(keys)
    more = f" ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return sep.join(keys[:_MAX_LISTED]) + more


def check_safetensors(path):
    """The file opened with `safe_open`, or one ValueError naming it, before any model is built."""
    try:
        return safe_open(str(path), framework="pt")
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err}). It may be truncated or corrupt; delete it "
                         "and download or save it again.") from err


class SafetensorsSource:
    """Tensors of one or more `.safetensors` files, read one at a time through `safetensors.safe_open`."""

    def __init__(self, paths):
        self._where = {}
        for path in paths:
            handle = check_safetensors(path)
            for key in handle.keys():
                if key in self._where:
                    raise ValueError(f"{path}: tensor {key!r} is also in {self._where[key][0]}")
                self._where[key] = (path, handle)

    def keys(self):
        return list(self._where)

    def shape(self, key):
        return tuple(self._where[key][1].get_slice(key).get_shape())

    def get(self, key):
        """The tensor in memory of its own: safe_open's maps the file, which saving into the same folder rewrites."""
        return self._where[key][1].get_tensor(key).clone()

    def close(self):
        self._where = {}


class DictSource:
    """Tensors of an in-memory state dict; `consume` drops each one once read, so its memory is freed early."""

    def __init__(self, state_dict, consume=False, where="state dict"):
        bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise ValueError(f"{where}: entries that are not tensors: {names(bad)}")
        self._sd, self._consume = state_dict, consume

    def keys(self):
        return list(self._sd)

    def shape(self, key):
        return tuple(self._sd[key].shape)

    def get(self, key):
        return self._sd.pop(key) if self._consume else self._sd[key]

    def close(self):
        pass


def refused_pickle(path, err):
    """torch's `weights_only` refusal as one line that names the file, without its advice to load unsafely."""
    found = re.search(r"GLOBAL (\S+)", str(err))
    what = f"a pickled Python object ({found.group(1)})" if found else "pickled Python objects"
    return ValueError(f"{path}: it holds {what} besides tensors, and loading it would run that code, so it is "
                      "refused. Where the model was made, save only its weights: `model.save_pretrained(folder)` "
                      "(safetensors) or `torch.save(model.state_dict(), path)`.")


def torch_load(path):
    """`torch.load(weights_only=True)` with errors that name the file and say what to do."""
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] != b"\x80" and head != b"PK":  # neither a zip (maybe truncated) nor a pickle: nothing reads it
            raise ValueError(f"{path}: not a PyTorch checkpoint (neither torch.save's zip archive nor a pickle); it is "
                             "corrupt or another kind of file. Save the weights again with "
                             "`torch.save(model.state_dict(), path)`.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        raise refused_pickle(path, err) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({err}); it may be truncated or corrupt.") from err


def _openai_checkpoint(folder):
    """hf_gpt's reader of OpenAI's TensorFlow GPT-2 folders, from the installed package: it is no remote code."""
    try:
        from hf_gpt import openai_checkpoint
    except ImportError:
        raise ImportError(f"{folder}: this folder is OpenAI's TensorFlow checkpoint, which the installed hf_gpt "
                          "package reads (pip install -e . in its repository); or load the Hub's converted copy, "
                          "e.g. from_gpt2('gpt2-small (124M)').") from None
    return openai_checkpoint


def read_gpt2_config(path):
    """A GPT-2 `config.json` as a dict; OpenAI's `hparams.json` as the GPT-2 config it stands for."""
    path = Path(path)
    if path.name == OPENAI_HPARAMS:
        return _openai_checkpoint(path.parent).gpt2_config(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def open_weights(files):
    """A tensor source over a checkpoint's weight files (safetensors, PyTorch pickles or OpenAI's TensorFlow)."""
    files = [Path(f) for f in files]
    if len(files) == 1 and files[0].name == OPENAI_INDEX:
        return _openai_checkpoint(files[0].parent).OpenAICheckpoint(files[0].parent)
    if all(f.suffix == ".safetensors" for f in files):
        return SafetensorsSource(files)
    state_dict = {}
    for f in files:
        part = torch_load(f)
        if not isinstance(part, dict):
            raise ValueError(f"{f}: expected a state dict, found a {type(part).__name__}")
        state_dict.update(part)
    return DictSource(state_dict, consume=True, where=", ".join(map(str, files)))


def _files_from_index(index_path, fetch):
    with open(index_path, encoding="utf-8") as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    return [fetch(name) for name in shards]


def resolve_gpt2_checkpoint(name_or_path, **hub_kwargs):
    """`(config.json path or None, [weight files])` for a file, folder or Hub id (OpenAI's: `hparams.json`)."""
    if not os.path.exists(os.path.expanduser(os.fspath(name_or_path))):
        preset = GPT2_ALIASES.get(str(name_or_path))
        name_or_path = GPT2_CHECKPOINTS[preset][0] if preset else name_or_path
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_file():
        config = path.parent / "config.json"
        return (config if config.is_file() else None), [path]
    if path.is_dir():
        config = path / "config.json"
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                files = [path / name]
                if name.endswith(".index.json"):
                    files = _files_from_index(path / name, lambda shard: path / shard)
                return (config if config.is_file() else None), files
        if (path / OPENAI_HPARAMS).is_file() or (path / OPENAI_INDEX).is_file():
            return path / OPENAI_HPARAMS, [path / OPENAI_INDEX]  # read by hf_gpt.openai_checkpoint
        raise FileNotFoundError(
            f"{path}: no GPT-2 weights in this folder; looked for {', '.join(WEIGHT_FILES)} "
            f"(or OpenAI's original {OPENAI_HPARAMS} + {OPENAI_INDEX})."
        )
    return _resolve_on_hub(os.fspath(name_or_path), hub_kwargs)


def _resolve_on_hub(repo_id, hub_kwargs):
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    def fetch(filename):
        return Path(hf_hub_download(repo_id, filename, **hub_kwargs))

    where = "on the Hub"
    if constants.HF_HUB_OFFLINE or hub_kwargs.get("local_files_only"):
        why = "offline mode: HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "local_files_only=True"
        where = f"in the local Hugging Face cache ({why})"
    try:
        config = fetch("config.json")
    except HFValidationError as err:
        raise FileNotFoundError(f"{repo_id!r} is neither an existing file or folder nor a Hub model id.") from err
    except EntryNotFoundError as err:
        raise OSError(f"{repo_id}: not a local file or folder, and no config.json for it {where}.") from err
    except OSError as err:
        raise OSError(f"{repo_id}: not a local file or folder, and cannot get its config.json {where}: {err}") from err
    for name in WEIGHT_FILES:
        try:
            found = fetch(name)
        except EntryNotFoundError:
            continue
        if name.endswith(".index.json"):
            return config, _files_from_index(found, fetch)
        return config, [found]
    raise OSError(f"{repo_id}: no GPT-2 weights {where}; looked for {', '.join(WEIGHT_FILES)}.")
