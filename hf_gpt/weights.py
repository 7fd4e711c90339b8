"""OpenAI's GPT-2 checkpoints and the book's `model.pth` in and out of `GPTForCausalLM`.

GPT-2 files store Conv1D weights as (in, out) and fuse query/key/value into one `c_attn`; the book's model has
nn.Linear weights (out, in) and separate `W_query`/`W_key`/`W_value`. Loading checks every name and shape against
the target config before reading any tensor data, then converts tensor by tensor into a model built on the meta
device (`load_state_dict(assign=True)`), so a bad file fails fast, no second full copy of the weights is ever held,
and a model a caller already holds is only written once everything has been validated.
"""

import copy
import inspect
import json
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path

import torch

# The book's names for the sizes (ch. 5) and their Hub ids; any other name is passed to the Hub as is.
GPT2_HUB_IDS = {
    "gpt2-small": "openai-community/gpt2",
    "gpt2-small (124M)": "openai-community/gpt2",
    "124M": "openai-community/gpt2",
    "gpt2-medium (355M)": "openai-community/gpt2-medium",
    "355M": "openai-community/gpt2-medium",
    "gpt2-large (774M)": "openai-community/gpt2-large",
    "774M": "openai-community/gpt2-large",
    "gpt2-xl (1558M)": "openai-community/gpt2-xl",
    "1558M": "openai-community/gpt2-xl",
}
GPT2_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")
_HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download")
# Causal-mask buffers that old GPT-2 files (and the book's state dicts) carry; the model builds its mask itself.
_GPT2_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")
_BOOK_BUFFER = re.compile(r"trf_blocks\.\d+\.att\.mask")
_MAX_LISTED = 20


# --------------------------------------------------------------------------------------------------- configs


