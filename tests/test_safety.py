"""Issue 26: nothing the user had is lost, and every message names what the user typed. One test (or more) per kind
of defect of the issue, at the door where the user meets it (a script's `main(argv)`, or the script as a
subprocess); each asserts the line, the exit code, and that nothing the user has was changed."""

from pathlib import Path

import pytest
from test_trust import (  # noqa: F401  (fixtures)
    PROMPT,
    REPO,
    _args,
    _checkpoint,
    finished_run,
    load_script,
    model_folder,
    pretrain_error,
    snapshot,
    tiny_argv,
    tokenizer,
)

from hf_gpt.training import main
from hf_gpt.training.checkpoints import remove_incomplete_checkpoints, resolve_resume

pytestmark = pytest.mark.usefixtures("one_thread")


def script_error(capsys, code, prog=None):
    """The one line a script printed for a user error (exit code 2, no traceback), without its prefix."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    prefix = f"{prog}: error: " if prog else "error: "
    assert err.startswith(prefix), err
    return err.removeprefix(prefix).rstrip("\n")


def no_partials(folder):
    return not [p for p in Path(folder).rglob("*") if ".partial-" in p.name]


# -------------------------------------------------------------------- lost: every writer refuses what it would lose


def test_lost_resume_last_keeps_a_checkpoint_whose_weights_are_whole(tmp_path, nothing_heavy, capsys):
    out = tmp_path / "run"
    _checkpoint(out / "checkpoint-2", 2)
    _checkpoint(out / "checkpoint-4", 4)
    (out / "checkpoint-4" / "optimizer.pt").unlink()  # removed to save space
    before = snapshot(out)
    err = pretrain_error(capsys, main(tiny_argv(out, "--max_steps", "9", "--resume_from_checkpoint", "last")))
    assert err == (f"--resume_from_checkpoint last: the newest checkpoint, {out / 'checkpoint-4'}, has whole weights "
                   f"but optimizer.pt is missing (removed since it was written?). Add --resume_reset_optimizer to "
                   f"resume its weights with a fresh optimizer and schedule, or resume from an earlier one: "
                   f"--resume_from_checkpoint {out / 'checkpoint-2'}. Nothing was deleted.\n")
    assert remove_incomplete_checkpoints(out) == []  # what a run does before training: it deletes nothing here
    assert snapshot(out) == before
    assert resolve_resume(_args(out, "last", reset=True)) == str(out / "checkpoint-4")
