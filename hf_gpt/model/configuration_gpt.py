"""Configuration of the book's GPT (ch. 4-5), under the book's field names so `GPTConfig(**GPT_CONFIG_124M)` works;
the `transformers` names (`hidden_size`, ...) are aliases. Imports only `transformers`: it ships as remote code."""

import dataclasses
import difflib
import inspect

from transformers import AutoConfig, PretrainedConfig

GPT_CONFIG_124M = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12, "n_layers": 12,
                   "drop_rate": 0.1, "qkv_bias": False}

# OpenAI's GPT-2 sizes (the book's ch. 5 table): preset -> (Hub id, the book's size label), matching the weights.
GPT2_CHECKPOINTS = {
    "gpt2-small": ("openai-community/gpt2", "124M"),
    "gpt2-medium": ("openai-community/gpt2-medium", "355M"),
    "gpt2-large": ("openai-community/gpt2-large", "774M"),
    "gpt2-xl": ("openai-community/gpt2-xl", "1558M"),
}
# Every name people use for one ("gpt2-small (124M)", "124M", "openai-community/gpt2", "gpt2") -> its preset.
GPT2_ALIASES = {
    alias: preset
    for preset, (hub_id, size) in GPT2_CHECKPOINTS.items()
    for alias in (preset, f"{preset} ({size})", size, hub_id, hub_id.split("/")[1])
}
_GPT2_BASE = {"vocab_size": 50257, "context_length": 1024, "drop_rate": 0.1, "qkv_bias": True,
              "tie_word_embeddings": True}
PRESETS = {
    "GPT_CONFIG_124M": dict(GPT_CONFIG_124M),
    "gpt2-small": {**_GPT2_BASE, "emb_dim": 768, "n_layers": 12, "n_heads": 12},
    "gpt2-medium": {**_GPT2_BASE, "emb_dim": 1024, "n_layers": 24, "n_heads": 16},
    "gpt2-large": {**_GPT2_BASE, "emb_dim": 1280, "n_layers": 36, "n_heads": 20},
    "gpt2-xl": {**_GPT2_BASE, "emb_dim": 1600, "n_layers": 48, "n_heads": 25},
    # Small enough to pretrain on a laptop CPU in minutes (the default of scripts/pretrain.py).
    "gpt-tiny": {"vocab_size": 50257, "context_length": 128, "emb_dim": 128, "n_heads": 4, "n_layers": 4,
                 "drop_rate": 0.0, "qkv_bias": False, "tie_word_embeddings": True, "init_scheme": "gpt2"},
}
PRESETS.update({f"{name} ({size})": PRESETS[name] for name, (_, size) in GPT2_CHECKPOINTS.items()})
INIT_SCHEMES = ("book", "gpt2")


