"""The two rules every writer of a user's file or folder follows: refuse a bad target before any heavy work, and
write it whole or not at all."""

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .cli import UsageError, describe, disk_full_folder

PARTIAL = ".partial-"  # in the names of temporary folders beside a target


def _shown(folder, limit=4):
    names = sorted(p.name for p in Path(folder).iterdir() if PARTIAL not in p.name)
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def check_target(target, flag, *, overwrite=False, sources=(), kind="folder"):
    """Refuse, as one `UsageError` naming `flag`, a `target` that is a source, the wrong kind, taken (unless
    `overwrite`), or not writable."""
    target = Path(os.path.expanduser(str(target)))
    shown = f"{flag} {str(target)!r}"
    resolved = target.resolve()
    for source in sources:
        source = Path(source).resolve()
        if resolved == source or resolved in source.parents:
            what = "is" if resolved == source else "holds"
            raise UsageError(f"{shown} {what} the model it reads ({source}); writing there would replace the "
                             f"source with the export: pick another {kind}.")
    if kind == "folder":
        if target.exists() and not target.is_dir():
            raise UsageError(f"{shown} is an existing file; {flag} takes a folder (it is created if missing).")
        if target.is_dir() and any(p for p in target.iterdir() if PARTIAL not in p.name) and not overwrite:
            raise UsageError(f"{shown} already holds files ({_shown(target)}); pick a new or empty folder, or add "
                             f"--overwrite to replace it.")
    else:
        if target.is_dir():
            raise UsageError(f"{shown} is an existing folder; give a file name (e.g. {target / 'model.gguf'}).")
        if target.exists() and not overwrite:
            raise UsageError(f"{shown} already exists; pick another name, or add --overwrite to replace it.")
    probe = target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{shown}: {probe} is a file, not a folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{shown} is not writable (no write permission on {probe}).")
    return target


@contextmanager
def written_whole(target):
    """Yield a temporary path beside `target` (so the rename is atomic) that replaces it if the block ends normally;
    otherwise `target` is left as it was."""
    target = Path(target)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}{PARTIAL}"))
    except OSError as e:
        raise _write_error(e, target) from e
    work = scratch / target.name
    try:
        yield work
        if not work.exists():
            raise UsageError(f"nothing was written to {target}.")
        if target.is_dir() and not target.is_symlink():
            os.replace(target, scratch / ".replaced")
        os.replace(work, target)
    except (OSError, RuntimeError) as e:
        if isinstance(e, UsageError) or not (isinstance(e, OSError) or disk_full_folder(e, parent)):
            raise
        raise _write_error(e, target) from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_error(exc, target):
    if disk_full_folder(exc, target.parent):  # named by the target's folder, not the temporary one
        full = describe(OSError(errno.ENOSPC, "No space left on device"), target.parent)
        return UsageError(f"{full} Nothing was written to {target}.")
    why = getattr(exc, "strerror", None) or describe(exc)
    return UsageError(f"could not write {target}: {why}. Nothing was written there.")


__all__ = ["check_target", "written_whole"]
