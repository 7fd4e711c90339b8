"""OpenAI's GPT-2 checkpoints and the book's `model.pth` in and out of `GPTForCausalLM`, through one table.

Names and shapes are checked before tensor data is read, so a bad file fails fast; ships as remote code too."""

import copy
import json
import os
import re
from pathlib import Path

import torch
from transformers import PretrainedConfig
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

try:
    from .configuration_gpt import GPTConfig, check_config_fields
    from .weight_files_gpt import (DictSource, names as _names, open_weights, read_gpt2_config, resolve_gpt2_checkpoint,
                                  torch_load)
except ImportError:  # loaded as lone files
    from configuration_gpt import GPTConfig, check_config_fields
    from weight_files_gpt import (DictSource, names as _names, open_weights, read_gpt2_config, resolve_gpt2_checkpoint,
                                 torch_load)

# GPT-2 name -> the book's name, and how the tensor changes from GPT-2 to the book ({i}: the block index):
#   copy       the same tensor
#   positions  the first context_length rows (a model may keep fewer positions than GPT-2's 1024)
#   transpose  Conv1D (in, out) -> nn.Linear (out, in)
#   qkv        c_attn's fused (in, 3 * out) -> W_query, W_key, W_value, each (out, in); its bias splits likewise
#              (a model without query/key/value biases takes only all-zero ones, and exports zeros)
GPT2_WEIGHT_MAP = (
    ("wte.weight", "tok_emb.weight", "copy"),
    ("wpe.weight", "pos_emb.weight", "positions"),
    ("h.{i}.ln_1.weight", "trf_blocks.{i}.norm1.scale", "copy"),
    ("h.{i}.ln_1.bias", "trf_blocks.{i}.norm1.shift", "copy"),
    ("h.{i}.attn.c_attn.weight", "trf_blocks.{i}.att.W_{qkv}.weight", "qkv"),
    ("h.{i}.attn.c_attn.bias", "trf_blocks.{i}.att.W_{qkv}.bias", "qkv"),
    ("h.{i}.attn.c_proj.weight", "trf_blocks.{i}.att.out_proj.weight", "transpose"),
    ("h.{i}.attn.c_proj.bias", "trf_blocks.{i}.att.out_proj.bias", "copy"),
    ("h.{i}.ln_2.weight", "trf_blocks.{i}.norm2.scale", "copy"),
    ("h.{i}.ln_2.bias", "trf_blocks.{i}.norm2.shift", "copy"),
    ("h.{i}.mlp.c_fc.weight", "trf_blocks.{i}.ff.layers.0.weight", "transpose"),
    ("h.{i}.mlp.c_fc.bias", "trf_blocks.{i}.ff.layers.0.bias", "copy"),
    ("h.{i}.mlp.c_proj.weight", "trf_blocks.{i}.ff.layers.2.weight", "transpose"),
    ("h.{i}.mlp.c_proj.bias", "trf_blocks.{i}.ff.layers.2.bias", "copy"),
    ("ln_f.weight", "final_norm.scale", "copy"),
    ("ln_f.bias", "final_norm.shift", "copy"),
)
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")
_HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download")
# Causal-mask buffers that old GPT-2 files (and the book's state dicts) carry; the model builds its mask itself.
_GPT2_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")
_BOOK_BUFFER = re.compile(r"(gpt\.)?trf_blocks\.\d+\.att\.mask")

# The book's top-level modules, in the backbone; `model.trf_blocks` (the book's ch. 6 code) still reaches them.
BOOK_BACKBONE_MODULES = ("tok_emb", "pos_emb", "drop_emb", "trf_blocks", "final_norm")


def book_key_to_model_key(key):
    """`trf_blocks.0.att.W_query.weight` -> `gpt.trf_blocks.0.att.W_query.weight`; `out_head.weight` unchanged."""
    return f"gpt.{key}" if key.split(".", 1)[0] in BOOK_BACKBONE_MODULES else key


def weight_map(config):
    """`GPT2_WEIGHT_MAP` spelled out for `config`'s blocks: `[(GPT-2 name, [the model's names], op)]`."""
    rows = []
    for gpt2, book, op in GPT2_WEIGHT_MAP:
        for i in range(config.n_layers) if "{i}" in gpt2 else [None]:
            names = [book.format(i=i, qkv=n) for n in ("query", "key", "value")] if op == "qkv" else [book.format(i=i)]
            targets = [book_key_to_model_key(name) for name in names]
            rows.append((gpt2.format(i=i), targets, op))
    return rows


