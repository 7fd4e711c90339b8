import os
from pathlib import Path

import pytest

# The Hub cannot be reached here: nothing in the suite may try the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# Outputs of the book's own code (see fixtures/README.md); the-verdict.txt ships in the package.
BOOK_REFERENCE = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def book_reference():
    return BOOK_REFERENCE


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared, busy CPU the threads' hand-offs make each
    op ~50x slower; put the setting back for the modules that follow."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def nothing_heavy(monkeypatch):
    """Fail the test if the model is built or data is tokenized; returns the refusing stand-in for more such patches."""
    import hf_gpt.data
    import hf_gpt.training.run

    def refuse(*args, **kwargs):
        raise AssertionError("bad input must be reported before this")

    monkeypatch.setattr(hf_gpt.training.run, "build_model", refuse)
    monkeypatch.setattr(hf_gpt.data, "build_lm_datasets", refuse)
    return refuse
