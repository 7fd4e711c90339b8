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

from ..cli import UsageError

logger = logging.getLogger(__name__)

CHECKPOINT_COMPLETE = "checkpoint_complete.json"
RUN_MARKERS = ("trainer_state.json", "train_results.json", "eval_results.json", "all_results.json", "config.json",
               "model.safetensors", "training_args.bin", "loss.png")


def _checkpoint_step(path):
    match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", Path(path).name)
    return int(match.group(1)) if match else None


def mark_checkpoint_complete(checkpoint_dir, step):
    """The marker, written last, listing each file's size: a checkpoint that later loses a file is not complete."""
    checkpoint_dir = Path(checkpoint_dir)
    files = {p.relative_to(checkpoint_dir).as_posix(): p.stat().st_size for p in sorted(checkpoint_dir.rglob("*"))
             if p.is_file() and p.name != CHECKPOINT_COMPLETE and not p.name.startswith(".complete-")}
    fd, tmp = tempfile.mkstemp(dir=checkpoint_dir, prefix=".complete-")
    with os.fdopen(fd, "w") as f:
        json.dump({"global_step": step, "time": time.time(), "files": files}, f)
    os.replace(tmp, checkpoint_dir / CHECKPOINT_COMPLETE)


# The files a resume needs beyond the weights: without them the Trainer silently starts a fresh optimizer/schedule.
TRAINING_STATE_FILES = ("optimizer.pt", "scheduler.pt")


def checkpoint_problems(path):
    """What keeps `path` from being a complete checkpoint (empty when it is); a plain Trainer's, without our marker,
    counts when its state parses and its files are whole."""
    path = Path(path)
    if not path.is_dir():
        return ["not a folder"]
    marker = path / CHECKPOINT_COMPLETE
    if marker.is_file():
        try:
            files = json.loads(marker.read_text(encoding="utf-8")).get("files")
        except (OSError, ValueError):
            files = None
        if files is not None:
            problems = []
            for name, size in files.items():
                f = path / name
                if not f.is_file():
                    problems.append(f"{name} is missing")
                elif f.stat().st_size != size:
                    problems.append(f"{name} has {f.stat().st_size} bytes, not the {size} it was written with")
            if not problems and (path / "model.safetensors").is_file():  # same size, other bytes: corrupt in place
                problems = _safetensors_problems(path / "model.safetensors")
            return problems
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        if "global_step" not in state:
            return ["trainer_state.json has no global_step"]
        if (path / "model.safetensors").is_file():
            from safetensors import safe_open

            with safe_open(str(path / "model.safetensors"), framework="pt") as f:
                list(f.keys())
        elif not (path / "model.safetensors.index.json").is_file() and not any(
                (folder / ".metadata").is_file() for folder in path.glob("pytorch_model_fsdp_*") if folder.is_dir()):
            return ["no model weights"]
    except Exception as e:
        return [f"unreadable ({type(e).__name__}: {e})"]
    return [f"{name} is missing or not a zip archive" for name in TRAINING_STATE_FILES
            if not _training_state_readable(path, name)]