def gpt2_config_to_gpt_config(gpt2_config, **overrides):
    """The `GPTConfig` that mirrors a GPT-2 config exactly, refusing variants the book's block cannot reproduce."""
    cfg = gpt2_config if isinstance(gpt2_config, dict) else gpt2_config.to_dict()
    get = cfg.get
    if get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"Not a GPT-2 config: model_type is {get('model_type')!r}, expected 'gpt2'.")
    lacking = [k for k in ("n_embd", "n_layer", "n_head") if k not in cfg]
    if not any(k in cfg for k in ("n_positions", "n_ctx")):
        lacking.append("n_positions")
    if lacking:  # never guess a size: 768/12 defaults would build a model the weights do not fit
        raise ValueError(f"GPT-2 config lacks {', '.join(lacking)}: a GPT-2 config.json names the model's size "
                         f"(n_embd, n_layer, n_head, n_positions); fix the file or save it again with "
                         f"`GPT2Config.save_pretrained`.")
    n_embd = get("n_embd")
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
    fields = dict(
        vocab_size=get("vocab_size", 50257), context_length=get("n_positions", get("n_ctx")), emb_dim=n_embd,
        n_heads=cfg["n_head"], n_layers=cfg["n_layer"], qkv_bias=True,
        drop_rate=get("resid_pdrop", 0.1),  # the book has one rate; GPT-2's three are equal in every released config
        layer_norm_eps=get("layer_norm_epsilon", 1e-5), initializer_range=get("initializer_range", 0.02),
        tie_word_embeddings=get("tie_word_embeddings", True), bos_token_id=get("bos_token_id", 50256),
        eos_token_id=get("eos_token_id", 50256), pad_token_id=get("pad_token_id"),
    )
    return GPTConfig(**{**fields, **check_config_fields(overrides)})


def gpt_config_to_gpt2_config(config):
    """The stock `GPT2Config` with the same architecture as a `GPTConfig`."""
    from transformers import GPT2Config

    ctx, p = config.context_length, config.drop_rate
    return GPT2Config(
        vocab_size=config.vocab_size, n_embd=config.emb_dim, n_layer=config.n_layers, n_head=config.n_heads,
        n_positions=ctx, n_ctx=ctx,  # n_ctx: not written by transformers 5; llama.cpp's convert_hf_to_gguf.py needs it
        n_inner=None, activation_function="gelu_new", resid_pdrop=p, embd_pdrop=p, attn_pdrop=p,
        layer_norm_epsilon=config.layer_norm_eps, initializer_range=config.initializer_range,
        use_cache=config.use_cache, bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id, tie_word_embeddings=config.tie_word_embeddings,
        architectures=["GPT2LMHeadModel"],
    )


def _book_config(config, overrides):
    """A new `GPTConfig` from a `GPTConfig`, the book's config dict, or a path to a JSON file of either."""
    if isinstance(config, (str, os.PathLike)):
        with open(config, encoding="utf-8") as f:
            config = json.load(f)
    if isinstance(config, dict):
        return GPTConfig(**{**config, **check_config_fields(overrides)})
    if isinstance(config, PretrainedConfig):  # also the Hub copy's GPTConfig, a class of another module
        return type(config)(**{**config.to_dict(), **check_config_fields(overrides)})
    raise TypeError(f"config must be a GPTConfig, the book's config dict or a path to its JSON, got {type(config)}")


def _gpt2_plan(config, model_class):
    """Each GPT-2 tensor the model needs: `{GPT-2 name: (expected shape, [the model's names], op)}`."""
    d = config.emb_dim
    with torch.device("meta"):
        book_shapes = _unique_state_keys(model_class(config))
    plan = {}
    for gpt2, targets, op in weight_map(config):
        if op == "qkv":
            shape = (d, 3 * d) if targets[0].endswith(".weight") else (3 * d,)
        else:
            shape = book_shapes[targets[0]][::-1] if op == "transpose" else book_shapes[targets[0]]
        plan[gpt2] = (shape, targets, op)
    return plan


def gpt2_tensor_shapes(config, model_class):
    """The GPT-2 checkpoint of `config`'s architecture: `{GPT-2 name: shape}`, read off `GPT2_WEIGHT_MAP`."""
    return {name: shape for name, (shape, _, _) in _gpt2_plan(config, model_class).items()}


