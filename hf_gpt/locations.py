"""A model, tokenizer or checkpoint name: a local path or a Hub id, told apart without waiting on the network."""

import difflib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import is_offline_mode

from .cli import UsageError

FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".json", ".txt", ".yaml", ".yml", ".jsonl", ".csv", ".parquet")
PROBE_TIMEOUT = 3.0
_probe_result = {}


def looks_local(name):
    name = os.fspath(name)
    if os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name or name.count("/") > 1:
        return True
    if name.lower().endswith(FILE_SUFFIXES):
        return True
    head, sep, _ = name.partition("/")
    return bool(sep) and Path(head).is_dir()


def _closest(path):
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return ""
    try:
        names = [p.name for p in parent.iterdir()]
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=1)
    return f" Did you mean {str(parent / close[0])!r}?" if close else ""


def hub_endpoint():
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def hub_reachable(timeout=PROBE_TIMEOUT):
    """Whether the Hub's host accepts a TCP connection within `timeout` seconds; asked once per process."""
    endpoint = hub_endpoint()
    if endpoint not in _probe_result:
        url = urlparse(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            _probe_result[endpoint] = True
        except OSError:
            _probe_result[endpoint] = False
    return _probe_result[endpoint]


def _cached(repo_id, filename):
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:
        return False


def hub_problem(repo_id, cached_file="config.json"):
    """Why `repo_id` cannot be had now (None when it is cached or the Hub answers): checked without retries."""
    if _cached(repo_id, cached_file):
        return None
    if is_offline_mode():
        return "the Hub is offline (HF_HUB_OFFLINE is set) and it is not cached"
    if not hub_reachable():
        return (f"the Hub ({hub_endpoint()}) cannot be reached (no connection within {PROBE_TIMEOUT:g} s); check the "
                f"path, or the network")
    return None


def check_source(name, what, *, cached_file="config.json", suggestions=(), repo_id=None):
    """'local' for an existing path, 'hub' for a Hub id we can get now, else a `UsageError` naming `what`."""
    name = os.fspath(name)
    path = Path(os.path.expanduser(name))
    if path.exists():
        return "local"
    if looks_local(name):
        raise UsageError(f"{what} {name!r}: no such file or folder.{_closest(path)}")
    close = [] if name in suggestions else difflib.get_close_matches(name, list(suggestions), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id or name)
    except HFValidationError:
        raise UsageError(f"{what} {name!r} is neither an existing file or folder nor a Hub id.{hint}") from None
    problem = hub_problem(repo_id or name, cached_file)
    if problem:
        raise UsageError(f"{what} {name!r} is not a local file or folder, and {problem}.{hint}")
    return "hub"
