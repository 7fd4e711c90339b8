"""Experiment tracking: a short `scripts/pretrain.py` run with `--report_to` puts the numbers the Trainer records in
trainer_state.json (train loss, validation loss and perplexity, tokens/s, ...) into TensorBoard's event files and
trackio's local store, at the same steps, read back with each tool's own reader."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_gpt.resources import THE_VERDICT

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "pretrain.py"
# What a run must show on a dashboard, under the names transformers' `rewrite_logs` gives them.
TRACKED = {"loss": "train/loss", "tokens_per_second": "train/tokens_per_second", "eval_loss": "eval/loss",
           "eval_perplexity": "eval/perplexity", "eval_train_loss": "eval/train_loss"}
# Logged every 2 steps, evaluated at the start and every 2 steps, 4 steps in all.
STEPS = {"loss": [2, 4], "tokens_per_second": [2, 4], "eval_loss": [0, 2, 4], "eval_perplexity": [0, 2, 4],
         "eval_train_loss": [0, 2, 4]}


def pretrain(tmp_path, *extra, env=None):
    out = tmp_path / "out"
    args = ["--output_dir", out, "--config_overrides", "n_layers=2,emb_dim=32,n_heads=2,context_length=32",
            "--train_files", THE_VERDICT, "--per_device_train_batch_size", "4", "--max_eval_samples", "8",
            "--eval_train_samples", "8", "--sample_max_new_tokens", "0", "--max_steps", "4", "--save_steps", "4",
            "--eval_steps", "2", "--logging_steps", "2", "--disable_tqdm", "true", *extra]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    for key, steps in STEPS.items():
        assert [e["step"] for e in history if key in e] == steps, key
    return out, history


def tag(key):
    """transformers' `rewrite_logs`: what every reporting integration calls a log key."""
    return f"eval/{key[len('eval_'):]}" if key.startswith("eval_") else f"train/{key}"


def by_tag(history, skip=()):
    """Tag -> [(step, value), ...] in logging order, for every number the Trainer logged."""
    series = {}
    for entry in history:
        for key, value in entry.items():
            if key != "step" and key not in skip and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(tag(key), []).append((entry["step"], value))
    return series


@pytest.mark.slow
def test_tensorboard_event_files_hold_what_trainer_state_logged(tmp_path):
    pytest.importorskip("tensorboard", reason="needs tensorboard (the test extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, history = pretrain(tmp_path, "--report_to", "tensorboard")
    runs = [p for p in (out / "runs").iterdir() if p.is_dir()]  # the Trainer's default logging_dir
    assert len(runs) == 1 and list(runs[0].glob("events.out.tfevents.*"))
    events = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    written = {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}

    expected = by_tag(history)
    assert set(written) == set(expected)
    for name, points in expected.items():  # the same steps in the same order; values as float32, as TensorBoard keeps
        assert [s for s, _ in written[name]] == [s for s, _ in points], name
        assert [v for _, v in written[name]] == pytest.approx([v for _, v in points], rel=1e-6), name
    for key, name in TRACKED.items():
        assert [s for s, _ in written[name]] == STEPS[key], name
    assert all(v > 0 for _, v in written["train/tokens_per_second"])


# The Trainer's end-of-run summary keys, which transformers' TrackioCallback leaves out of trackio's log.
TRACKIO_SKIPS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")

READ_TRACKIO = """
import json, sys
from trackio.sqlite_storage import SQLiteStorage
print(json.dumps({"runs": SQLiteStorage.get_runs(sys.argv[1]), "logs": SQLiteStorage.get_logs(sys.argv[1], sys.argv[2])},
                 default=str))
"""


@pytest.mark.slow
def test_trackio_local_store_holds_what_trainer_state_logged(tmp_path):
    """trackio with no Space logs to a SQLite file per project under TRACKIO_DIR (default ~/.cache/huggingface/trackio),
    offline; read back in a fresh process, since trackio fixes its folder when first imported."""
    pytest.importorskip("trackio", reason="needs trackio (the test extra)")
    store = tmp_path / "trackio"
    env = {"TRACKIO_DIR": str(store)}
    _, history = pretrain(tmp_path, "--report_to", "trackio", "--project", "hf-gpt-tiny", "--run_name", "tiny", env=env)
    assert (store / "hf-gpt-tiny.db").is_file()
    proc = subprocess.run([sys.executable, "-c", READ_TRACKIO, "hf-gpt-tiny", "tiny"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stored = json.loads(proc.stdout.splitlines()[-1])
    assert stored["runs"] == ["tiny"]

    rows = stored["logs"]  # one row a Trainer log, the Trainer's step as train/global_step, values exact (JSON)
    assert [r["train/global_step"] for r in rows] == [e["step"] for e in history]
    written = {}
    for row in rows:
        for name, value in row.items():
            if name not in ("step", "timestamp", "train/global_step"):
                written.setdefault(name, []).append((row["train/global_step"], value))
    assert written == by_tag(history, skip=TRACKIO_SKIPS)
    for key, name in TRACKED.items():
        assert [s for s, _ in written[name]] == STEPS[key], name