def _from_gpt2(t, name, targets, op, config):
    """The model's tensors from one GPT-2 tensor; converted ones get memory of their own."""
    def owned(x):
        return x.clone(memory_format=torch.contiguous_format)

    if op == "copy":
        return {targets[0]: t}
    if op == "positions":
        return {targets[0]: t if t.shape[0] == config.context_length else owned(t[:config.context_length])}
    if op == "transpose":
        return {targets[0]: owned(t.t())}
    if t.dim() == 2:
        return {target: owned(part.t()) for target, part in zip(targets, t.split(config.emb_dim, dim=1))}
    if config.qkv_bias:
        return {target: owned(part) for target, part in zip(targets, t.split(config.emb_dim))}
    if torch.count_nonzero(t):
        raise ValueError(f"{name} has non-zero query/key/value biases but the config has qkv_bias=False; "
                         "load with qkv_bias=True.")
    return {}


def _gpt2_names(keys, where):
    """GPT-2 names without the `transformer.` prefix `GPT2LMHeadModel.save_pretrained` writes -> names in the file."""
    names = {key.removeprefix("transformer."): key for key in keys}
    if len(names) < len(keys):
        raise ValueError(f"{where}: some tensors appear both with and without the `transformer.` prefix")
    return names


def _check_gpt2_layout(source, names, config, plan, source_tied, where):
    """Every problem with names and shapes, in one ValueError, before any tensor data is read."""
    shapes = {name: shape for name, (shape, _, _) in plan.items()}
    shapes["lm_head.weight"] = (config.vocab_size, config.emb_dim)
    head_needed = not config.tie_word_embeddings and not source_tied
    problems = []
    for name, shape in shapes.items():
        if name in names:
            found = source.shape(names[name])
            more_positions = name == "wpe.weight" and len(found) == 2 and found[1] == shape[1] and found[0] >= shape[0]
            if found != shape and not more_positions:
                problems.append(f"{names[name]}: checkpoint {found}, model expects {shape}")
    missing = [n for n in shapes if n not in names and (n != "lm_head.weight" or head_needed)]
    unexpected = [key for name, key in names.items() if name not in shapes and not _GPT2_BUFFER.fullmatch(name)]
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
        lines.append("    " + _names(problems, sep="\n    "))
    if missing:
        lines.append(f"  {len(missing)} missing key(s): {_names(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected key(s): {_names(unexpected)}")
    if hint:
        lines.append(hint)
    raise ValueError("\n".join(lines))


def _convert_gpt2(source, config, model_class, where, source_tied=True, dtype=None):
    """The book's state dict, after checking every name and shape, converting one GPT-2 tensor at a time."""

    def cast(t):
        return t if dtype is None else t.to(dtype)

    names = _gpt2_names(source.keys(), where)
    plan = _gpt2_plan(config, model_class)
    _check_gpt2_layout(source, names, config, plan, source_tied, where)
    tok_emb = book_key_to_model_key("tok_emb.weight")
    out = {}
    for name, (_, targets, op) in plan.items():
        out.update({k: cast(v) for k, v in _from_gpt2(source.get(names[name]), name, targets, op, config).items()})
    if "lm_head.weight" in names:
        head = cast(source.get(names["lm_head.weight"]))
        if not config.tie_word_embeddings:
            out["out_head.weight"] = head
        elif not torch.equal(head, out[tok_emb]):
            raise ValueError(f"{names['lm_head.weight']} differs from {names['wte.weight']} but the config ties the "
                             "output head to the token embedding; load with tie_word_embeddings=False to keep the "
                             "separate head.")
    elif not config.tie_word_embeddings:
        # GPT-2 ties its head to wte; an untied model starts from a copy, as the book's load_weights_into_gpt does.
        out["out_head.weight"] = out[tok_emb].clone()
    return out


def _unique_state_keys(model):
    """State-dict keys and shapes, without the second name of a tied parameter."""
    unique = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        unique.setdefault(id(tensor), (name, tuple(tensor.shape)))
    return dict(unique.values())


def _new_model(model_class, config, state_dict, where):
    """`model_class(config)` built on the meta device, its parameters then taken over from `state_dict`."""
    with torch.device("meta"):
        model = model_class(config)
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
    model.load_state_dict(state_dict, strict=False, assign=True)
    model.tie_weights()
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{model_class.__name__} has tensors the checkpoint cannot fill: {_names(left)}")
    return model.eval()


