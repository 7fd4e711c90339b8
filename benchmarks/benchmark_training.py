#!/usr/bin/env python
"""Training throughput of scripts/pretrain.py's loop (the Trainer, as hf_gpt.training configures it) against the
book's `train_model_simple` loop: same model, same windows, same batch, on this machine.

    python benchmarks/benchmark_training.py                      # gpt-tiny, batch 4, context 128, 3 alternating rounds
    python benchmarks/benchmark_training.py --preset GPT_CONFIG_124M --max_length 256 --batch_size 2 --steps 20

Each measurement runs in a fresh process; the rounds alternate the loops so machine load hits them alike. Tokens/s
counts the steps after `--warmup_steps` (data loading, forward, backward, clipping, optimizer step; no evaluation,
logging or saving in either loop). The book's loop is fp32 (the book has no autocast); pretrain.py's is measured
in fp32 and in its default precision (bf16 autocast where the hardware has it). Results go to
bench_results/benchmark_training.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _windows(args):
    from hf_gpt import load_tokenizer
    from hf_gpt.data import build_lm_datasets

    files = [args.train_file] if args.train_file else None
    return build_lm_datasets(load_tokenizer(), text_files=files, max_length=args.max_length, stride=args.max_length,
                             verbose=False)["train"]


def measure_book(args):
    """The book's train_model_simple, without its periodic evaluation: AdamW(lr 4e-4, wd 0.1 on every parameter),
    calc_loss_batch = cross_entropy(logits.flatten(0, 1), targets.flatten())."""
    import torch

    from hf_gpt import GPTConfig, GPTForCausalLM

    torch.manual_seed(args.seed)
    model = GPTForCausalLM(GPTConfig.from_preset(args.preset, context_length=args.context_length))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    data = _windows(args).with_format("torch")
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    times, tokens = [], 0
    step = 0
    while step < args.steps:
        for batch in loader:
            input_batch, target_batch = batch["input_ids"], batch["shift_labels"]
            optimizer.zero_grad()
            logits = model(input_ids=input_batch).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())
            loss.backward()
            optimizer.step()
            step += 1
            times.append(time.perf_counter())
            if step > args.warmup_steps:
                tokens += input_batch.numel()
            if step == args.steps:
                break
    return tokens / (times[-1] - times[args.warmup_steps - 1])


def measure_trainer(args, bf16):
    """scripts/pretrain.py's loop with evaluation, sampling, logging and saving turned off."""
    from transformers import TrainerCallback

    from hf_gpt import training

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_step_end(self, args_, state, control, **kwargs):
            self.marks.append((time.perf_counter(), state.num_input_tokens_seen))

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--output_dir", tmp, "--overwrite_output_dir", "--preset", args.preset, "--max_length",
                str(args.max_length), "--per_device_train_batch_size", str(args.batch_size), "--max_steps",
                str(args.steps), "--eval_strategy", "no", "--eval_on_start", "false", "--save_strategy", "no",
                "--logging_steps", str(args.steps + 1), "--sample_max_new_tokens", "0", "--disable_tqdm", "true",
                "--seed", str(args.seed), "--config_overrides", f"context_length={args.context_length}"]
        if args.train_file:
            argv += ["--train_files", args.train_file]
        if bf16 is not None:
            argv += ["--bf16", str(bf16).lower()]
        model_args, data_args, training_args = training.parse_arguments(argv)
        training.run_pretraining(model_args, data_args, training_args, callbacks=[timer])
    (t0, n0), (t1, n1) = timer.marks[args.warmup_steps - 1], timer.marks[-1]
    return (n1 - n0) / (t1 - t0)


def child(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.loop == "book":
        value = measure_book(args)
    else:
        value = measure_trainer(args, {"trainer_fp32": False, "trainer_default": None}[args.loop])
    print(json.dumps({"loop": args.loop, "tokens_per_second": value}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="gpt-tiny")
    parser.add_argument("--context_length", type=int, default=None, help="default: the preset's")
    parser.add_argument("--max_length", type=int, default=None, help="window length (default: context_length)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup_steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train_file", default=None, help="default: the embedded corpus")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--output", default=str(REPO / "bench_results" / "benchmark_training.json"))
    parser.add_argument("--loop", choices=["book", "trainer_fp32", "trainer_default"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.context_length is None:
        from hf_gpt import PRESETS

        args.context_length = PRESETS[args.preset]["context_length"]
    args.max_length = args.max_length or args.context_length
    if args.loop:
        return child(args)

    loops = ["book", "trainer_fp32", "trainer_default"]
    results = {loop: [] for loop in loops}
    passthrough = [f"--{k}={v}" for k, v in vars(args).items() if v is not None and k not in ("loop", "output")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for round_ in range(args.repeats):
        order = loops if round_ % 2 == 0 else loops[::-1]
        for loop in order:
            proc = subprocess.run([sys.executable, __file__, *passthrough, "--loop", loop], capture_output=True,
                                  text=True, env=env)
            if proc.returncode:
                sys.exit(f"{loop} failed:\n{proc.stderr[-3000:]}")
            value = json.loads(proc.stdout.strip().splitlines()[-1])["tokens_per_second"]
            results[loop].append(value)
            print(f"round {round_ + 1} {loop:16s} {value:10.0f} tokens/s", flush=True)

    median = {loop: statistics.median(v) for loop, v in results.items()}
    summary = {
        "config": {k: v for k, v in vars(args).items() if k not in ("loop", "output")},
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "tokens_per_second": results,
        "median_tokens_per_second": median,
        "speedup_fp32": median["trainer_fp32"] / median["book"],
        "speedup_default": median["trainer_default"] / median["book"],
    }
    print(f"\nmedian tokens/s: book {median['book']:.0f} | pretrain.py fp32 {median['trainer_fp32']:.0f} "
          f"({summary['speedup_fp32']:.2f}x) | pretrain.py default precision {median['trainer_default']:.0f} "
          f"({summary['speedup_default']:.2f}x)")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