def _safetensors_problems(path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            list(f.keys())
    except Exception as e:
        return [f"{path.name} is unreadable ({type(e).__name__}: {e})"]
    return []


def _interrupted_write(path):
    """A checkpoint whose save never finished (neither marker is written). One that lost files since may hold the
    only weights of that step, so it is never deleted."""
    return not (path / CHECKPOINT_COMPLETE).is_file() and not (path / "trainer_state.json").is_file()


def _only_training_state(problems):
    """True when the weights are whole and only optimizer/scheduler state is missing or unreadable."""
    return all(problem.startswith(TRAINING_STATE_FILES) for problem in problems)


def _training_state_readable(path, name):
    """optimizer.pt/scheduler.pt is a whole zip, or under sharded FSDP a folder whose `.metadata` is written last."""
    if name == "optimizer.pt" and any((folder / ".metadata").is_file() for folder in path.glob("optimizer_*")):
        return True
    return zipfile.is_zipfile(path / name)


def is_complete_checkpoint(path):
    """True for a checkpoint every file of which was fully written and is still there (see `checkpoint_problems`)."""
    return not checkpoint_problems(path)


def find_checkpoints(output_dir):
    """`checkpoint-N` folders of `output_dir`, oldest step first, as (step, path, complete)."""
    output_dir = Path(output_dir)
    children = output_dir.iterdir() if output_dir.is_dir() else ()
    return sorted((_checkpoint_step(child), child, is_complete_checkpoint(child)) for child in children
                  if _checkpoint_step(child) is not None and child.is_dir())


def last_complete_checkpoint(output_dir):
    """The newest complete checkpoint of `output_dir`, or None."""
    complete = [path for _, path, ok in find_checkpoints(output_dir) if ok]
    return str(complete[-1]) if complete else None


def remove_incomplete_checkpoints(output_dir):
    """Delete the checkpoints a run was killed while writing, so rotation and `last` never meet them."""
    removed = []
    for _, path, ok in find_checkpoints(output_dir):
        if not ok and _interrupted_write(path):
            logger.warning(f"Removing incomplete checkpoint {path} (its run was interrupted while writing it).")
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def final_model_problems(output_dir, step):
    """What keeps `output_dir` from holding the final model of a run that reached `step` (empty when it does):
    trainer_state.json is written last, so a run killed on the way has not finished."""
    from ..tokenization import TOKENIZER_FILES

    out = Path(output_dir)
    problems = []
    if (out / "model.safetensors").is_file():
        problems += _safetensors_problems(out / "model.safetensors")
    elif not (out / "model.safetensors.index.json").is_file():
        problems.append("model.safetensors is missing")
    if not any((out / name).is_file() for name in TOKENIZER_FILES):
        problems.append("the tokenizer is missing")
    try:
        final_step = json.loads((out / "trainer_state.json").read_text(encoding="utf-8")).get("global_step", -1)
    except (OSError, ValueError):
        problems.append("trainer_state.json is missing or unreadable")
    else:
        if final_step < step:
            problems.append(f"trainer_state.json is at step {final_step}")
    return problems


def _holds_a_run(output_dir):
    path = Path(output_dir)
    children = path.iterdir() if path.is_dir() else ()
    return sorted(p.name for p in children if p.name in RUN_MARKERS or _checkpoint_step(p) is not None)


def resolve_resume(training_args):
    """`--resume_from_checkpoint` as a path or None; lost optimizer state is refused (the Trainer would silently
    start afresh) unless --resume_reset_optimizer asks for exactly that."""
    value = training_args.resume_from_checkpoint
    if value in (None, "", "false", "False", False):
        return None
    reset = training_args.resume_reset_optimizer
    if str(value).lower() in ("last", "latest", "true"):
        found = [(path, checkpoint_problems(path)) for _, path, _ in find_checkpoints(training_args.output_dir)
                 if not _interrupted_write(path)]  # those are removed before training
        usable = [(path, problems) for path, problems in found if _only_training_state(problems)]
        if not usable:
            why = ""
            if found:
                newest, problems = found[-1]
                why = f"; {newest.name} is incomplete: {'; '.join(problems[:3])}"
            raise UsageError(
                f"--resume_from_checkpoint {value}: no complete checkpoint in {training_args.output_dir!r} to resume "
                f"from{'' if Path(training_args.output_dir).is_dir() else ' (the folder does not exist)'}{why}."
            )
        path, problems = usable[-1]
        for skipped, why in found[found.index(usable[-1]) + 1:]:
            logger.warning(f"Skipping {skipped} (incomplete: {'; '.join(why[:3])}); it is left as it is.")
        if problems and not reset:
            earlier = [p for p, probs in usable[:-1] if not probs]
            raise UsageError(
                f"--resume_from_checkpoint {value}: the newest checkpoint, {path}, has whole weights but "
                f"{'; '.join(problems[:3])} (removed since it was written?). Add --resume_reset_optimizer to resume "
                f"its weights with a fresh optimizer and schedule"
                + (f", or resume from an earlier one: --resume_from_checkpoint {earlier[-1]}." if earlier else ".")
                + " Nothing was deleted."
            )
    else:
        path = Path(value)
        if not path.exists():
            raise UsageError(f"--resume_from_checkpoint {value!r}: no such checkpoint folder.")
        if not path.is_dir() or not (path / "trainer_state.json").is_file():
            raise UsageError(f"--resume_from_checkpoint {value!r} is not a checkpoint folder (no "
                             f"trainer_state.json); give a {PREFIX_CHECKPOINT_DIR}-N folder or 'last'.")
        problems = checkpoint_problems(path)
        if reset:
            problems = [p for p in problems if not p.startswith(TRAINING_STATE_FILES)]
        if problems:
            raise UsageError(
                f"--resume_from_checkpoint {value!r} is incomplete ({'; '.join(problems[:3])}): its run was killed "
                f"while writing it, or files were removed since. Pick an earlier checkpoint or 'last'"
                + (", or add --resume_reset_optimizer to resume the weights with a fresh optimizer and schedule."
                   if _only_training_state(problems) else ".")
            )
    path = Path(path)
    bad = [name for name in TRAINING_STATE_FILES if not _training_state_readable(path, name)]
    if bad and not reset:
        raise UsageError(
            f"--resume_from_checkpoint: {', '.join(str(path / n) for n in bad)} "
            f"{'is' if len(bad) == 1 else 'are'} missing or not a readable torch file (a zip archive), so the "
            f"optimizer and schedule cannot continue. Resume from another checkpoint, or add --resume_reset_optimizer "
            f"to keep the weights and start the optimizer and schedule afresh."
        )
    if bad:
        logger.warning(f"Resuming {path} with a fresh optimizer and learning-rate schedule (--resume_reset_optimizer).")
    return str(path)


def _clear_previous_run(output_dir):
    """For --overwrite_output_dir: the old run's checkpoints and samples go (they would be taken for this run's)."""
    for _, path, _ in find_checkpoints(output_dir):
        shutil.rmtree(path, ignore_errors=True)
    (Path(output_dir) / "samples.jsonl").unlink(missing_ok=True)
