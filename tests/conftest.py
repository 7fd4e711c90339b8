import os
import subprocess
import sys
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


_FAULTS = """
import resource, torch

def faults_of_a_fresh_64mib_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 << 20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""


@pytest.fixture
def fresh_tensor_faults():
    """Runs code in a fresh Python process (malloc settings are process-wide) that has
    `faults_of_a_fresh_64mib_tensor()`: the 4 KiB page faults a new 64 MiB tensor takes. Returns stdout's words."""
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists() and "[always]" in thp.read_text():
        pytest.skip("transparent huge pages are always on: a fresh tensor faults in 2 MiB pages, not 4 KiB ones")

    def run(code):
        proc = subprocess.run([sys.executable, "-c", _FAULTS + code], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    return run


@pytest.fixture(autouse=True)
def _hf_gpt_logger_as_in_a_fresh_process():
    """`training.main` run in-process (also by module-scoped fixtures) sets up the script's console on the `hf_gpt`
    logger; every test starts and ends without it, as a fresh process would."""
    import logging

    logger = logging.getLogger("hf_gpt")
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    yield
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
