"""Make a saved model folder a complete Hub repository and push it; the token goes to `HfApi` only, never printed."""

import mmap
import os
import re
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, get_token, is_offline_mode
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers.dynamic_module_utils import get_relative_imports

from .cards import (  # noqa: F401  (the card API is also hub's)
    SAMPLING_DEFAULTS,
    _set_card_repo,
    card_from_folder,
    render_usage,
    sampling_generation_config,
    write_model_card,
)
from .cli import UsageError, read_json
from .exports import export
from .model.weight_files_gpt import WEIGHT_FILES, check_safetensors
from .tokenization import TOKENIZER_FILES

# Like the Trainer's own push: leave out intermediate checkpoints (optimizer states) and private files.
PUSH_IGNORE_PATTERNS = ["_*", "checkpoint-*"]
# What a Hub model repo can hold as a loadable transformers folder (hf_gpt.exports has the other formats).
PUSH_FORMATS = ("hf_gpt", "gpt2")
_SHARD = re.compile(r"(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)")
HOW_TO_LOG_IN = ("Log in once with `hf auth login` (or `huggingface-cli login`), or set the HF_TOKEN environment "
                 "variable to a token with write access (create one at https://huggingface.co/settings/tokens).")


class NotAModelFolderError(UsageError):
    def __init__(self, folder, missing):
        self.folder, self.missing = str(folder), list(missing)
        super().__init__(f"{self.folder} is not a complete model folder: missing {'; '.join(self.missing)}.")


def save_for_hub(model, tokenizer, save_directory, **card_kwargs):
    """`save_pretrained` of model and tokenizer, plus sampling defaults and the card (`card_kwargs`); the `Path`."""
    save_directory = Path(save_directory)
    model.save_pretrained(save_directory)
    tokenizer.save_pretrained(save_directory)
    sampling_generation_config(model.config, model.generation_config).save_pretrained(save_directory)
    write_model_card(save_directory, model_config=model.config, **card_kwargs)
    check_model_folder(save_directory)
    return save_directory


def check_model_folder(folder, *, need_tokenizer=True, need_card=False):
    """The parsed `config.json`, else `NotAModelFolderError` naming all that `from_pretrained` would miss."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotAModelFolderError(folder, ["the folder itself (no such directory)"])
    missing = []
    config = None
    if not (folder / "config.json").is_file():
        missing.append("config.json (the model's configuration; write it with `model.save_pretrained(folder)`)")
    else:
        config = read_json(folder / "config.json", "model config")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append("the weights (model.safetensors; write them with `model.save_pretrained(folder)`)")
    elif (folder / "model.safetensors").is_file():
        try:
            check_safetensors(folder / "model.safetensors")
        except ValueError as err:
            raise UsageError(str(err)) from None
    if need_tokenizer and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("the tokenizer files (tokenizer.json; write them with `tokenizer.save_pretrained(folder)`)")
    if config is not None and config.get("model_type") != "gpt2":
        auto_map = config.get("auto_map") or {}
        if "AutoModelForCausalLM" not in auto_map:
            missing.append("`auto_map` in config.json (save with hf_gpt imported, so the model's code ships with it)")
        for ref in sorted(set(auto_map.values()) if isinstance(auto_map, dict) else []):
            source = ref.split("--")[-1].split(".")[0] + ".py"
            if not (folder / source).is_file():
                missing.append(f"{source} (the model's code that `auto_map` points to)")
                continue
            for needed in get_relative_imports(folder / source):
                if not (folder / f"{needed}.py").is_file():
                    missing.append(f"{needed}.py (the model's code that {source} imports)")
    if need_card and not (folder / "README.md").is_file():
        missing.append("README.md (the model card; write it with `hf_gpt.hub.write_model_card`)")
    if missing:
        raise NotAModelFolderError(folder, missing)
    return config


def check_repo_id(repo_id):
    """Raise `UsageError` saying what is wrong with a repo id, before anything touches the network."""
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise UsageError("The repo id is empty: give `name` or `username/name`, e.g. `alice/gpt-verdict`.")
    if repo_id.startswith(("http://", "https://")) or "huggingface.co" in repo_id:
        raise UsageError(f"{repo_id!r} is a URL, not a repo id: give only `username/name`, e.g. `alice/gpt-verdict`.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UsageError(f"{repo_id!r} is not a valid repo id: {err} Example: `alice/gpt-verdict`.") from None
    return repo_id


def require_token():
    """The token from `hf auth login` / `HF_TOKEN`, or a `UsageError` saying how to log in."""
    token = get_token()
    if not token:
        raise UsageError("No Hugging Face token found. " + HOW_TO_LOG_IN)
    return token


def upload_file_list(folder):
    """The files `push_folder` uploads from `folder`: all of them but intermediate checkpoints and `_*` files."""
    from huggingface_hub.utils import filter_repo_objects

    folder = Path(folder)
    files = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts)
    return sorted(filter_repo_objects(files, ignore_patterns=PUSH_IGNORE_PATTERNS))


def _refuse_if_token_inside(folder, token, files):
    """A token can hide in a pickled TrainingArguments (`training_args.bin` with `--hub_token`): never upload it."""
    needle = token.encode()
    for name in files:
        path = Path(folder) / name
        if path.stat().st_size == 0:
            continue
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:  # weights can be GBs
            found = data.find(needle) != -1
        if found:
            raise UsageError(f"{name} contains your Hugging Face token; refusing to upload it. Delete the file or write "
                             f"it again without the token (log in with `hf auth login` instead of passing --hub_token), "
                             f"then push again.")


def export_folder(folder, output):
    """A stock GPT-2 copy of an hf_gpt folder, with the run's artifacts that mean the same for the copy."""
    folder, output = Path(folder), Path(output)
    export(folder, output, "gpt2")
    # Left out: what the export replaced, and the hf_gpt form's own files (its code, weights and training args).
    skipped = {p.name for p in output.iterdir()} | {"config.json", "training_args.bin", *WEIGHT_FILES}
    for path in folder.iterdir():
        if path.is_file() and path.name not in skipped and not (path.suffix == ".py" or _SHARD.fullmatch(path.name)):
            shutil.copy2(path, output / path.name)
    return output


