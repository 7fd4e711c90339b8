"""Checkpoints that are taken up only when complete, and the output_dir a run owns."""

import json
import logging
import os
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .errors import PretrainingError

logger = logging.getLogger(__name__)

CHECKPOINT_COMPLETE = "checkpoint_complete.json"
# Files a finished (or running) pretraining run leaves in its output_dir.
RUN_MARKERS = ("trainer_state.json", "train_results.json", "eval_results.json", "all_results.json", "config.json",
               "model.safetensors", "training_args.bin", "loss.png")


def _checkpoint_step(path):
    match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", Path(path).name)
    return int(match.group(1)) if match else None


def mark_checkpoint_complete(checkpoint_dir, step):
    """Write the marker that says every file of the checkpoint is written (atomically: temp file, then rename)."""
    target = Path(checkpoint_dir) / CHECKPOINT_COMPLETE
    fd, tmp = tempfile.mkstemp(dir=checkpoint_dir, prefix=".complete-")
    with os.fdopen(fd, "w") as f:
        json.dump({"global_step": step, "time": time.time()}, f)
    os.replace(tmp, target)


def is_complete_checkpoint(path):
    """True for a checkpoint every file of which was fully written.

    Ours carry a marker written last. A checkpoint without one (written by a plain Trainer) counts when its
    trainer state parses and its weights, optimizer and scheduler files are whole (a truncated safetensors header
    or zip archive is not).
    """
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / CHECKPOINT_COMPLETE).is_file():
        return True
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        if "global_step" not in state:
            return False
        if (path / "model.safetensors").is_file():
            from safetensors import safe_open

            with safe_open(str(path / "model.safetensors"), framework="pt") as f:
                list(f.keys())
        elif not (path / "model.safetensors.index.json").is_file():
            return False
        return all(zipfile.is_zipfile(path / name) for name in ("optimizer.pt", "scheduler.pt"))
    except (OSError, ValueError, Exception):
        return False


def find_checkpoints(output_dir):
    """`checkpoint-N` folders of `output_dir`, oldest step first, as (step, path, complete)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        step = _checkpoint_step(child)
        if step is not None and child.is_dir():
            found.append((step, child, is_complete_checkpoint(child)))
    return sorted(found)


def last_complete_checkpoint(output_dir):
    """The newest complete checkpoint of `output_dir` (a broken one, e.g. from a run killed while saving, is
    skipped), or None."""
    complete = [path for _, path, ok in find_checkpoints(output_dir) if ok]
    return str(complete[-1]) if complete else None


def remove_incomplete_checkpoints(output_dir):
    """Delete the broken checkpoints a killed run left, so checkpoint rotation and `last` never meet them."""
    removed = []
    for _, path, ok in find_checkpoints(output_dir):
        if not ok:
            logger.warning(f"Removing incomplete checkpoint {path} (its run was interrupted while writing it).")
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def _holds_a_run(output_dir):
    path = Path(output_dir)
    if not path.is_dir():
        return []
    found = [p.name for p in path.iterdir() if p.name in RUN_MARKERS or _checkpoint_step(p) is not None]
    return sorted(found)


def resolve_resume(training_args):
    """`--resume_from_checkpoint` as a checkpoint path (None when not resuming); `last`/`true` pick the newest
    complete checkpoint of output_dir."""
    value = training_args.resume_from_checkpoint
    if value in (None, "", "false", "False", False):
        return None
    if str(value).lower() in ("last", "latest", "true"):
        path = last_complete_checkpoint(training_args.output_dir)
        if path is None:
            raise PretrainingError(
                f"--resume_from_checkpoint {value}: no complete checkpoint in {training_args.output_dir!r} to resume "
                f"from{'' if Path(training_args.output_dir).is_dir() else ' (the folder does not exist)'}."
            )
        return path
    path = Path(value)
    if not path.exists():
        raise PretrainingError(f"--resume_from_checkpoint {value!r}: no such checkpoint folder.")
    if not path.is_dir() or not (path / "trainer_state.json").is_file():
        raise PretrainingError(f"--resume_from_checkpoint {value!r} is not a checkpoint folder (no trainer_state.json);"
                               f" give a {PREFIX_CHECKPOINT_DIR}-N folder or 'last'.")
    if not is_complete_checkpoint(path):
        raise PretrainingError(f"--resume_from_checkpoint {value!r} is incomplete (its run was killed while writing "
                               f"it); pick an earlier checkpoint or 'last'.")
    return str(path)


def _clear_previous_run(output_dir):
    """For --overwrite_output_dir: the old run's checkpoints and samples go (they would be taken for this run's)."""
    for _, path, _ in find_checkpoints(output_dir):
        shutil.rmtree(path, ignore_errors=True)
    (Path(output_dir) / "samples.jsonl").unlink(missing_ok=True)