def _fields_of_weights(shapes):
    """The config fields that a saved model's tensor shapes tell."""
    fields = {"tie_word_embeddings": "out_head.weight" not in shapes,
              "qkv_bias": any(k.endswith("att.W_query.bias") for k in shapes)}
    if len(emb := shapes.get("gpt.tok_emb.weight", ())) == 2:
        fields["vocab_size"], fields["emb_dim"] = emb
    if len(pos := shapes.get("gpt.pos_emb.weight", ())) == 2:
        fields["context_length"] = pos[0]
    if blocks := {int(k.split(".")[2]) for k in shapes if k.startswith("gpt.trf_blocks.")}:
        fields["n_layers"] = max(blocks) + 1
    return fields


def check_weights_fit(model_class, config, folder, written=None):
    """A saved folder's safetensors weights against `config`, before transformers builds the model (it reports a
    misfit as a table of tensors): one ValueError naming the files, the fields and both values. `written`: the
    fields config.json holds, to tell a missing one."""
    folder = Path(folder)
    if not any((folder / name).is_file() for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME)):
        return
    files = resolve_gpt2_checkpoint(folder)[1]
    source = open_weights(files)  # names a truncated or corrupt file
    shapes = {book_key_to_model_key(k): source.shape(k) for k in source.keys() if not _BOOK_BUFFER.fullmatch(k)}
    source.close()  # folders saved before the backbone have the book's flat names, which loading maps
    with torch.device("meta"):
        expected = _unique_state_keys(model_class(config))
    if shapes == expected:
        return
    where = "config.json" if written is not None else "the config"
    differ = []
    for field, value in _fields_of_weights(shapes).items():
        if getattr(config, field) != value:
            said = (f"missing from config.json (so {getattr(config, field)!r})" if written is not None
                    and field not in written else f"{getattr(config, field)!r} in {where}")
            differ.append(f"{field} is {said} but {value!r} in the weights")
    if not differ:  # no field tells it: name the first tensors
        differ = [f"{k} is {shapes.get(k, 'missing')} in the weights but {expected.get(k, 'unknown')} by {where}"
                  for k in sorted(set(shapes) | set(expected)) if shapes.get(k) != expected.get(k)][:3]
    raise ValueError(f"{folder}: {where} does not fit the weights in {', '.join(f.name for f in files)}: "
                     f"{'; '.join(differ)}. Fix {where}, or save the model again with save_pretrained.")


def load_gpt2(name_or_path, *, model_class, config=None, dtype=None, **kwargs):
    """OpenAI's GPT-2 (Hub id, book name such as `gpt2-small (124M)`, folder, file or TF folder) as a book GPT.
    Other keywords are Hub options (`revision`) or config overrides (`context_length=256`)."""
    hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
    config_path, files = resolve_gpt2_checkpoint(name_or_path, **hub_kwargs)
    gpt2_config = {} if config_path is None else read_gpt2_config(config_path)
    where = sized = ", ".join(map(str, files))
    if config is not None:
        config = _book_config(config, kwargs)
    elif config_path is not None:
        config = gpt2_config_to_gpt_config(gpt2_config, **kwargs)
        sized = f"{where} as {config_path.name} describes it"  # a size mismatch may be the config file's fault
    else:
        raise ValueError(f"{files[0]}: no config.json beside it; pass config=GPTConfig(...) to load it into.")
    source = open_weights(files)
    try:
        state_dict = _convert_gpt2(source, config, model_class, sized, gpt2_config.get("tie_word_embeddings", True),
                                   dtype)
    finally:
        source.close()
    return _new_model(model_class, config, state_dict, where)


def load_gpt2_state_dict(model, state_dict):
    """Load a GPT-2 state dict (either layout) into a model, all or nothing: a bad one leaves it as it was."""
    converted = _convert_gpt2(DictSource(state_dict), model.config, type(model), "GPT-2 state dict")
    with torch.no_grad():
        model.load_state_dict(converted, strict=False)
    model.tie_weights()
    return model


