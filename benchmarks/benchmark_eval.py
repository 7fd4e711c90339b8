"""Evaluation speed (scored tokens/s): hf_gpt's strided loop against the book's `calc_loss_loader`, and stock
`transformers.GPT2LMHeadModel` through the same strided loop.

One 124M-shape model (random init: weights do not change the work), its stock GPT-2 twin from `to_gpt2()` (same
weights, so the losses must agree), the-verdict as text. At stride = max_length all three score the same windows (the
book's); at a smaller stride the book has no equivalent, so it is ours against stock only. Contenders alternate
round by round in one process so that load on the machine hits them alike. Prints a table and writes JSON.

    python benchmarks/benchmark_eval.py                              # fp32 and bf16 autocast, ~4 minutes on 2 busy cores
    python benchmarks/benchmark_eval.py --tokens 513 --rounds 1      # a quick smoke run
"""

import argparse
import contextlib
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hf_gpt import GPTConfig, GPTForCausalLM, load_tokenizer
from hf_gpt.data import create_dataloader
from hf_gpt.evaluation import strided_nll
from hf_gpt.resources import THE_VERDICT


def calc_loss_batch(input_batch, target_batch, model, device):
    """The book's, with `.logits` since a transformers model returns an output object."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch).logits
    return F.cross_entropy(logits.flatten(0, 1), target_batch.flatten())


def calc_loss_loader(data_loader, model, device, num_batches=None):
    """The book's (ch. 5), as printed."""
    total_loss = 0.
    if len(data_loader) == 0:
        return float("nan")
    elif num_batches is None:
        num_batches = len(data_loader)
    else:
        num_batches = min(num_batches, len(data_loader))
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i < num_batches:
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            total_loss += loss.item()
        else:
            break
    return total_loss / num_batches


def autocast(precision):
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def race(contenders, rounds):
    """Median seconds and the last loss of each contender; every round runs each once, in turn. No separate warm-up
    pass (a pass takes seconds here): the median of 3 rounds leaves out the first, cold one."""
    times, losses = {name: [] for name in contenders}, {}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            losses[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), losses[name]) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--preset", default="gpt2-small")
    parser.add_argument("--max_length", type=int, default=256, help="also the model's context (the book's 124M)")
    parser.add_argument("--strides", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--tokens", type=int, default=1025, help="tokens of the-verdict to score (+1 for the first)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--output", default="bench_results/benchmark_eval.json")
    args = parser.parse_args()

    config = GPTConfig.from_preset(args.preset, context_length=args.max_length, drop_rate=0.0,
                                   init_scheme="gpt2")  # GPT-2's init: a sane loss (~10.8) to compare
    torch.manual_seed(0)
    ours = GPTForCausalLM(config).eval()
    stock = ours.to_gpt2().eval()
    tokenizer = load_tokenizer()
    text = THE_VERDICT.read_text(encoding="utf-8")
    n_windows = (args.tokens - 1) // args.max_length
    ids = tokenizer(text, verbose=False)["input_ids"][:n_windows * args.max_length + 1]
    loader = create_dataloader(text, tokenizer, batch_size=args.batch_size, max_length=args.max_length,
                               stride=args.max_length, shuffle=False, drop_last=False)
    assert n_windows % args.batch_size == 0, "--tokens - 1 must be a multiple of max_length * batch_size"
    book_batches = n_windows // args.batch_size  # the same windows as ours: the book's first batches

    def ours_fn(model, stride, precision):
        def run():
            nats, n, _ = strided_nll(model, ids, max_length=args.max_length, stride=stride,
                                     batch_size=args.batch_size, bf16=precision == "bf16", progress=False)
            return nats / n
        return run

    def book_fn(precision):
        def run():
            with torch.no_grad(), autocast(precision):
                return calc_loss_loader(loader, ours, "cpu", num_batches=book_batches)
        return run

    rows, scored = [], len(ids) - 1
    print(f"{args.preset} shape, {sum(p.numel() for p in ours.parameters()) / 1e6:.0f}M parameters, "
          f"{scored} tokens of the-verdict, max_length {args.max_length}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds")
    for precision in args.precisions:
        for stride in args.strides:
            contenders = {"hf_gpt strided loop": ours_fn(ours, stride, precision),
                          "stock GPT2LMHeadModel, same loop": ours_fn(stock, stride, precision)}
            if stride == args.max_length:
                contenders["book calc_loss_loader"] = book_fn(precision)
            result = race(contenders, args.rounds)
            base = result["hf_gpt strided loop"][0]
            for name, (seconds, loss) in result.items():
                rows.append({"precision": precision, "stride": stride, "contender": name, "seconds": seconds,
                             "tokens_per_s": scored / seconds, "speedup_of_hf_gpt": seconds / base, "loss": loss})
                print(f"{precision:5} stride {stride:4}  {name:34} {scored / seconds:9.1f} tok/s  "
                      f"{seconds:7.2f} s  hf_gpt x{seconds / base:5.2f}  loss {loss:.6f}")

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"preset": args.preset, "max_length": args.max_length, "tokens": scored, "batch_size": args.batch_size,
            "rounds": args.rounds, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
