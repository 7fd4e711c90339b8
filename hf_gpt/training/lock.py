"""One run at a time per output_dir: `fcntl.flock`, which the kernel releases however the run's process ends."""

import fcntl
import logging
import os
from pathlib import Path

from ..cli import UsageError

logger = logging.getLogger(__name__)

LOCK_FILE = "_hf_gpt_run.lock"  # "_*" is left out of every Hub upload (ours and the Trainer's)


class OutputDirLock:
    def __init__(self, output_dir):
        self.path = Path(output_dir) / LOCK_FILE
        self._file = None

    def acquire(self):
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip().replace("=", " ") or "pid unknown"
            f.close()
            raise UsageError(f"--output_dir {str(self.path.parent)!r} is in use by another run ({owner}). Wait for it "
                             f"to finish, or pick another --output_dir.") from None
        f.seek(0)
        previous = f.read().strip().replace("=", " ")
        if previous:  # its run ended without releasing it: killed
            logger.warning(f"notice: taking over the lock of {self.path.parent} from a run that is gone ({previous}).")
        f.seek(0)
        f.truncate()
        f.write(f"pid={os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self):
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None
