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
import sys

from hf_gpt.cli import add_debug_flag, run
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
    for name in ("max_new_tokens", "top_k", "num_beams", "num_return_sequences"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "top_k" else 1):
            parser.error(f"--{name} must be {'>= 0' if name == 'top_k' else '>= 1'}, got {value}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        parser.error(f"--top_p must be in (0, 1], got {args.top_p}")
    if args.temperature is not None and not args.temperature > 0:
        parser.error(f"--temperature must be > 0, got {args.temperature}")
    if args.stream and (args.num_return_sequences > 1 or (args.num_beams or 1) > 1):
        parser.error("--stream shows one sequence as it grows: drop --num_beams / --num_return_sequences, or --stream")
    return args


def generation_kwargs(model, args):
    """The command line's choices, passed to `generate` on top of the folder's `generation_config.json`."""
    return library_generation_kwargs(
        model, **{k: getattr(args, k) for k in ("max_new_tokens", "num_beams", "repetition_penalty", "temperature",
                                                "top_k", "top_p", "greedy", "do_sample", "num_return_sequences")})


def _main(argv=None):
    args = parse_args(argv)
    import torch
    from transformers import TextStreamer, set_seed

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
    sys.exit(main())
