"""Export a saved hf_gpt folder to another format, chosen by name.

    python scripts/export.py outputs/pretrain out/gpt2 --format gpt2     # a stock gpt2 folder (no remote code)

`python scripts/export.py --help` lists every format (hf_gpt.exports.FORMATS).
"""

import argparse
from pathlib import Path

from hf_gpt import cli
from hf_gpt.cli import UsageError, run
from hf_gpt.exports import FORMATS, check_export_target, export, format_module


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("folder", help="a folder written by save_pretrained / scripts/pretrain.py")
    parser.add_argument("output", help="where to write the export")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS),
                        help="; ".join(f"{name}: {format_module(name).__doc__.splitlines()[0]}" for name in FORMATS))
    parser.add_argument("--overwrite", action="store_true",
                        help="replace what the output already holds (without it such an output is refused)")
    return parser.parse_args(argv)


def _main(argv):
    args = parse_args(argv)
    from hf_gpt.hub import check_model_folder

    config = check_model_folder(Path(args.folder), need_tokenizer=False)
    if config.get("model_type") != "hf_gpt":
        raise UsageError(f"{args.folder} holds a {config.get('model_type')!r} model, not an hf_gpt one; export reads "
                         "hf_gpt folders (scripts/pretrain.py's output or model.save_pretrained).")
    check_export_target(args.output, args.format, overwrite=args.overwrite, source=args.folder, flag="output")
    written = export(args.folder, args.output, args.format, overwrite=args.overwrite)
    print(f"wrote {written} ({args.format})")


def main(argv=None):
    """One `error: ...` line and exit code 2 for any failure (HF_GPT_DEBUG=1 shows the traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    cli.exit(main)
