"""Push a saved model folder to the Hugging Face Hub.

    python scripts/push_to_hub.py outputs/gpt-verdict alice/gpt-verdict
    python scripts/push_to_hub.py outputs/gpt-verdict alice/gpt-verdict-gpt2 --as-gpt2 --private
    python scripts/push_to_hub.py outputs/gpt-verdict alice/gpt-verdict --revision experiment-1

The token comes from `hf auth login` or the HF_TOKEN environment variable (there is deliberately no --token flag:
a token on the command line ends up in shell history and process lists). Everything checkable locally (repo id,
folder contents, login) is checked before anything is uploaded.
"""

import argparse

from huggingface_hub.errors import HfHubHTTPError

from hf_gpt import cli
from hf_gpt.cli import UsageError, add_debug_flag, run
from hf_gpt.hub import push_folder


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("folder", help="a folder written by save_pretrained / scripts/pretrain.py")
    parser.add_argument("repo_id", help="`username/name` (or `name` for your own namespace)")
    parser.add_argument("--private", action="store_true", help="create the repo private (no effect if it exists)")
    parser.add_argument("--format", choices=("hf_gpt", "gpt2"), default="hf_gpt",
                        help="hf_gpt: the folder as is (loads with trust_remote_code, or with hf_gpt installed); "
                             "gpt2: its stock GPT-2 export, which loads without remote code")
    parser.add_argument("--as-gpt2", "--as_gpt2", dest="format", action="store_const", const="gpt2",
                        help="the same as --format gpt2")
    parser.add_argument("--revision", default=None, help="branch to push to (created if missing); default main")
    parser.add_argument("--commit_message", default=None)
    add_debug_flag(parser)
    return parser.parse_args(argv)


def main(argv=None):
    """One `error: ...` line for any failure (--debug shows the traceback); nothing in the folder is changed."""
    return run(_main, argv)


def _main(argv=None):
    args = parse_args(argv)
    try:
        push_folder(args.folder, args.repo_id, private=True if args.private else None, revision=args.revision,
                    format=args.format, commit_message=args.commit_message)
    except HfHubHTTPError as err:
        raise UsageError(f"the Hub answered: {err}") from None


if __name__ == "__main__":
    cli.exit(main)