def gpt2_config_to_gpt_config(gpt2_config, **overrides):
    """The `GPTConfig` that mirrors a GPT-2 config (a `GPT2Config` or its `config.json` dict) exactly.

    Refuses the GPT-2 variants the book's block cannot reproduce. `overrides` (e.g. `context_length=256`,
    `drop_rate=0.0`) replace fields afterwards.
    """
    from .configuration_gpt import GPTConfig

    cfg = gpt2_config if isinstance(gpt2_config, dict) else gpt2_config.to_dict()
    get = cfg.get
    if get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"Not a GPT-2 config: model_type is {get('model_type')!r}, expected 'gpt2'.")
    n_embd = get("n_embd", 768)
    refusals = []
    if get("n_inner") not in (None, 4 * n_embd):
        refusals.append(f"n_inner={get('n_inner')} (the book's feed-forward is 4 * n_embd = {4 * n_embd})")
    if get("activation_function", "gelu_new") not in GPT2_ACTIVATIONS:
        refusals.append(f"activation_function={get('activation_function')!r} (the book's GELU is {GPT2_ACTIVATIONS})")
    if not get("scale_attn_weights", True):
        refusals.append("scale_attn_weights=False (the book scales attention by 1/sqrt(head_dim))")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if get(flag, False):
            refusals.append(f"{flag}=True")
    if refusals:
        raise ValueError("This GPT-2 variant cannot be mirrored by the book's GPT: " + "; ".join(refusals) + ".")
    pdrops = {get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    fields = {
        "vocab_size": get("vocab_size", 50257),
        "context_length": get("n_positions", get("n_ctx", 1024)),
        "emb_dim": n_embd,
        "n_heads": get("n_head", 12),
        "n_layers": get("n_layer", 12),
        # One dropout rate in the book; GPT-2's three are equal in every released config.
        "drop_rate": get("resid_pdrop", 0.1) if len(pdrops) > 1 else pdrops.pop(),
        "qkv_bias": True,
        "layer_norm_eps": get("layer_norm_epsilon", 1e-5),
        "initializer_range": get("initializer_range", 0.02),
        "tie_word_embeddings": get("tie_word_embeddings", True),
        "bos_token_id": get("bos_token_id", 50256),
        "eos_token_id": get("eos_token_id", 50256),
        "pad_token_id": get("pad_token_id"),
    }
    return GPTConfig(**{**fields, **_check_overrides(overrides)})


def gpt_config_to_gpt2_config(config):
    """The stock `GPT2Config` with the same architecture as a `GPTConfig`."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.context_length,
        n_ctx=config.context_length,  # not written by transformers 5; llama.cpp's convert_hf_to_gguf.py requires it
        n_embd=config.emb_dim,
        n_layer=config.n_layers,
        n_head=config.n_heads,
        n_inner=None,
        activation_function="gelu_new",
        resid_pdrop=config.drop_rate,
        embd_pdrop=config.drop_rate,
        attn_pdrop=config.drop_rate,
        layer_norm_epsilon=config.layer_norm_eps,
        initializer_range=config.initializer_range,
        use_cache=config.use_cache,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        tie_word_embeddings=config.tie_word_embeddings,
        architectures=["GPT2LMHeadModel"],
    )


def _check_overrides(overrides):
    """Config overrides under the book's names; an unknown name is a typo, not a silent extra attribute."""
    from .configuration_gpt import GPTConfig

    known = set(inspect.signature(GPTConfig.__init__).parameters) - {"self", "kwargs"}
    out = {}
    for key, value in overrides.items():
        key = GPTConfig.attribute_map.get(key, key)
        if key not in known:
            raise TypeError(f"Unexpected keyword argument {key!r}: not a GPTConfig field nor a loading option.")
        out[key] = value
    return out


def _with_overrides(config, overrides):
    overrides = _check_overrides(overrides)
    if not overrides:
        return copy.deepcopy(config)
    return type(config)(**{**config.to_dict(), **overrides})


def _book_config(config, overrides):
    """A `GPTConfig` from a `GPTConfig`, the book's config dict, or a path to a JSON file of either."""
    from .configuration_gpt import GPTConfig

    if isinstance(config, (str, os.PathLike)):
        with open(config, encoding="utf-8") as f:
            config = json.load(f)
    if isinstance(config, dict):
        return GPTConfig(**{**config, **_check_overrides(overrides)})
    if isinstance(config, GPTConfig):
        return _with_overrides(config, overrides)
    raise TypeError(f"config must be a GPTConfig, the book's config dict or a path to its JSON, got {type(config)}")


# --------------------------------------------------------------------------------------------- tensor sources


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


class _SafetensorsSource:
    """Tensors of one or more `.safetensors` files, read one at a time with plain file reads.

    `safetensors.safe_open` validates each file first (header, offsets, size). The data is then read with
    `readinto` rather than through a memory map, whose touched pages would stay in the process's RSS until the
    file is closed and double the peak. A tensor that is about to be transposed or split is read into one reusable
    scratch buffer, so its memory is faulted in once, for the converted copy only.
    """

    def __init__(self, paths):
        self._entries, self._files, self._scratch = {}, {}, None
        try:
            for path in paths:
                self._files[path] = open(path, "rb", buffering=0)
                for key, entry in self._read_header(path).items():
                    if key in self._entries:
                        raise ValueError(f"{path}: tensor {key!r} is also in {self._entries[key][0]}")
                    self._entries[key] = (path, *entry)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _read_header(path):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                keys = set(handle.keys())
            with open(path, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(length))
        except FileNotFoundError:
            raise
        except Exception as err:
            raise ValueError(
                f"{path}: not a readable safetensors file ({err}). It may be truncated or corrupt; "
                "delete it and download or save it again."
            ) from err
        entries = {}
        for key in keys:
            info = header[key]
            if info["dtype"] not in _SAFETENSORS_DTYPES:
                raise ValueError(f"{path}: tensor {key!r} has dtype {info['dtype']}, not a torch dtype")
            begin, end = info["data_offsets"]
            entries[key] = (tuple(info["shape"]), _SAFETENSORS_DTYPES[info["dtype"]], 8 + length + begin, end - begin)
        return entries

    def keys(self):
        return list(self._entries)

    def shape(self, key):
        return self._entries[key][1]

    def get(self, key, scratch=False):
        """The tensor, in its own memory, or with `scratch=True` in a buffer the next `get` overwrites."""
        path, shape, dtype, offset, nbytes = self._entries[key]
        if scratch:
            if self._scratch is None or self._scratch.numel() < nbytes:
                self._scratch = torch.empty(nbytes, dtype=torch.uint8)
            raw = self._scratch[:nbytes]
        else:
            raw = torch.empty(nbytes, dtype=torch.uint8)
        f = self._files[path]
        f.seek(offset)
        view, done = memoryview(raw.numpy()), 0
        while done < nbytes:
            n = f.readinto(view[done:])
            if not n:
                raise ValueError(f"{path}: tensor {key!r} ends past the end of the file; the file is truncated.")
            done += n
        return raw.view(dtype).view(shape)

    def close(self):
        for f in self._files.values():
            f.close()
        self._files, self._scratch = {}, None


class _DictSource:
    """Tensors of an in-memory state dict; `consume` drops each one once read, so its memory is freed early."""

    def __init__(self, state_dict, consume=False, where="state dict"):
        bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise ValueError(f"{where}: entries that are not tensors: {_names(bad)}")
        self._sd, self._consume = state_dict, consume

    def keys(self):
        return list(self._sd)

    def shape(self, key):
        return tuple(self._sd[key].shape)

    def get(self, key, scratch=False):
        return self._sd.pop(key) if self._consume else self._sd[key]

    def close(self):
        pass


def _torch_load(path):
    """`torch.load(weights_only=True)` with errors that name the file and say what to do."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: torch.load(weights_only=True) refused it ({str(err).splitlines()[0]}). Save a state dict "
            "(`torch.save(model.state_dict(), path)`), not a pickled model object."
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({err}); it may be truncated or corrupt.") from err


def _open_weights(files):
    """A tensor source over the weight files of a checkpoint (all `.safetensors`, or all PyTorch pickles)."""
    files = [Path(f) for f in files]
    if all(f.suffix == ".safetensors" for f in files):
        return _SafetensorsSource(files)
    state_dict = {}
    for f in files:
        part = _torch_load(f)
        if not isinstance(part, dict):
            raise ValueError(f"{f}: expected a state dict, found a {type(part).__name__}")
        state_dict.update(part)
    return _DictSource(state_dict, consume=True, where=", ".join(map(str, files)))


# ---------------------------------------------------------------------------------------- finding the files


def _files_from_index(index_path, fetch):
    with open(index_path, encoding="utf-8") as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    return [fetch(name) for name in shards]


def resolve_gpt2_checkpoint(name_or_path, **hub_kwargs):
    """`(config.json path or None, [weight files])` for a local file or folder, or a Hub id via the HF cache."""
    if not os.path.exists(os.path.expanduser(os.fspath(name_or_path))):
        name_or_path = GPT2_HUB_IDS.get(str(name_or_path), name_or_path)
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_file():
        config = path.parent / "config.json"
        return (config if config.is_file() else None), [path]
    if path.is_dir():
        config = path / "config.json"
        for name in GPT2_WEIGHT_FILES:
            if (path / name).is_file():
                files = [path / name]
                if name.endswith(".index.json"):
                    files = _files_from_index(path / name, lambda shard: path / shard)
                return (config if config.is_file() else None), files
        hint = ""
        if (path / "hparams.json").is_file() or (path / "model.ckpt.index").is_file():
            hint = (" It holds OpenAI's original TensorFlow checkpoint (what the book's gpt_download.py fetches); "
                    "load the same weights from the Hub's converted copy instead, e.g. from_gpt2('gpt2-small (124M)').")
        raise FileNotFoundError(
            f"{path}: no GPT-2 weights in this folder; looked for {', '.join(GPT2_WEIGHT_FILES)}.{hint}"
        )
    return _resolve_on_hub(os.fspath(name_or_path), hub_kwargs)


def _resolve_on_hub(repo_id, hub_kwargs):
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    def fetch(filename):
        return Path(hf_hub_download(repo_id, filename, **hub_kwargs))

    if constants.HF_HUB_OFFLINE:
        where = "in the local Hugging Face cache (offline mode: HF_HUB_OFFLINE is set)"
    elif hub_kwargs.get("local_files_only"):
        where = "in the local Hugging Face cache (local_files_only=True)"
    else:
        where = "on the Hub"
    try:
        config = fetch("config.json")
    except HFValidationError as err:
        raise FileNotFoundError(f"{repo_id!r} is neither an existing file or folder nor a Hub model id.") from err
    except EntryNotFoundError as err:
        raise OSError(f"{repo_id}: not a local file or folder, and no config.json for it {where}.") from err
    except OSError as err:
        raise OSError(f"{repo_id}: not a local file or folder, and cannot get its config.json {where}: {err}") from err
    for name in GPT2_WEIGHT_FILES:
        try:
            found = fetch(name)
        except EntryNotFoundError:
            continue
        if name.endswith(".index.json"):
            return config, _files_from_index(found, fetch)
        return config, [found]
    raise OSError(f"{repo_id}: no GPT-2 weights {where}; looked for {', '.join(GPT2_WEIGHT_FILES)}.")


# ------------------------------------------------------------------------------------------- GPT-2 -> book


def _names(keys):
    keys = list(keys)
    more = f" ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def _gpt2_plan(config):
    """Each GPT-2 tensor the model needs: `(expected shape, convert, copies)`; `convert` gives the book's tensors,
    and `copies` says they never share memory with its input (which may then be read into scratch memory)."""
    d, ctx = config.emb_dim, config.context_length

    def owned(t):
        return t.clone(memory_format=torch.contiguous_format)

    def same(name):
        return lambda t: {name: t}, False

    def linear(name):
        return lambda t: {name: owned(t.t())}, True

    def qkv_weight(prefix):
        return lambda t: {f"{prefix}.{n}.weight": owned(part.t())
                          for n, part in zip(("W_query", "W_key", "W_value"), t.split(d, dim=1))}, True

    def qkv_bias(prefix, key):
        def convert(t):
            if config.qkv_bias:
                return {f"{prefix}.{n}.bias": owned(part) for n, part in zip(("W_query", "W_key", "W_value"), t.split(d))}
            if torch.count_nonzero(t):
                raise ValueError(f"{key} has non-zero query/key/value biases but the config has qkv_bias=False; "
                                 "load with qkv_bias=True.")
            return {}
        return convert, True

    def positions(t):
        return {"pos_emb.weight": t if t.shape[0] == ctx else owned(t[:ctx])}

    plan = {
        "wte.weight": ((config.vocab_size, d), *same("tok_emb.weight")),
        "wpe.weight": ((ctx, d), positions, False),
    }
    for i in range(config.n_layers):
        g, t = f"h.{i}.", f"trf_blocks.{i}."
        plan.update({
            g + "ln_1.weight": ((d,), *same(t + "norm1.scale")),
            g + "ln_1.bias": ((d,), *same(t + "norm1.shift")),
            g + "attn.c_attn.weight": ((d, 3 * d), *qkv_weight(t + "att")),
            g + "attn.c_attn.bias": ((3 * d,), *qkv_bias(t + "att", g + "attn.c_attn.bias")),
            g + "attn.c_proj.weight": ((d, d), *linear(t + "att.out_proj.weight")),
            g + "attn.c_proj.bias": ((d,), *same(t + "att.out_proj.bias")),
            g + "ln_2.weight": ((d,), *same(t + "norm2.scale")),
            g + "ln_2.bias": ((d,), *same(t + "norm2.shift")),
            g + "mlp.c_fc.weight": ((d, 4 * d), *linear(t + "ff.layers.0.weight")),
            g + "mlp.c_fc.bias": ((4 * d,), *same(t + "ff.layers.0.bias")),
            g + "mlp.c_proj.weight": ((4 * d, d), *linear(t + "ff.layers.2.weight")),
            g + "mlp.c_proj.bias": ((d,), *same(t + "ff.layers.2.bias")),
        })
    plan["ln_f.weight"] = ((d,), *same("final_norm.scale"))
    plan["ln_f.bias"] = ((d,), *same("final_norm.shift"))
    return plan


def _gpt2_names(keys, where):
    """GPT-2 names without the `transformer.` prefix `GPT2LMHeadModel.save_pretrained` writes -> names in the file."""
    names = {}
    for key in keys:
        name = key.removeprefix("transformer.")
        if name in names:
            raise ValueError(f"{where}: {name!r} appears twice (as {names[name]!r} and {key!r})")
        names[name] = key
    return names


def _check_gpt2_layout(source, names, config, plan, source_tied, where):
    """Every problem with names and shapes, in one ValueError, before any tensor data is read."""
    problems = []
    for name, (shape, _, _) in plan.items():
        if name not in names:
            continue
        found = source.shape(names[name])
        ok = found == shape or (name == "wpe.weight" and len(found) == 2 and found[1] == shape[1] and found[0] >= shape[0])
        if not ok:
            problems.append(f"{names[name]}: checkpoint {found}, model expects {shape}")
    head_needed = not config.tie_word_embeddings and not source_tied
    missing = [n for n in plan if n not in names] + (["lm_head.weight"] if head_needed and "lm_head.weight" not in names else [])
    unexpected = [key for name, key in names.items()
                  if name not in plan and name != "lm_head.weight" and not _GPT2_BUFFER.fullmatch(name)]
    if "lm_head.weight" in names:
        found = source.shape(names["lm_head.weight"])
        if found != (config.vocab_size, config.emb_dim):
            problems.append(f"{names['lm_head.weight']}: checkpoint {found}, "
                            f"model expects {(config.vocab_size, config.emb_dim)}")
    _raise_if(problems, missing, unexpected, where, _gpt2_hint(source, names, config))


def _gpt2_hint(source, names, config):
    if "wte.weight" not in names:
        return ""
    vocab, emb = source.shape(names["wte.weight"])
    layers = len({n.split(".")[1] for n in names if n.startswith("h.")})
    return (f"The checkpoint is vocab {vocab}, n_embd {emb}, n_layer {layers}; the model is vocab "
            f"{config.vocab_size}, emb_dim {config.emb_dim}, n_layers {config.n_layers}.")


def _raise_if(problems, missing, unexpected, where, hint=""):
    if not (problems or missing or unexpected):
        return
    lines = [f"Cannot load {where}:"]
    if problems:
        lines.append(f"  {len(problems)} tensor(s) of another size:")
        lines += [f"    {p}" for p in problems[:_MAX_LISTED]]
        if len(problems) > _MAX_LISTED:
            lines.append(f"    ... and {len(problems) - _MAX_LISTED} more")
    if missing:
        lines.append(f"  {len(missing)} missing key(s): {_names(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected key(s): {_names(unexpected)}")
    if hint:
        lines.append(hint)
    raise ValueError("\n".join(lines))


def _convert_gpt2(source, names, config, plan, dtype):
    """The book's state dict, converting (and freeing) one GPT-2 tensor at a time."""

    def cast(t):
        return t if dtype is None else t.to(dtype)

    out = {}
    for name, (_, convert, copies) in plan.items():
        tensor = source.get(names[name], scratch=copies)
        out.update({k: cast(v) for k, v in convert(tensor).items()})
        del tensor
    if "lm_head.weight" in names:
        head = cast(source.get(names["lm_head.weight"]))
        if not config.tie_word_embeddings:
            out["out_head.weight"] = head
        elif not torch.equal(head, out["tok_emb.weight"]):
            raise ValueError(
                f"{names['lm_head.weight']} differs from {names['wte.weight']} but the config ties the output head "
                "to the token embedding; load with tie_word_embeddings=False to keep the separate head."
            )
    elif not config.tie_word_embeddings:
        # GPT-2 ties its head to wte; an untied model starts from a copy of it, as the book's load_weights_into_gpt does.
        out["out_head.weight"] = out["tok_emb.weight"].clone()
    return out


def convert_gpt2_state_dict(state_dict, config, *, dtype=None):
    """A GPT-2 state dict (either layout) as the book's state dict for `config`, after checking every name and shape."""
    source = _DictSource(state_dict)
    names = _gpt2_names(source.keys(), "GPT-2 state dict")
    plan = _gpt2_plan(config)
    _check_gpt2_layout(source, names, config, plan, source_tied=True, where="GPT-2 state dict")
    return _convert_gpt2(source, names, config, plan, dtype)


# ----------------------------------------------------------------------------------------- into the model


def _unique_state_keys(model):
    """State-dict keys and shapes, without the second name of a tied parameter."""
    seen, out = set(), {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        out[name] = tuple(tensor.shape)
    return out


def _check_against_model(model, state_dict, where):
    expected = _unique_state_keys(model)
    problems = [f"{k}: checkpoint {tuple(v.shape)}, model expects {expected[k]}"
                for k, v in state_dict.items() if k in expected and tuple(v.shape) != expected[k]]
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    hint = ""
    if any(k.endswith("att.W_query.bias") for k in unexpected):
        hint = "The checkpoint has query/key/value biases: use qkv_bias=True."
    elif any(k.endswith("att.W_query.bias") for k in missing):
        hint = "The checkpoint has no query/key/value biases: use qkv_bias=False."
    _raise_if(problems, missing, unexpected, where, hint)


def _new_model(model_class, config, state_dict, where):
    """`model_class(config)` built on the meta device, its parameters then taken over from `state_dict`."""
    if model_class is None:
        from .modeling_gpt import GPTForCausalLM as model_class
    with torch.device("meta"):
        model = model_class(config)
    _check_against_model(model, state_dict, where)
    model.load_state_dict(state_dict, strict=False, assign=True)
    model.tie_weights()
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{model_class.__name__} has tensors the checkpoint cannot fill: {_names(left)}")
    return model.eval()


def load_gpt2(name_or_path, *, model_class=None, config=None, dtype=None, **kwargs):
    """OpenAI's GPT-2 (a Hub id, a book name such as `gpt2-small (124M)`, a folder or a weights file) as a book GPT.

    The config comes from the checkpoint's `config.json` (context_length = n_positions, qkv_bias, tied head) unless
    `config=` is given; other keyword arguments are Hub options (`revision`, `cache_dir`, `token`,
    `local_files_only`, `force_download`) or config overrides (`context_length=256` keeps the first 256
    position embeddings, `drop_rate=0.0`, ...). `dtype` casts the weights (default: as stored).
    OpenAI's original TensorFlow files (the book's `gpt_download.py`) are not read: the Hub's copies are the same
    weights.
    """
    hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
    config_path, files = resolve_gpt2_checkpoint(name_or_path, **hub_kwargs)
    gpt2_config = {}
    if config_path is not None:
        try:
            with open(config_path, encoding="utf-8") as f:
                gpt2_config = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{config_path}: not valid JSON ({err})") from err
    if config is not None:
        config = _with_overrides(config, kwargs)
    elif config_path is not None:
        config = gpt2_config_to_gpt_config(gpt2_config, **kwargs)
    else:
        raise ValueError(f"{files[0]}: no config.json beside it; pass config=GPTConfig(...) to load it into.")
    where = ", ".join(map(str, files))
    source = _open_weights(files)
    try:
        names = _gpt2_names(source.keys(), where)
        plan = _gpt2_plan(config)
        _check_gpt2_layout(source, names, config, plan, gpt2_config.get("tie_word_embeddings", True), where)
        state_dict = _convert_gpt2(source, names, config, plan, dtype)
    finally:
        source.close()
    return _new_model(model_class, config, state_dict, where)


def load_gpt2_state_dict(model, state_dict):
    """Load a GPT-2 state dict (either layout) into an existing model, all or nothing.

    Names, shapes and values are checked and converted first; the model is written only when all of them fit,
    so a bad state dict leaves it exactly as it was.
    """
    converted = convert_gpt2_state_dict(state_dict, model.config)
    _check_against_model(model, converted, "GPT-2 state dict")
    with torch.no_grad():
        model.load_state_dict(converted, strict=False)
    model.tie_weights()
    return model


# ----------------------------------------------------------------------------------------------- the book


def _book_state_dict(obj, path):
    """The model weights in what the book saves: `model.state_dict()` or `{"model_state_dict", "optimizer_state_dict"}`."""
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected the book's model state dict or a dict with 'model_state_dict', "
                         f"found {type(obj).__name__} with keys {_names(list(obj)[:5]) if isinstance(obj, dict) else '-'}")
    for prefix in ("_orig_mod.", "module."):  # torch.compile and DistributedDataParallel wrappers
        if all(k.startswith(prefix) for k in obj):
            obj = {k.removeprefix(prefix): v for k, v in obj.items()}
    return {k: v for k, v in obj.items() if not _BOOK_BUFFER.fullmatch(k)}


def load_book_checkpoint(path, config, *, model_class=None, dtype=None, **overrides):
    """A `model.pth` or `model_and_optimizer.pth` saved by the book's code, in a `GPTForCausalLM`.

    `config` is a `GPTConfig`, the book's config dict (e.g. `GPT_CONFIG_124M`) or a path to a JSON file of it.
    """
    config = _book_config(config, overrides)
    state_dict = _book_state_dict(_torch_load(path), path)
    if dtype is not None:
        state_dict = {k: v.to(dtype) for k, v in state_dict.items()}
    if config.tie_word_embeddings and "out_head.weight" in state_dict:
        head = state_dict.pop("out_head.weight")
        if "tok_emb.weight" in state_dict and not torch.equal(head, state_dict["tok_emb.weight"]):
            raise ValueError(f"{path}: out_head.weight differs from tok_emb.weight but the config ties them "
                             "(tie_word_embeddings=True); use tie_word_embeddings=False, as the book's models are.")
    return _new_model(model_class, config, state_dict, str(path))


# -------------------------------------------------------------------------------------------- book -> GPT-2


def gpt_to_gpt2_state_dict(model, *, share=False):
    """The stock `GPT2LMHeadModel` state dict (`transformer.` prefix, `lm_head.weight` when untied) of a book GPT.

    Linear weights become Conv1D (in, out); query/key/value are fused into `c_attn`, with zero biases when the
    model has none. `share=True` lets tensors that need no conversion share memory with the model.
    """
    config = model.config
    sd = model.state_dict()

    def keep(t):
        return t if share else t.clone()

    def conv1d(t):
        return t.t().contiguous()

    out = {"transformer.wte.weight": keep(sd["tok_emb.weight"]), "transformer.wpe.weight": keep(sd["pos_emb.weight"])}
    for i in range(config.n_layers):
        g, t = f"transformer.h.{i}.", f"trf_blocks.{i}."
        qkv = [f"{t}att.{n}" for n in ("W_query", "W_key", "W_value")]
        weights = [sd[f"{n}.weight"] for n in qkv]
        biases = [sd[f"{n}.bias"] for n in qkv] if config.qkv_bias else [torch.zeros_like(w[:, 0]) for w in weights]
        out.update({
            g + "ln_1.weight": keep(sd[t + "norm1.scale"]),
            g + "ln_1.bias": keep(sd[t + "norm1.shift"]),
            g + "attn.c_attn.weight": torch.cat(weights, dim=0).t().contiguous(),
            g + "attn.c_attn.bias": torch.cat(biases),
            g + "attn.c_proj.weight": conv1d(sd[t + "att.out_proj.weight"]),
            g + "attn.c_proj.bias": keep(sd[t + "att.out_proj.bias"]),
            g + "ln_2.weight": keep(sd[t + "norm2.scale"]),
            g + "ln_2.bias": keep(sd[t + "norm2.shift"]),
            g + "mlp.c_fc.weight": conv1d(sd[t + "ff.layers.0.weight"]),
            g + "mlp.c_fc.bias": keep(sd[t + "ff.layers.0.bias"]),
            g + "mlp.c_proj.weight": conv1d(sd[t + "ff.layers.2.weight"]),
            g + "mlp.c_proj.bias": keep(sd[t + "ff.layers.2.bias"]),
        })
    out["transformer.ln_f.weight"] = keep(sd["final_norm.scale"])
    out["transformer.ln_f.bias"] = keep(sd["final_norm.shift"])
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = keep(sd["out_head.weight"])
    return out


def _to_gpt2(model, share):
    from transformers import GPT2LMHeadModel

    state_dict = gpt_to_gpt2_state_dict(model, share=share)
    with torch.device("meta"):
        gpt2 = GPT2LMHeadModel(gpt_config_to_gpt2_config(model.config))
    result = gpt2.load_state_dict(state_dict, strict=False, assign=True)
    gpt2.tie_weights()
    left = [n for n, t in [*gpt2.named_parameters(), *gpt2.named_buffers()] if t.is_meta]
    if result.unexpected_keys or left:
        raise RuntimeError(f"GPT2LMHeadModel does not match the export: unexpected {result.unexpected_keys}, unfilled {left}")
    gpt2.generation_config = copy.deepcopy(model.generation_config)
    return gpt2.train(model.training)


def to_gpt2(model):
    """A stock `transformers.GPT2LMHeadModel` with the same logits, independent of `model` (its own memory)."""
    return _to_gpt2(model, share=False)


def save_pretrained_gpt2(model, save_directory, **kwargs):
    """Save `model` as a stock `gpt2` folder (`model_type: gpt2`, `model.safetensors`) that any GPT-2 tool loads
    without remote code. `kwargs` go to `GPT2LMHeadModel.save_pretrained` (e.g. `max_shard_size`, `push_to_hub`)."""
    return _to_gpt2(model, share=True).save_pretrained(save_directory, **kwargs)


__all__ = [
    "GPT2_HUB_IDS",
    "convert_gpt2_state_dict",
    "gpt2_config_to_gpt_config",
    "gpt_config_to_gpt2_config",
    "gpt_to_gpt2_state_dict",
    "load_book_checkpoint",
    "load_gpt2",
    "load_gpt2_state_dict",
    "resolve_gpt2_checkpoint",
    "save_pretrained_gpt2",
    "to_gpt2",
]
