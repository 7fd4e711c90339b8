"""What every script shares when something goes wrong: one `error: ...` line and exit code 2, a line for Ctrl-C,
and a full disk named by its folder, whichever layer noticed it."""

import errno
import os
import shutil
import sys
from pathlib import Path

DEBUG_ENV = "HF_GPT_DEBUG"
EXIT_ERROR = 2  # a bad input or a fault the user can fix: the same code argparse uses
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class UsageError(ValueError):
    """A bad input or a fault the user can fix, in one line naming the flag, field or file and the fix."""


def read_json(path, what):
    """The JSON object in a file the user gave, or a `UsageError` naming it as `what`."""
    import json

    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"{what} {path} is not readable JSON ({err.__class__.__name__}: {err})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} {path} holds a JSON {type(value).__name__}, not an object")
    return value


def is_main_process():
    """Rank 0 of a distributed run (torchrun's RANK, else LOCAL_RANK), or a lone process: the one that speaks."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


def debug_requested(argv=()):
    """`--debug` on the command line (scripts that define it) or HF_GPT_DEBUG=1 in the environment."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return "--debug" in list(argv or ()) or env not in ("", "0", "false", "no", "off")


def _chain(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


_TORCH_WRITE_FAILURES = ("PytorchStreamWriter failed", "file write failed", "inline_container.cc", "unexpected pos")


def disk_full_folder(exc, folder=None):
    """The folder that ran out of space, when `exc` (or what caused it) is a full disk; else None."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            where = e.filename or folder
            return str(Path(where).parent if where and not Path(where).is_dir() else where or "?")
        if "No space left on device" in str(e) or "os error 28" in str(e):  # safetensors' Rust writer, and others
            return str(folder or "?")
    if folder is not None and any(isinstance(e, RuntimeError) and any(s in str(e) for s in _TORCH_WRITE_FAILURES)
                                  for e in _chain(exc)):
        # torch's zip writer loses the errno: ask the file system whether the folder is (nearly) full.
        probe = Path(folder)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            if shutil.disk_usage(probe).free < 64 * 2**20:
                return str(folder)
        except OSError:
            pass
    return None


def describe(exc, folder=None):
    """`exc` as one line that says what went wrong."""
    notes = "".join(f" {note}" for note in getattr(exc, "__notes__", ()))
    full = None if isinstance(exc, UsageError) else disk_full_folder(exc, folder)  # ours says it already
    if full is not None:
        return (f"no space left on device in {full}: free some space (or pick a folder on another disk) and run "
                f"again.{notes}")
    text = (str(exc).strip() or type(exc).__name__) + notes
    if isinstance(exc, KeyError) and text.startswith("'"):
        text = f"missing {text}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def say(prog, message):
    """One line on stderr, from the main process only (every rank of a distributed run meets the same error)."""
    if is_main_process():
        print(f"{prog + ': ' if prog else ''}{message}", file=sys.stderr, flush=True)


def report(prog, exc, folder=None, expected=(ValueError, OSError, LookupError, ImportError)):
    """Say `exc` as one `prog: error: ...` line (unexpected kinds point to the traceback switch); the exit code."""
    hint = "" if isinstance(exc, expected) or disk_full_folder(exc, folder) else (
        f" ({type(exc).__name__}; set {DEBUG_ENV}=1 for the traceback)")
    say(prog, f"error: {describe(exc, folder)}{hint}")
    return getattr(exc, "exit_code", EXIT_ERROR)


# A KeyboardInterrupt that lands in a finalizer is lost, so the handler records the signal too: it is raised again
# at each step, and a script still running INTERRUPT_GRACE_S seconds later exits.
INTERRUPT_GRACE_S = 10.0
_interrupt = {"seen": 0, "script": False, "say": None, "said": False}


def raise_if_interrupted():
    """Raise KeyboardInterrupt again when a Ctrl-C was seen but swallowed on the way (see above)."""
    if _interrupt["seen"]:
        raise KeyboardInterrupt


def _stop_now():
    """Say the interrupted line and leave without the interpreter's teardown (see `exit`)."""
    if _interrupt["say"] is not None and not _interrupt["said"]:
        try:
            _interrupt["say"]()
        except Exception:
            pass
    _leave(EXIT_INTERRUPTED)


def _on_sigint(signum, frame):
    _interrupt["seen"] += 1
    if _interrupt["seen"] > 1:
        _stop_now()
    if _interrupt["script"]:
        import threading

        timer = threading.Timer(INTERRUPT_GRACE_S, _stop_now)
        timer.daemon = True
        timer.start()
    raise KeyboardInterrupt


def _leave(code):
    """End the process after the atexit handlers, skipping a teardown of torch and datasets that takes seconds."""
    import atexit

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        atexit._run_exitfuncs()
    finally:
        os._exit(code)


def exit(main):
    """A script's `__main__`: runs `main()` and exits with its code, with the Ctrl-C grace period armed."""
    _interrupt["script"] = True
    code = main()
    code = code if isinstance(code, int) else 0
    if code == EXIT_INTERRUPTED:
        _leave(code)
    sys.exit(code)


def quiet_progress_bars():
    """A script's console holds its own lines: no progress bars from transformers or datasets (their escape codes
    fill a log). datasets is not imported for it: its variable is read when it is."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    else:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def run(main, argv=None, *, prog=None, folder=None, interrupted="nothing more was done."):
    """The error shell of every script: `main(argv)`, whatever it raises turned into one line and an exit code."""
    import signal
    import threading

    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_progress_bars()

    def say_interrupted():
        _interrupt["said"] = True
        say(prog, f"interrupted (Ctrl-C); {interrupted() if callable(interrupted) else interrupted}")

    own_handler = (threading.current_thread() is threading.main_thread()
                   and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if own_handler:
        _interrupt.update(seen=0, say=say_interrupted, said=False)
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        code = main(argv)
        raise_if_interrupted()  # a Ctrl-C swallowed on the way still stops with its line
    except KeyboardInterrupt:
        if own_handler:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # saying where to resume is not itself interrupted
        say_interrupted()
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug_requested(argv):
            raise
        return report(prog, exc, folder() if callable(folder) else folder)
    finally:
        if own_handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            _interrupt.update(say=None)
    return 0 if code is None else code


def check_device(value, flag="--device"):
    """`--device` as torch will take it, or a `UsageError` before anything is loaded."""
    if value is None:
        return None
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise UsageError(f"{flag} {value!r} is not a device torch knows; use cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{flag} {value}: this machine has no usable CUDA device; use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"{flag} {value}: there are {torch.cuda.device_count()} CUDA device(s), numbered from 0.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"{flag} {value}: MPS is not available here; use --device cpu.")
    return device


def add_debug_flag(parser):
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback on errors (or set {DEBUG_ENV}=1)")
    return parser
