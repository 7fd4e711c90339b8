"""Sampling flags as people give them (`--temperature`, `--top_k`, `--top_p`, `--greedy`) -> `generate` kwargs, in
one place, so the pretraining samples, `generate.py` and `load_gpt2.py` mean the same by the same flags."""

# The book's `generate`: with a temperature, sample from the whole distribution unless top-k/top-p are asked for
# (transformers' own default would be top_k=50).
BOOK_SAMPLING = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}


def sampling_kwargs(*, temperature=None, top_k=None, top_p=None, greedy=False, do_sample=False, defaults=None):
    """`generate` kwargs for the given flags.

    - `greedy`, or a temperature of 0 (the book's greedy): `do_sample=False`, the sampling knobs cleared so a
      model's sampling defaults raise no warnings;
    - `do_sample` or any of temperature/top_k/top_p: sampling with the flags given, the rest from `defaults` (e.g.
      `BOOK_SAMPLING`) when given, else from the model's `generation_config`;
    - nothing: `{}`, the model's `generation_config` decides.
    """
    if greedy or temperature == 0:
        return {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
    given = {k: v for k, v in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p)) if v is not None}
    if not (given or do_sample):
        return {}
    return {"do_sample": True, **(defaults or {}), **given}


__all__ = ["BOOK_SAMPLING", "sampling_kwargs"]
