"""The GPT of *Build a Large Language Model (From Scratch)* (ch. 4) as a `transformers` causal LM, with the book's
names (`tok_emb`, `trf_blocks.N.att.W_query`, `out_head`) under a `GPTModel` backbone (`model.gpt`).
Shipped to the Hub as remote code, so it imports only torch and transformers."""

import math
import os
import pickle

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import WEIGHTS_NAME, can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

try:
    from transformers.modeling_utils import slice_logits_to_keep
except ImportError:  # older transformers 5.x (e.g. 5.17) lack the helper; this is its int / 1-D index case

    def slice_logits_to_keep(hidden_states, logits_to_keep):
        return hidden_states[:, slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep]


# transformers 5.24 renamed the KV cache `past_key_values` -> `cache`; hand it on under the installed name, take both.
CACHE = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def _one_cache(cache, past_key_values):
    if cache is not None and past_key_values is not None:
        raise ValueError("Pass the KV cache as `cache` or as `past_key_values` (its name before transformers 5.24), "
                         "not both.")
    return cache if cache is not None else past_key_values


try:
    from .configuration_gpt import GPTConfig
    from .conversion_gpt import (BOOK_BACKBONE_MODULES, _refuse_file_as_folder, book_key_to_model_key,
                                 check_weights_fit, load_book_checkpoint, load_gpt2, save_pretrained_gpt2, to_gpt2)
    from .weight_files_gpt import refused_pickle
except ImportError:  # loaded as lone files
    from configuration_gpt import GPTConfig
    from conversion_gpt import (BOOK_BACKBONE_MODULES, _refuse_file_as_folder, book_key_to_model_key,
                                check_weights_fit, load_book_checkpoint, load_gpt2, save_pretrained_gpt2, to_gpt2)
    from weight_files_gpt import refused_pickle


class LayerNorm(nn.Module):
    """The book's LayerNorm (biased variance, eps inside the root), with its `scale`/`shift` names."""

    def __init__(self, emb_dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class FeedForward(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(config.emb_dim, 4 * config.emb_dim),
            nn.GELU(approximate="tanh"),  # the book's GELU, as one kernel
            nn.Linear(4 * config.emb_dim, config.emb_dim),
        )
        self.layers[2].is_residual_projection = True

    def forward(self, x):
        return self.layers(x)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """The book's attention written out: softmax(q k^T / sqrt(d) + mask), dropout on the weights, times v."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = torch.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class MultiHeadAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        d = config.emb_dim
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.n_heads
        self.head_dim = d // config.n_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        self.W_query = nn.Linear(d, d, bias=config.qkv_bias)
        self.W_key = nn.Linear(d, d, bias=config.qkv_bias)
        self.W_value = nn.Linear(d, d, bias=config.qkv_bias)
        self.out_proj = nn.Linear(d, d)
        self.out_proj.is_residual_projection = True
        self.dropout = nn.Dropout(config.drop_rate)

    def forward(self, x, attention_mask=None, cache=None, past_key_values=None, **kwargs):
        cache = _one_cache(cache, past_key_values)
        b, t, _ = x.shape
        heads = (b, t, self.num_heads, self.head_dim)
        query, key, value = (W(x).view(heads).transpose(1, 2) for W in (self.W_query, self.W_key, self.W_value))
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)

        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        dropout = self.dropout.p if self.training else 0.0
        context, attn_weights = attention(self, query, key, value, attention_mask, dropout=dropout,
                                          scaling=self.scaling, **kwargs)
        return self.out_proj(context.reshape(b, t, -1)), attn_weights


class TransformerBlock(GradientCheckpointingLayer):
    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.att = MultiHeadAttention(config, layer_idx)
        self.ff = FeedForward(config)
        self.norm1 = LayerNorm(config.emb_dim, config.layer_norm_eps)
        self.norm2 = LayerNorm(config.emb_dim, config.layer_norm_eps)
        self.drop_shortcut = nn.Dropout(config.drop_rate)

    def forward(self, x, attention_mask=None, **kwargs):
        attn_output, _ = self.att(self.norm1(x), attention_mask=attention_mask, **kwargs)
        x = x + self.drop_shortcut(attn_output)
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTPreTrainedModel(PreTrainedModel):
    config_class = GPTConfig
    config: GPTConfig
    base_model_prefix = "gpt"
    _input_embed_layer = "tok_emb"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerBlock"]
    _skip_keys_device_placement = [CACHE]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {"hidden_states": TransformerBlock, "attentions": OutputRecorder(MultiHeadAttention, index=1)}
    # The book's models carry a causal-mask buffer per block; SDPA makes it unnecessary.
    _keys_to_ignore_on_load_unexpected = [r"att\.mask"]

    @torch.no_grad()
    def _init_weights(self, module):
        """`book`: keep PyTorch's defaults from construction, as the book does. `gpt2`: GPT-2's scheme."""
        if self.config.init_scheme == "book":
            return
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "is_residual_projection", False):
                std /= math.sqrt(2 * self.config.n_layers)  # two residual additions per block
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, LayerNorm):
            init.ones_(module.scale)
            init.zeros_(module.shift)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`auto_map` names only the saved class; add the backbone so `AutoModel` loads any hf_gpt folder too."""
        _refuse_file_as_folder(save_directory)
        module = type(self).__module__.rsplit(".", 1)[-1]
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), "AutoModel": f"{module}.GPTModel"}
        return super().save_pretrained(save_directory, *args, **kwargs)


