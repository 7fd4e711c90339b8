"""A CPU run under `accelerate launch` uses every core unless its user names a thread count (the launcher's own
OMP_NUM_THREADS=1 does not count), and pretraining's AdamW betas are (0.9, 0.95) except in the book's recipe."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainerCallback

from hf_gpt.resources import THE_VERDICT
from hf_gpt.training import main
from hf_gpt.training.args import parse_arguments
from hf_gpt.training.hardware import _launcher_chose_threads

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "pretrain.py"
RECIPE = REPO / "recipes" / "book-ch5.yaml"
TINY = ["--config_overrides", "n_layers=1,emb_dim=16,n_heads=2,context_length=16", "--train_files", str(THE_VERDICT),
        "--max_length", "16", "--stride", "16", "--max_steps", "1", "--per_device_train_batch_size", "2", "--eval_strategy", "no", "--eval_on_start", "false",
        "--save_strategy", "no", "--sample_max_new_tokens", "0", "--disable_tqdm", "true"]


def threads_line(tmp_path, launch_args=(), env=None):
    """The run's `CPU threads: ...` line when launched by `accelerate launch` (as a user types it: no config)."""
    full_env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    full_env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                     **(env or {})})
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", *launch_args, str(SCRIPT), *TINY,
                           "--output_dir", str(tmp_path / "run")], cwd=tmp_path, env=full_env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("CPU threads: ")]
    assert len(lines) == 1, proc.stdout[-3000:]
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def cpu_and_no_accelerate_config():
    import torch
    from accelerate.commands.config.config_args import default_config_file

    if torch.cuda.is_available():
        pytest.skip("a CUDA run leaves the CPU threads alone")
    if os.path.isfile(default_config_file):
        pytest.skip(f"an accelerate config ({default_config_file}) would change what the launcher does")


@pytest.mark.slow
def test_the_default_launch_uses_every_available_core(tmp_path):
    cores = len(os.sched_getaffinity(0))
    assert threads_line(tmp_path) == f"CPU threads: {cores} ({cores} cores available to 1 process(es))"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "variable"])
def test_a_thread_count_the_user_names_wins(tmp_path, how):
    if how == "flag":
        said = threads_line(tmp_path, ["--num_cpu_threads_per_process", "1"])
    else:
        said = threads_line(tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert said.startswith("CPU threads: 1 (") and said.endswith("; OMP_NUM_THREADS=1 as given)")


def test_outside_accelerate_launch_the_setting_stays():
    assert not _launcher_chose_threads()  # pytest's parent is no accelerate launcher


class _Betas(TrainerCallback):
    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.seen = {tuple(group["betas"]) for group in optimizer.param_groups}


@pytest.mark.parametrize("recipe, betas", [((), (0.9, 0.95)), ((str(RECIPE),), (0.9, 0.999))], ids=["default", "book"])
def test_pretraining_adamw_betas(one_thread, tmp_path, recipe, betas):
    """0.95 (nanoGPT's) trains the default run lower than torch's 0.999; the book's recipe keeps torch's."""
    assert tuple(getattr(parse_arguments([*recipe])[2], f"adam_beta{i}") for i in (1, 2)) == betas
    seen = _Betas()
    assert main([*recipe, *TINY, "--output_dir", str(tmp_path / "run")], callbacks=[seen]) == 0
    assert seen.seen == {betas}
