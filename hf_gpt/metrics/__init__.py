"""Local `evaluate` modules shipped with the package (the Hub's metric scripts cannot be fetched offline)."""

from pathlib import Path

PERPLEXITY_PATH = str(Path(__file__).resolve().parent / "perplexity" / "perplexity.py")


def load_perplexity(**kwargs):
    """The perplexity metric, loaded by path so it never touches the Hub."""
    import evaluate

    return evaluate.load(PERPLEXITY_PATH, **kwargs)


__all__ = ["PERPLEXITY_PATH", "load_perplexity"]