class GPTModel(GPTPreTrainedModel):
    """The book's `GPTModel` without its `out_head`: the `base_model` that tools with a head of their own
    (TRL's fused LM head, classification heads) run."""

    _auto_class = "AutoModel"
    # Every hf_gpt folder is a GPTForCausalLM's: loading its backbone alone leaves the head behind, quietly.
    _keys_to_ignore_on_load_unexpected = [*GPTPreTrainedModel._keys_to_ignore_on_load_unexpected, r"^out_head\."]

    def __init__(self, config):
        super().__init__(config)
        self.tok_emb = nn.Embedding(config.vocab_size, config.emb_dim)
        self.pos_emb = nn.Embedding(config.context_length, config.emb_dim)
        self.drop_emb = nn.Dropout(config.drop_rate)
        self.trf_blocks = nn.ModuleList([TransformerBlock(config, i) for i in range(config.n_layers)])
        self.final_norm = LayerNorm(config.emb_dim, config.layer_norm_eps)
        self.post_init()

    def _check_input_ids(self, input_ids):
        """Bad token ids fail here with what is wrong, not deep inside the embedding or attention."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be 2-D (batch, tokens), got shape {tuple(input_ids.shape)}; for one "
                             f"sequence add the batch dimension: input_ids.unsqueeze(0) (or tokenizer(..., "
                             f"return_tensors='pt')).")
        if input_ids.shape[1] == 0:
            raise ValueError(f"input_ids holds no tokens (shape {tuple(input_ids.shape)}); give at least one token, "
                             "e.g. the tokenizer's <|endoftext|> as a start.")
        if torch.compiler.is_compiling() or input_ids.is_meta:
            return
        low, high = (v.item() for v in torch.aminmax(input_ids))
        if low < 0 or high >= self.config.vocab_size:
            vocab = self.config.vocab_size
            raise ValueError(f"token id {low if low < 0 else high} is outside the vocabulary: ids must be in "
                             f"[0, {vocab - 1}] (vocab_size={vocab}); was the text tokenized with this model's "
                             "tokenizer?")

    @capture_outputs
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, cache=None, **kwargs):
        cache = _one_cache(cache, past_key_values)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if input_ids is not None:
            self._check_input_ids(input_ids)
        if inputs_embeds is None:
            inputs_embeds = self.tok_emb(input_ids)
        seq_len = inputs_embeds.shape[1]

        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past_len = cache.get_seq_length() if cache is not None else 0
        # A static cache's length is a tensor (compiled, a graph break); `generate` crops the window anyway.
        traced_len = isinstance(past_len, torch.Tensor) and torch.compiler.is_compiling()
        if not traced_len and past_len + seq_len > self.config.context_length:
            raise ValueError(f"The model sees at most context_length={self.config.context_length} tokens, got "
                             f"{past_len + seq_len} ({past_len} cached + {seq_len} new). Crop the input to its last "
                             f"{self.config.context_length} tokens, as the book's generate_text_simple does "
                             "(`generate` crops like that by itself).")
        # Only caller positions may mark packed sequences; handing ours to the mask would cost a host sync and,
        # compiled, keep SDPA off its flash kernels.
        given_positions = position_ids
        if position_ids is None:
            position_ids = (torch.arange(seq_len, device=inputs_embeds.device) + past_len).unsqueeze(0)

        x = self.drop_emb(inputs_embeds + self.pos_emb(position_ids))
        mask = create_causal_mask(self.config, x, attention_mask, cache, position_ids=given_positions)
        for block in self.trf_blocks:
            x = block(x, attention_mask=mask, position_ids=position_ids, **{CACHE: cache}, **kwargs)
        return BaseModelOutputWithPast(last_hidden_state=self.final_norm(x), **{CACHE: cache if use_cache else None})


def _book_keys_pre_hook(module, state_dict, prefix, *args):
    """Load the book's flat `torch.save` keys (`tok_emb.weight`, ...): they gain the `gpt.` prefix."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        renamed = prefix + book_key_to_model_key(key[len(prefix):])
        if renamed != key:
            state_dict[renamed] = state_dict.pop(key)


