"""Local `evaluate` modules shipped with the package (the Hub's metric scripts cannot be fetched offline)."""

import math
from pathlib import Path

PERPLEXITY_PATH = str(Path(__file__).resolve().parent / "perplexity" / "perplexity.py")


def perplexity(nll):
    """exp of a mean negative log-likelihood in nats: inf past what a float holds (a diverged model), not an error."""
    return math.exp(nll) if nll < 709.0 or math.isnan(nll) else math.inf


def load_perplexity(**kwargs):
    """The perplexity metric, loaded by path so it never touches the Hub."""
    import evaluate

    return evaluate.load(PERPLEXITY_PATH, **kwargs)


__all__ = ["PERPLEXITY_PATH", "load_perplexity", "perplexity"]
