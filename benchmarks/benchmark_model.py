"""Speed of hf_gpt's model against stock `transformers.GPT2LMHeadModel` (sdpa) and a book-style no-cache loop.

Same shape and inputs (weights do not change the work done); the contenders alternate round by round in one process so that load on the
machine hits them alike. Prints a table and writes JSON.

    python benchmarks/benchmark_model.py                      # 124M shape, context 256, batch 2, fp32 and bf16 autocast
    python benchmarks/benchmark_model.py --preset gpt-tiny --rounds 2 --new_tokens 20   # a quick smoke run
    python benchmarks/benchmark_model.py --tasks train --precisions fp32 --rounds 9     # one row, more rounds
"""

import argparse
import contextlib
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers

from hf_gpt import GPTConfig, GPTForCausalLM


def build_models(preset, context_length):
    config = GPTConfig.from_preset(
        preset, context_length=context_length, qkv_bias=True, tie_word_embeddings=True, drop_rate=0.0
    )
    torch.manual_seed(0)
    ours = GPTForCausalLM(config)
    stock_config = transformers.GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.context_length, n_embd=config.emb_dim,
        n_layer=config.n_layers, n_head=config.n_heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    stock = transformers.GPT2LMHeadModel._from_config(stock_config, attn_implementation="sdpa")
    return config, ours, stock


def autocast(precision):
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step_fn(model, batch, precision):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    model.train()

    def step():
        with autocast(precision):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def generate_fn(model, prompt, new_tokens, precision):
    model.eval()

    def step():
        with torch.no_grad(), autocast(precision):
            model.generate(
                prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                do_sample=False, pad_token_id=0,
            )

    return step


def book_generate_fn(model, prompt, new_tokens, context_length, precision):
    """The book's `generate_text_simple`: the whole (cropped) context through the model for every token."""
    model.eval()

    def step():
        idx = prompt
        with torch.no_grad(), autocast(precision):
            for _ in range(new_tokens):
                logits = model(idx[:, -context_length:], use_cache=False).logits[:, -1, :]
                idx = torch.cat([idx, logits.argmax(dim=-1, keepdim=True)], dim=1)

    return step


def race(contenders, rounds, reps):
    """Median seconds per call of each contender; each round runs every contender `reps` times, in turn."""
    for fn in contenders.values():
        fn()
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            times[name].append((time.perf_counter() - start) / reps)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gpt2-small")
    parser.add_argument("--context_length", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--new_tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--tasks", nargs="+", default=["train", "generate"], choices=["train", "generate"])
    parser.add_argument("--output", default="bench_results/benchmark_model.json")
    args = parser.parse_args()

    config, ours, stock = build_models(args.preset, args.context_length)
    torch.manual_seed(1)
    batch = torch.randint(0, config.vocab_size, (args.batch_size, args.context_length))
    prompt = batch[:, :4]  # one 4-token prompt per row of the batch
    rows = []
    for precision in args.precisions:
        results = []
        if "train" in args.tasks:
            contenders = {
                "hf_gpt": train_step_fn(ours, batch, precision),
                "transformers GPT2LMHeadModel (sdpa)": train_step_fn(stock, batch, precision),
            }
            results.append(("train step (fwd+bwd+AdamW)", race(contenders, args.rounds, reps=2)))
        if "generate" in args.tasks:
            contenders = {
                "hf_gpt": generate_fn(ours, prompt, args.new_tokens, precision),
                "transformers GPT2LMHeadModel (sdpa)": generate_fn(stock, prompt, args.new_tokens, precision),
                "book generate_text_simple (no cache)": book_generate_fn(
                    ours, prompt, args.new_tokens, config.context_length, precision
                ),
            }
            results.append((f"greedy generate {args.new_tokens} tokens", race(contenders, max(2, args.rounds // 2), reps=1)))
        for task, result in results:
            base = result["hf_gpt"]
            for name, seconds in result.items():
                rows.append(
                    {"task": task, "precision": precision, "contender": name, "seconds": seconds, "vs_hf_gpt": seconds / base}
                )

    print(f"\n{args.preset} shape (tied, qkv bias), context {args.context_length}, batch {args.batch_size}, "
          f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    print(f"{'task':32} {'prec':5} {'contender':40} {'seconds':>9} {'x hf_gpt':>9}")
    for r in rows:
        print(f"{r['task']:32} {r['precision']:5} {r['contender']:40} {r['seconds']:9.4f} {r['vs_hf_gpt']:9.2f}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "preset": args.preset, "context_length": args.context_length, "batch_size": args.batch_size,
        "new_tokens": args.new_tokens, "rounds": args.rounds, "tasks": args.tasks, "torch": torch.__version__,
        "transformers": transformers.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