class GPTForCausalLM(GPTPreTrainedModel, GenerationMixin):
    """The book's `GPTModel` (backbone `self.gpt` + `out_head`) with loss, KV cache and `generate`."""

    _tied_weights_keys = {"out_head.weight": "gpt.tok_emb.weight"}
    _auto_class = "AutoModelForCausalLM"  # save_pretrained writes `auto_map` and copies this file

    def __init__(self, config):
        super().__init__(config)
        self.gpt = GPTModel(config)  # built first, as the book builds its embeddings and blocks before out_head
        self.out_head = nn.Linear(config.emb_dim, config.vocab_size, bias=False)
        self.register_load_state_dict_pre_hook(_book_keys_pre_hook)
        self.post_init()

    def __getattr__(self, name):
        if name in BOOK_BACKBONE_MODULES:
            return getattr(self._modules["gpt"], name)
        return super().__getattr__(name)

    def __setattr__(self, name, value):
        if name in BOOK_BACKBONE_MODULES and "gpt" in self.__dict__.get("_modules", {}):
            setattr(self._modules["gpt"], name, value)
        else:
            super().__setattr__(name, value)

    def get_output_embeddings(self):
        return self.out_head

    def set_output_embeddings(self, value):
        self.out_head = value

    def get_decoder(self):
        return self.gpt

    def set_decoder(self, decoder):
        self.gpt = decoder

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, shift_labels=None, use_cache=None, logits_to_keep=0, cache=None,
                **kwargs):
        """`labels` are shifted inside; `shift_labels` are the book's `target_ids`, so n tokens train n predictions."""
        if labels is not None and shift_labels is not None:
            raise ValueError("Pass `labels` (shifted inside) or `shift_labels` (already shifted), not both.")
        outputs = self.gpt(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                           inputs_embeds=inputs_embeds, use_cache=use_cache, cache=_one_cache(cache, past_key_values),
                           **kwargs)
        logits = self.out_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))

        loss = None
        if labels is not None or shift_labels is not None:
            if shift_labels is not None:
                shift_labels = shift_labels.contiguous()
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, shift_labels=shift_labels,
                                      **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                      attentions=outputs.attentions, **{CACHE: getattr(outputs, CACHE)})

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, inputs_embeds=None, **kwargs):
        """Past `context_length`, crop and recompute like the book's `generate_text_simple` (positions restart)."""
        inputs = super().prepare_inputs_for_generation(input_ids, attention_mask=attention_mask,
                                                       inputs_embeds=inputs_embeds, **kwargs)
        context = self.config.context_length
        if input_ids.shape[1] <= context:  # the whole sequence fits; skip reading a static cache's length (a GPU sync)
            return inputs
        cache = inputs.get(CACHE)
        past_len = cache.get_seq_length() if isinstance(cache, Cache) else 0
        if inputs.get("input_ids") is None or past_len + inputs["input_ids"].shape[1] <= context:
            return inputs
        if isinstance(cache, Cache):
            cache.reset()
        inputs["input_ids"] = input_ids[:, -context:].contiguous()
        if attention_mask is not None and attention_mask.ndim == 2:
            inputs["attention_mask"] = window = attention_mask[:, -context:]
            inputs["position_ids"] = (window.long().cumsum(-1) - 1).clamp(min=0)
        else:
            inputs.pop("attention_mask", None)
            inputs["position_ids"] = torch.arange(context, device=input_ids.device).unsqueeze(0)
        return inputs

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' loader, after a local folder's weights are checked against its config (transformers reports
        a misfit as a table of tensors); a pickle torch refuses is named without torch's advice to load it unsafely."""
        folder = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(folder) and not kwargs.get("ignore_mismatched_sizes"):
            config, written = kwargs.get("config"), None
            if not isinstance(config, PretrainedConfig) or config.name_or_path == folder:  # the Auto classes' is
                written = cls.config_class.get_config_dict(folder)[0]
            if not isinstance(config, PretrainedConfig):
                config = cls.config_class.from_dict(dict(written))
            check_weights_fit(cls, config, folder, written)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except pickle.UnpicklingError as err:
            raise refused_pickle(os.path.join(folder, WEIGHTS_NAME), err) from None

    # In conversion_gpt.py, which save_pretrained ships beside this file, so the Hub copy has them too.
    @classmethod
    def from_gpt2(cls, name_or_path, **kwargs):
        """OpenAI's GPT-2 weights (a Hub id such as `gpt2-medium`, a folder or a file) in the book's layout."""
        return load_gpt2(name_or_path, model_class=cls, **kwargs)

    @classmethod
    def from_book_checkpoint(cls, path, config, **kwargs):
        """A `model.pth` or `model_and_optimizer.pth` saved by the book's training code."""
        return load_book_checkpoint(path, config, model_class=cls, **kwargs)

    def to_gpt2(self):
        """A stock `transformers.GPT2LMHeadModel` with the same weights and logits."""
        return to_gpt2(self)

    def save_pretrained_gpt2(self, save_directory, **kwargs):
        """Save as a stock `gpt2` folder that loads with no remote code."""
        return save_pretrained_gpt2(self, save_directory, **kwargs)


if __name__ == "hf_gpt.model.modeling_gpt":  # the installed package, not a copy loaded as remote code
    AutoModel.register(GPTConfig, GPTModel, exist_ok=True)
    AutoModelForCausalLM.register(GPTConfig, GPTForCausalLM, exist_ok=True)

__all__ = ["GPTForCausalLM", "GPTModel", "GPTPreTrainedModel"]