def _book_state_dict(obj, path):
    """The model weights in what the book saves: `model.state_dict()` or `{"model_state_dict", ...}`."""
    if isinstance(obj, dict) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = _names(list(obj)[:5]) if isinstance(obj, dict) else "-"
        raise ValueError(f"{path}: expected the book's model state dict or a dict with 'model_state_dict', "
                         f"found {type(obj).__name__} with keys {keys}")
    for prefix in ("_orig_mod.", "module."):  # torch.compile and DistributedDataParallel wrappers
        if all(k.startswith(prefix) for k in obj):
            obj = {k.removeprefix(prefix): v for k, v in obj.items()}
    # The book's flat keys gain the backbone's `gpt.` prefix; an hf_gpt model's own state dict has it already.
    return {book_key_to_model_key(k): v for k, v in obj.items() if not _BOOK_BUFFER.fullmatch(k)}


def load_book_checkpoint(path, config, *, model_class, dtype=None, **overrides):
    """A `model.pth` or `model_and_optimizer.pth` saved by the book's code, in a `GPTForCausalLM`."""
    config = _book_config(config, overrides)
    state_dict = _book_state_dict(torch_load(path), path)
    if dtype is not None:
        state_dict = {k: v.to(dtype) for k, v in state_dict.items()}
    tok_emb = book_key_to_model_key("tok_emb.weight")
    if config.tie_word_embeddings and "out_head.weight" in state_dict:
        head = state_dict.pop("out_head.weight")
        if tok_emb in state_dict and not torch.equal(head, state_dict[tok_emb]):
            raise ValueError(f"{path}: out_head.weight differs from tok_emb.weight but the config ties them "
                             "(tie_word_embeddings=True); use tie_word_embeddings=False, as the book's models are.")
    return _new_model(model_class, config, state_dict, str(path))


def gpt_to_gpt2_state_dict(model, *, share=False):
    """The stock `GPT2LMHeadModel` state dict of a book GPT, by `GPT2_WEIGHT_MAP` read backwards."""
    config = model.config
    sd = model.state_dict()
    out = {}
    for gpt2, targets, op in weight_map(config):
        if op in ("copy", "positions"):
            tensor = sd[targets[0]] if share else sd[targets[0]].clone()
        elif op == "transpose":
            tensor = sd[targets[0]].t().contiguous()
        elif targets[0].endswith(".weight"):
            tensor = torch.cat([sd[name] for name in targets], dim=0).t().contiguous()
        elif config.qkv_bias:
            tensor = torch.cat([sd[name] for name in targets])
        else:
            tensor = sd[targets[0].removesuffix(".bias") + ".weight"].new_zeros(3 * config.emb_dim)
        out["transformer." + gpt2] = tensor
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = sd["out_head.weight"] if share else sd["out_head.weight"].clone()
    return out


def to_gpt2(model, share=False):
    """A stock `transformers.GPT2LMHeadModel` with the same logits, in memory of its own unless `share=True`."""
    from transformers import GPT2LMHeadModel

    state_dict = gpt_to_gpt2_state_dict(model, share=share)
    with torch.device("meta"):
        gpt2 = GPT2LMHeadModel(gpt_config_to_gpt2_config(model.config))
    unexpected = gpt2.load_state_dict(state_dict, strict=False, assign=True).unexpected_keys
    gpt2.tie_weights()
    left = [n for n, t in [*gpt2.named_parameters(), *gpt2.named_buffers()] if t.is_meta]
    if unexpected or left:
        raise RuntimeError(f"GPT2LMHeadModel does not match the export: unexpected {unexpected}, unfilled {left}")
    gpt2.generation_config = copy.deepcopy(model.generation_config)
    return gpt2.train(model.training)


def _refuse_file_as_folder(save_directory):
    """transformers' `save_pretrained` only logs, writes nothing and returns None when handed an existing file."""
    if os.path.isfile(save_directory):
        raise ValueError(f"{save_directory} is an existing file; save_pretrained writes a folder: give a folder path "
                         f"(it is created if missing).")


def save_pretrained_gpt2(model, save_directory, **kwargs):
    """Save `model` as a stock `gpt2` folder that any GPT-2 tool loads without remote code."""
    _refuse_file_as_folder(save_directory)
    return to_gpt2(model, share=True).save_pretrained(save_directory, **kwargs)


__all__ = ["GPT2_WEIGHT_MAP", "check_weights_fit", "gpt2_config_to_gpt_config", "gpt_config_to_gpt2_config",
           "gpt2_tensor_shapes", "gpt_to_gpt2_state_dict", "load_book_checkpoint", "load_gpt2", "load_gpt2_state_dict",
           "save_pretrained_gpt2", "to_gpt2", "weight_map"]
