"""Sampling flags -> `generate` kwargs, in one place, so every script means the same by the same flags."""

# The book's `generate`: with a temperature, sample from the whole distribution unless top-k/top-p are asked for
# (transformers' own default would be top_k=50).
BOOK_SAMPLING = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}


def sampling_kwargs(*, temperature=None, top_k=None, top_p=None, greedy=False, do_sample=False, defaults=None):
    """`generate` kwargs for the given flags; greedy clears the sampling knobs so a model's defaults raise no
    warnings, and no flag leaves it all to the `generation_config`."""
    if greedy or temperature == 0:
        return {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
    given = {k: v for k, v in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p)) if v is not None}
    if not (given or do_sample):
        return {}
    return {"do_sample": True, **(defaults or {}), **given}


def check_sampling(flag, *, temperature=None, top_k=None, top_p=None, max_new_tokens=None, min_new_tokens=0,
                   zero_temperature_is_greedy=True):
    """Refuse, naming the script's flag, values transformers would take silently (top_p 0, a negative length)."""
    from .cli import UsageError

    if temperature is not None:
        low_ok = temperature >= 0 if zero_temperature_is_greedy else temperature > 0
        if not (low_ok and temperature != float("inf")):
            raise UsageError(f"{flag('temperature')} must be "
                             f"{'>= 0 (0: greedy)' if zero_temperature_is_greedy else '> 0'}, got {temperature}")
    if top_k is not None and top_k < 0:
        raise UsageError(f"{flag('top_k')} must be >= 0 (0: no top-k cut), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError(f"{flag('top_p')} must be in (0, 1], got {top_p}")
    if max_new_tokens is not None and max_new_tokens < min_new_tokens:
        raise UsageError(f"{flag('max_new_tokens')} must be >= {min_new_tokens}, got {max_new_tokens}")


__all__ = ["BOOK_SAMPLING", "check_sampling", "sampling_kwargs"]