class GPTConfig(PretrainedConfig):
    """The book's `GPT_CONFIG_*` dict as a `transformers` config. `init_scheme="book"` gives the book's numbers for
    a seed; `"gpt2"` (GPT-2's initialisation) trains better from scratch."""

    model_type = "hf_gpt"
    _auto_class = "AutoConfig"  # save_pretrained writes `auto_map` and copies this file
    keys_to_ignore_at_inference = ["past_key_values", "cache"]  # the KV cache's names before / since transformers 5.24
    attribute_map = {"hidden_size": "emb_dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers",
                     "max_position_embeddings": "context_length"}

    def __init__(self, vocab_size=50257, context_length=256, emb_dim=768, n_heads=12, n_layers=12, drop_rate=0.1,
                 qkv_bias=False, init_scheme="book", initializer_range=0.02, layer_norm_eps=1e-5,
                 tie_word_embeddings=False, use_cache=True, bos_token_id="<|endoftext|>",
                 eos_token_id="<|endoftext|>", pad_token_id=None, **kwargs):
        self.vocab_size = vocab_size
        self.context_length = context_length
        self.emb_dim = emb_dim
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.drop_rate = drop_rate
        self.qkv_bias = qkv_bias
        self.init_scheme = init_scheme
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.tie_word_embeddings = tie_word_embeddings
        self.use_cache = use_cache
        # GPT-2's <|endoftext|> (id 50256) where the vocabulary has it; none in a smaller toy vocabulary.
        endoftext = 50256 if isinstance(vocab_size, int) and vocab_size > 50256 else None
        self.bos_token_id = endoftext if bos_token_id == "<|endoftext|>" else bos_token_id
        self.eos_token_id = endoftext if eos_token_id == "<|endoftext|>" else eos_token_id
        self.pad_token_id = pad_token_id
        if kwargs.get("model_type", self.model_type) != self.model_type:
            raise ConfigFieldError(f"a {kwargs['model_type']!r} config is not an hf_gpt one (model_type "
                                   f"{self.model_type!r}); OpenAI GPT-2 weights load with GPTForCausalLM.from_gpt2.")
        unknown = sorted(k for k in kwargs if k not in _pretrained_config_keys() and not k.startswith("_"))
        if unknown:
            check_config_fields({unknown[0]: None})  # raises, naming the closest field
        super().__init__(**kwargs)
        self._validate()

    def _validate(self):
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig: `{name}` must be a positive integer, got {value!r}.")
        if self.emb_dim % self.n_heads:
            divisors = [h for h in range(1, self.emb_dim + 1) if self.emb_dim % h == 0][:12]
            raise ValueError(f"GPTConfig: `emb_dim` ({self.emb_dim}) must be divisible by `n_heads` ({self.n_heads}); "
                             f"pick n_heads among {divisors}...")
        for name in ("qkv_bias", "tie_word_embeddings", "use_cache"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"GPTConfig: `{name}` must be a boolean (True or False), got {value!r}.")
        rate = self.drop_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"GPTConfig: `drop_rate` must be in [0, 1), got {self.drop_rate!r}.")
        if self.init_scheme not in INIT_SCHEMES:
            raise ValueError(f"GPTConfig: unknown `init_scheme` {self.init_scheme!r}; choose one of {INIT_SCHEMES}.")
        for name in ("initializer_range", "layer_norm_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GPTConfig: `{name}` must be > 0, got {getattr(self, name)!r}.")

    @property
    def head_dim(self):
        return self.emb_dim // self.n_heads

    @classmethod
    def from_preset(cls, name, **overrides):
        """A config from the book's table (`"gpt2-small"`, `"gpt2-small (124M)"`, `"gpt2"`, `"GPT_CONFIG_124M"`...)."""
        name = GPT2_ALIASES.get(name, name)
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **check_config_fields(overrides)})

    def to_book_dict(self):
        """The book's config dict, e.g. to build the book's own `GPTModel` from this config."""
        return {k: getattr(self, k) for k in GPT_CONFIG_124M}


def _pretrained_config_keys():
    """Keys `PretrainedConfig` itself takes (`architectures`, `auto_map`, `dtype`, ...)."""
    keys = set()
    if dataclasses.is_dataclass(PretrainedConfig):
        keys = {f.name for f in dataclasses.fields(PretrainedConfig)}
    try:
        from transformers import GenerationConfig

        keys |= set(GenerationConfig._get_default_generation_params())
    except (ImportError, AttributeError):
        pass
    return keys | {
        "model_type", "auto_map", "architectures", "transformers_version", "dtype", "torch_dtype", "name_or_path",
        "output_attentions", "output_hidden_states", "return_dict", "attn_implementation", "experts_implementation",
        "per_layer_config", "num_labels", "id2label", "label2id", "problem_type", "tokenizer_class", "prefix",
        "finetuning_task", "task_specific_params", "is_decoder", "is_encoder_decoder", "add_cross_attention",
        "tie_encoder_decoder", "chunk_size_feed_forward", "sep_token_id", "decoder_start_token_id",
    }


def check_config_fields(fields):
    """Config fields under the book's names; an unknown name is a typo, so it raises, naming the closest field."""
    known = (set(inspect.signature(GPTConfig.__init__).parameters) - {"self", "kwargs"}) | set(GPTConfig.attribute_map)
    out = {}
    for key, value in fields.items():
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" GPTConfig's fields: {sorted(known)}."
            raise ConfigFieldError(f"unknown config field {key!r}.{hint}")
        out[GPTConfig.attribute_map.get(key, key)] = value
    return out


class ConfigFieldError(TypeError, ValueError):
    """An unknown config field: a `TypeError` like any unexpected keyword, and a `ValueError` for input checks."""


if __name__ == "hf_gpt.model.configuration_gpt":  # the installed package, not a copy loaded as remote code
    AutoConfig.register(GPTConfig.model_type, GPTConfig, exist_ok=True)

__all__ = ["GPT2_ALIASES", "GPT2_CHECKPOINTS", "GPTConfig", "GPT_CONFIG_124M", "PRESETS", "check_config_fields"]
