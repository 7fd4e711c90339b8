"""Generate text from a saved model folder or a Hub repo, without writing code.

    python scripts/generate.py outputs/gpt-verdict "Every effort moves you"
    python scripts/generate.py outputs/gpt-verdict "Every effort moves you" --greedy --max_new_tokens 25
    python scripts/generate.py alice/gpt-verdict "Every effort moves you" --top_p 0.95 --temperature 0.8 --seed 123 --stream
    python scripts/generate.py outputs/gpt2-export "Every effort moves you" --num_beams 4

Defaults come from the folder's `generation_config.json` (hf_gpt folders sample with top_p 0.9). A sampling flag
(--top_p, --top_k, --temperature) turns sampling on; --num_beams alone means plain beam search; --greedy forces
greedy decoding. Prints the prompt and its continuation.
"""

import argparse
import os
from pathlib import Path

from hf_gpt import cli
from hf_gpt.cli import UsageError, add_debug_flag, check_device, run
from hf_gpt.generation import generation_kwargs as library_generation_kwargs
from hf_gpt.generation import load, prompt_inputs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("model", help="a folder written by save_pretrained / scripts/pretrain.py, or a Hub repo id")
    parser.add_argument("prompt", help="the text to continue (empty: start from <|endoftext|>)")
    parser.add_argument("--max_new_tokens", type=int, default=None)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--num_beams", type=int, default=None)
    parser.add_argument("--num_return_sequences", type=int, default=1)
    parser.add_argument("--repetition_penalty", type=float, default=None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="always pick the most likely token (deterministic)")
    mode.add_argument("--do_sample", action="store_true", help="sample even if the folder's defaults are greedy")
    parser.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")
    parser.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="run the model code (.py files) a folder or Hub repo brings; hf_gpt folders need none "
                             "when hf_gpt is installed")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    from hf_gpt.sampling import check_sampling

    try:
        check_sampling(lambda name: f"--{name}", temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                       max_new_tokens=args.max_new_tokens, min_new_tokens=1, zero_temperature_is_greedy=False)
    except UsageError as err:
        parser.error(str(err))
    for name in ("num_beams", "num_return_sequences"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be >= 1, got {value}")
    if args.repetition_penalty is not None and not 0 < args.repetition_penalty < float("inf"):
        parser.error(f"--repetition_penalty must be > 0 (1: none), got {args.repetition_penalty}")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        parser.error(f"--seed must be in [0, 2**32 - 1], got {args.seed}")
    try:
        check_device(args.device)
    except UsageError as err:
        parser.error(str(err))
    if args.stream and (args.num_return_sequences > 1 or (args.num_beams or 1) > 1):
        parser.error("--stream shows one sequence as it grows: drop --num_beams / --num_return_sequences, or --stream")
    return args


def check_num_return_sequences(args, folder):
    """Several sequences need sampling or as many beams; greedy decoding (--greedy, or the folder's default) gives
    one, and transformers would refuse only after loading the weights."""
    n = args.num_return_sequences
    if n <= 1:
        return
    defaults = {}
    if (Path(folder) / "generation_config.json").is_file():
        import json

        try:
            defaults = json.loads((Path(folder) / "generation_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # the loader names the file
    sampling = not args.greedy and (args.do_sample or any(v is not None for v in (args.temperature, args.top_k,
                                                                                   args.top_p))
                                    or (args.num_beams is None and defaults.get("do_sample", False)))
    beams = args.num_beams or (1 if args.greedy else defaults.get("num_beams", 1))
    if not sampling and beams < n:
        why = "--greedy" if args.greedy else f"{folder} decodes greedily by default (generation_config.json)"
        raise UsageError(f"--num_return_sequences {n} needs sampling or at least {n} beams, and {why}: add "
                         f"--do_sample (or --top_p/--top_k/--temperature), or --num_beams {n}.")


def generation_kwargs(model, args):
    """The command line's choices, passed to `generate` on top of the folder's `generation_config.json`."""
    return library_generation_kwargs(
        model, **{k: getattr(args, k) for k in ("max_new_tokens", "num_beams", "repetition_penalty", "temperature",
                                                "top_k", "top_p", "greedy", "do_sample", "num_return_sequences")})


def _main(argv=None):
    args = parse_args(argv)
    import torch
    from transformers import TextStreamer, set_seed

    if Path(os.path.expanduser(args.model)).is_dir():
        check_num_return_sequences(args, Path(os.path.expanduser(args.model)))
    model, tokenizer = load(args.model, trust_remote_code=args.trust_remote_code)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    kwargs = generation_kwargs(model, args)

    inputs = prompt_inputs(tokenizer, args.prompt, device)
    if args.seed is not None:
        set_seed(args.seed)
    streamer = TextStreamer(tokenizer, skip_special_tokens=True) if args.stream else None
    with torch.no_grad():
        output = model.generate(**inputs, **kwargs, streamer=streamer)
    if not args.stream:
        texts = tokenizer.batch_decode(output, skip_special_tokens=True)
        print("\n---\n".join(texts))
    return 0


def main(argv=None):
    """One `generate.py: error: ...` line and exit code 2 for any failure (--debug shows the traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    cli.exit(main)
