"""Load OpenAI's GPT-2 into the book's GPT, optionally save it, and print a sample.

    python scripts/load_gpt2.py gpt2-medium
    python scripts/load_gpt2.py "gpt2-small (124M)" --save out/gpt2 --format gpt2
    python scripts/load_gpt2.py path/to/folder --temperature 1.4 --top-k 25

Greedy decoding unless --temperature, --top-k or --top-p is given (as in the book's `generate`, a temperature of 0
means greedy). `--format hf_gpt` saves this package's format (loads with trust_remote_code=True);
`--format gpt2` saves a stock `gpt2` folder any GPT-2 tool reads.
"""

import argparse
import sys
import time

import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="gpt2",
                        help="Hub id (gpt2, gpt2-medium, gpt2-large, gpt2-xl, openai-community/...), a book name "
                             "such as 'gpt2-small (124M)', or a local folder or weights file (default: gpt2)")
    parser.add_argument("--save", metavar="DIR", help="save the model and tokenizer to DIR")
    parser.add_argument("--format", choices=("hf_gpt", "gpt2"), default="hf_gpt", help="format of --save")
    parser.add_argument("--prompt", default="Every effort moves you")
    parser.add_argument("--max-new-tokens", type=int, default=25)
    parser.add_argument("--temperature", type=float, help="sample with this temperature (0: greedy)")
    parser.add_argument("--top-k", type=int, help="sample from the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="sample from the smallest set with this probability mass")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--context-length", type=int, help="keep only the first N positions (GPT-2 has 1024)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="default: as stored")
    parser.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: GPT-2's, offline if need be)")
    return parser.parse_args(argv)


def generation_kwargs(args):
    """Greedy by default; any sampling flag turns sampling on, as the book's `generate` samples (no top-k/top-p
    unless asked for, temperature 1 unless given)."""
    from hf_gpt.sampling import BOOK_SAMPLING, sampling_kwargs

    return sampling_kwargs(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           defaults=BOOK_SAMPLING) or {"do_sample": False}


def main(argv=None):
    args = parse_args(argv)
    from hf_gpt import GPTForCausalLM, load_tokenizer

    overrides = {} if args.context_length is None else {"context_length": args.context_length}
    dtype = getattr(torch, args.dtype) if args.dtype else None
    start = time.perf_counter()
    model = GPTForCausalLM.from_gpt2(args.model, dtype=dtype, **overrides)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"loaded {args.model}: {n_params / 1e6:.1f}M parameters, context {model.config.context_length}, "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    tokenizer = load_tokenizer(args.tokenizer)

    if args.save:
        if args.format == "gpt2":
            model.save_pretrained_gpt2(args.save)
        else:
            model.save_pretrained(args.save)
        tokenizer.save_pretrained(args.save)
        print(f"saved ({args.format} format) to {args.save}", file=sys.stderr)

    torch.manual_seed(args.seed)
    inputs = tokenizer(args.prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                **generation_kwargs(args))
    text = tokenizer.decode(output[0], skip_special_tokens=True)
    print(text)
    return text


if __name__ == "__main__":
    main()
