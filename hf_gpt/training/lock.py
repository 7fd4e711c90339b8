"""One run at a time per output_dir: a lock file holding the owner's pid, created atomically (a hard link),
released when the run ends. A lock whose pid is no longer alive (a killed run) is taken over with a notice."""

import atexit
import logging
import os
import socket
from pathlib import Path

from .errors import PretrainingError

logger = logging.getLogger(__name__)

LOCK_FILE = "_hf_gpt_run.lock"  # "_*" is left out of every Hub upload (ours and the Trainer's)


def _alive(pid):
    if pid == os.getpid():
        return False  # our own earlier lock, left by a run in this process that did not release it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class OutputDirLock:
    def __init__(self, output_dir):
        self.path = Path(output_dir) / LOCK_FILE
        self.held = False

    def _read_owner(self):
        try:
            fields = dict(line.split("=", 1) for line in self.path.read_text().splitlines() if "=" in line)
            return int(fields.get("pid", "")), fields.get("host", "")
        except (OSError, ValueError):
            return None, ""

    def _create(self):
        """The lock file appears with its owner already written (a hard link of a finished temp file fails if the
        lock exists), so another run never reads it half-made."""
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(f"pid={os.getpid()}\nhost={socket.gethostname()}\n")
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: an exclusive create, then the owner
            with os.fdopen(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644), "w") as f:
                f.write(tmp.read_text())
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self):
        for _ in range(3):
            try:
                self._create()
            except FileExistsError:
                pid, host = self._read_owner()
                if pid is None:
                    # Being written this instant by another run (or garbage): the other run gets it.
                    raise PretrainingError(
                        f"--output_dir {str(self.path.parent)!r} is in use by another run ({self.path} exists). "
                        f"Wait for it to finish, or pick another --output_dir; delete {self.path} only if no run is "
                        f"writing there.")
                if host and host != socket.gethostname():
                    raise PretrainingError(
                        f"--output_dir {str(self.path.parent)!r} is in use by a run on {host} (pid {pid}, lock "
                        f"{self.path}). Pick another --output_dir, or delete the lock if that run is over.")
                if _alive(pid):
                    raise PretrainingError(
                        f"--output_dir {str(self.path.parent)!r} is in use by another run (pid {pid}). Wait for it "
                        f"to finish, or pick another --output_dir.")
                logger.warning(f"Taking over {self.path}: the run that held it (pid {pid}) is no longer running.")
                print(f"notice: taking over the lock of {self.path.parent} from a run that is gone (pid {pid}).",
                      flush=True)
                if self._read_owner()[0] == pid:  # still the dead run's (another run may have just taken it)
                    try:
                        self.path.unlink()
                    except FileNotFoundError:
                        pass
                continue
            self.held = True
            atexit.register(self.release)
            return self
        raise PretrainingError(f"--output_dir {str(self.path.parent)!r}: could not take its lock {self.path}.")

    def release(self):
        if not self.held:
            return
        self.held = False
        try:
            pid, _ = self._read_owner()
            if pid == os.getpid():
                self.path.unlink()
        except OSError:
            pass
        try:
            atexit.unregister(self.release)
        except Exception:
            pass
