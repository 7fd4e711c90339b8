"""Load OpenAI's GPT-2 into the book's GPT, optionally save it, and print a sample.

    python scripts/load_gpt2.py gpt2-medium
    python scripts/load_gpt2.py "gpt2-small (124M)" --save out/gpt2 --format gpt2
    python scripts/load_gpt2.py path/to/folder --temperature 1.4 --top-k 25
    python scripts/load_gpt2.py gpt2/124M     # the book's gpt_download.py folder (OpenAI's TensorFlow checkpoint)

Greedy decoding unless --temperature, --top-k or --top-p is given (as in the book's `generate`, a temperature of 0
means greedy). `--format hf_gpt` saves this package's format (loads with trust_remote_code=True);
`--format gpt2` saves a stock `gpt2` folder any GPT-2 tool reads.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from hf_gpt import cli
from hf_gpt.cli import UsageError, add_debug_flag, run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("model", nargs="?", default="gpt2",
                        help="Hub id (gpt2, gpt2-medium, gpt2-large, gpt2-xl, openai-community/...), a book name "
                             "such as 'gpt2-small (124M)', a local folder (OpenAI's TensorFlow one from the book's "
                             "gpt_download.py too) or weights file (default: gpt2)")
    parser.add_argument("--save", metavar="DIR", help="save the model and tokenizer to DIR")
    parser.add_argument("--format", choices=("hf_gpt", "gpt2"), default="hf_gpt", help="format of --save")
    parser.add_argument("--overwrite", action="store_true",
                        help="let --save replace a folder that already holds files (without it that is refused)")
    parser.add_argument("--prompt", default="Every effort moves you")
    parser.add_argument("--max-new-tokens", type=int, default=25)
    parser.add_argument("--temperature", type=float, help="sample with this temperature (0: greedy)")
    parser.add_argument("--top-k", type=int, help="sample from the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="sample from the smallest set with this probability mass")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--context-length", type=int, help="keep only the first N positions (GPT-2 has 1024)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="default: as stored")
    parser.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: the model folder's own, else "
                                            "GPT-2's, offline if need be)")
    add_debug_flag(parser)
    return parser.parse_args(argv)


def check_inputs(args):
    """Everything that can be told before loading anything: where --save goes, and whether the model and tokenizer
    can be had (a local-looking path that does not exist fails at once; a Hub id is probed once, briefly)."""
    from hf_gpt.model.configuration_gpt import GPT2_ALIASES, GPT2_CHECKPOINTS
    from hf_gpt.locations import check_source

    if args.save:
        from hf_gpt.writing import check_target

        local = Path(os.path.expanduser(args.model))
        check_target(args.save, "--save", overwrite=args.overwrite, sources=[local] if local.exists() else [])
    from hf_gpt.sampling import check_sampling

    check_sampling(lambda name: "--" + name.replace("_", "-"), temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    if args.context_length is not None and args.context_length < 1:
        raise UsageError(f"--context-length must be >= 1, got {args.context_length}.")
    name = args.model
    preset = GPT2_ALIASES.get(name) if not Path(os.path.expanduser(name)).exists() else None
    check_source(name, "model", suggestions=GPT2_ALIASES, repo_id=GPT2_CHECKPOINTS[preset][0] if preset else None)
    if args.tokenizer:
        check_source(args.tokenizer, "--tokenizer", cached_file="tokenizer_config.json")


def generation_kwargs(args):
    """Greedy by default; any sampling flag turns sampling on, as the book's `generate` samples (no top-k/top-p
    unless asked for, temperature 1 unless given)."""
    from hf_gpt.sampling import BOOK_SAMPLING, sampling_kwargs

    return sampling_kwargs(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           defaults=BOOK_SAMPLING) or {"do_sample": False}


def _main(argv=None):
    args = parse_args(argv)
    check_inputs(args)
    from hf_gpt import GPTForCausalLM, load_tokenizer
    from hf_gpt.tokenization import folder_tokenizer

    overrides = {} if args.context_length is None else {"context_length": args.context_length}
    dtype = getattr(torch, args.dtype) if args.dtype else None
    start = time.perf_counter()
    model = GPTForCausalLM.from_gpt2(args.model, dtype=dtype, **overrides)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"loaded {args.model}: {n_params / 1e6:.1f}M parameters, context {model.config.context_length}, "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    tokenizer = load_tokenizer(args.tokenizer or folder_tokenizer(args.model))

    if args.save:
        from hf_gpt.writing import written_whole

        with written_whole(Path(os.path.expanduser(args.save))) as partial:
            if args.format == "gpt2":
                model.save_pretrained_gpt2(partial)
            else:
                model.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
        print(f"saved ({args.format} format) to {args.save}", file=sys.stderr)

    torch.manual_seed(args.seed)
    inputs = tokenizer(args.prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                **generation_kwargs(args))
    text = tokenizer.decode(output[0], skip_special_tokens=True)
    print(text)
    return text


def main(argv=None):
    """One `load_gpt2.py: error: ...` line and exit code 2 for any failure (--debug shows the traceback)."""
    return run(_main, argv, prog="load_gpt2.py")


if __name__ == "__main__":
    cli.exit(main)