def _transport_error():
    """Connection failures of the HTTP client huggingface_hub uses (httpx2 in 2.x, httpx in 1.x)."""
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx
    return httpx.TransportError


def _stage_upload(folder, tmp):
    """Links in `tmp` to the files to upload, `README.md` copied so the card is pointed at the repo there only."""
    stage = tmp / "upload"
    for name in upload_file_list(folder):
        target = stage / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name == "README.md":
            shutil.copyfile(folder / name, target)
        else:
            os.symlink((folder / name).resolve(), target)
    stage.mkdir(exist_ok=True)
    return stage


def push_folder(folder, repo_id, *, private=None, revision=None, format="hf_gpt", commit_message=None, log=print):
    """Upload a saved model folder to `repo_id` (created if needed), checked first and staged apart so the folder
    is never changed; returns the commit URL."""
    if format not in PUSH_FORMATS:
        raise UsageError(f"cannot push format {format!r}; choose one of {', '.join(PUSH_FORMATS)}.")
    check_repo_id(repo_id)
    folder = Path(folder)
    config = check_model_folder(folder)
    if revision is not None and not str(revision).strip():
        raise UsageError("--revision is empty: give a branch name such as `main` or `experiment-1`.")
    if is_offline_mode():
        raise UsageError("HF_HUB_OFFLINE is set, so nothing can reach the Hub: unset HF_HUB_OFFLINE to push.")
    token = require_token()

    with tempfile.TemporaryDirectory(prefix="hf_gpt-push-") as tmp:
        exported = False
        if format == "gpt2" and config.get("model_type") == "gpt2":
            log(f"{folder} already holds a stock GPT-2 model; pushing it as is.")
        elif format == "gpt2":
            log("Exporting to stock GPT-2 format (no remote code needed to load it)...")
            exported = True
        upload_dir = export_folder(folder, Path(tmp) / "export") if exported else _stage_upload(folder, Path(tmp))
        if (upload_dir / "README.md").is_file():
            _set_card_repo(upload_dir, repo_id, stock_gpt2=True if exported else None)
        else:
            card_from_folder(upload_dir, repo_id=repo_id)
            log(f"Wrote a model card for the upload ({folder} is left as it is).")
        files = upload_file_list(upload_dir)
        _refuse_if_token_inside(upload_dir, token, files)

        api = HfApi(token=token)
        try:
            repo_url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            if repo_url.repo_id != repo_id:  # `name` alone: the Hub put it in the user's namespace
                _set_card_repo(upload_dir, repo_url.repo_id)
            if revision:
                api.create_branch(repo_url.repo_id, branch=revision, exist_ok=True)
            log(f"Uploading {len(files)} files to {repo_url.repo_id}" + (f" (branch {revision})" if revision else ""))
            message = commit_message or ("Upload stock GPT-2 export" if exported else "Upload model")
            info = api.upload_folder(repo_id=repo_url.repo_id, folder_path=upload_dir, revision=revision,
                                     commit_message=message, ignore_patterns=list(PUSH_IGNORE_PATTERNS))
        except _transport_error() as err:
            raise UsageError(f"Could not reach the Hub at {api.endpoint}: {err}. Check the connection (and "
                             f"HF_ENDPOINT).") from None
        except HfHubHTTPError as err:
            status = getattr(err.response, "status_code", None)
            if status in (401, 403):
                raise UsageError(f"The Hub refused the token for {repo_id!r} (HTTP {status}): it may be invalid, "
                                 f"read-only, or without rights on that namespace. {HOW_TO_LOG_IN}") from None
            raise
    log(f"Done: {info.commit_url}")
    return info.commit_url


__all__ = ["UsageError", "NotAModelFolderError", "SAMPLING_DEFAULTS", "card_from_folder", "check_model_folder",
           "check_repo_id", "export_folder", "push_folder", "render_usage", "require_token", "sampling_generation_config",
           "save_for_hub", "upload_file_list", "write_model_card"]
