#!/usr/bin/env python
"""The default run (`accelerate launch scripts/pretrain.py`, no accelerate config) on one thread against every
core, the way a user starts it: one thread is accelerate launch's own default (`--num_cpu_threads_per_process 1`,
what a run got before hf_gpt chose the count), every core is what pretrain.py now takes when nobody sets one.

    python benchmarks/benchmark_threads.py                    # the full default run, once per contender
    python benchmarks/benchmark_threads.py --max_steps 60 --rounds 2
    python benchmarks/benchmark_threads.py -- --preset GPT_CONFIG_124M --max_length 256   # more pretrain.py flags

Each run is a fresh `accelerate launch` into its own temporary output_dir; the rounds alternate the contenders (and
which goes first) so machine load hits them alike. Per run: training tokens/s (the steps alone, from the
tokens_per_second that trainer_state.json logs every logging_steps), end-to-end tokens/s (train_results.json's
tokens over train_runtime: evaluations, samples and checkpoints included), the command's wall time and the final
validation loss (eval_results.json). Results go to bench_results/benchmark_threads.json.

Every core pays only on a CPU the run has to itself: OpenMP's threads spin at each op's barrier, and on a CPU shared
with other jobs (load above the core count) a spinning thread waits for a descheduled sibling, so all cores can be
several times slower than one thread. `--passive` adds a third contender with OMP_WAIT_POLICY=PASSIVE (threads sleep
at barriers), which must be in the environment before torch loads.
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
# name -> (accelerate launch flags, environment variables)
CONTENDERS = {"1 thread": (["--num_cpu_threads_per_process", "1"], {}), "all cores": ([], {})}
PASSIVE = {"all cores, passive wait": ([], {"OMP_WAIT_POLICY": "PASSIVE"})}


def run_once(contender, args, workdir):
    launch_args, variables = contender
    output_dir = Path(workdir) / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", *launch_args, str(REPO / "scripts" / "pretrain.py"),
               "--output_dir", str(output_dir), "--disable_tqdm", "true", *args.pretrain_args]
    if args.max_steps:
        command += ["--max_steps", str(args.max_steps)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the launcher's, or the flag's, count
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(variables)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"run failed ({proc.returncode}): {' '.join(command)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    said = next((line.split("hf_gpt.training: ", 1)[1] for line in proc.stdout.splitlines() if " CPU: " in line), "?")
    state = json.loads((output_dir / "trainer_state.json").read_text())
    rates = [e["tokens_per_second"] for e in state["log_history"] if "tokens_per_second" in e]
    train = json.loads((output_dir / "train_results.json").read_text())
    evaluation = json.loads((output_dir / "eval_results.json").read_text())
    return {"threads": said, "steps": state["global_step"], "tokens": train["train_tokens"],
            # every logged window holds logging_steps steps of the same tokens: their harmonic mean is tokens / time
            "train_tokens_per_s": statistics.harmonic_mean(rates) if rates else None,
            "end_to_end_tokens_per_s": train["train_tokens"] / train["train_runtime"],
            "wall_s": wall, "eval_loss": evaluation["eval_loss"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_steps", type=int, default=None, help="Stop each run after this many steps "
                        "(default: the default run's two epochs).")
    parser.add_argument("--rounds", type=int, default=1, help="Runs per contender, alternating.")
    parser.add_argument("--output", default=str(REPO / "bench_results" / "benchmark_threads.json"))
    parser.add_argument("--passive", action="store_true", help="Also all cores with OMP_WAIT_POLICY=PASSIVE "
                        "(OpenMP threads sleep at barriers instead of spinning: on a CPU shared with other jobs "
                        "spinning threads wait on descheduled siblings).")
    parser.add_argument("pretrain_args", nargs="*", help="More pretrain.py flags, after `--`.")
    args = parser.parse_args()

    contenders = {**CONTENDERS, **(PASSIVE if args.passive else {})}
    results = {name: [] for name in contenders}
    for round_ in range(args.rounds):
        order = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
        for name in order:
            with tempfile.TemporaryDirectory(prefix="benchmark_threads_") as workdir:
                result = run_once(contenders[name], args, workdir)
            results[name].append(result)
            print(f"round {round_ + 1} {name}: {result['threads']}; {result['train_tokens_per_s']:,.0f} training "
                  f"tokens/s, {result['end_to_end_tokens_per_s']:,.0f} end to end, {result['wall_s']:.0f} s, "
                  f"val loss {result['eval_loss']:.4f}", flush=True)

    def median(name, key):
        return statistics.median(r[key] for r in results[name])

    base = "1 thread"
    print(f"\n{os.cpu_count()} CPUs ({len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} "
          f"available), {results[base][0]['steps']} steps of {results[base][0]['tokens']:,} tokens, "
          f"{args.rounds} round(s), medians:\n")
    print("| contender | threads | training tokens/s | end-to-end tokens/s | wall s | final val loss |")
    print("|---|---|---|---|---|---|")
    for name in contenders:
        ratio = median(name, "train_tokens_per_s") / median(base, "train_tokens_per_s")
        threads = results[name][0]["threads"].removeprefix("CPU: ").split(" (")[0]
        print(f"| {name} | {threads} | {median(name, 'train_tokens_per_s'):,.0f} ({ratio:.2f}x) | "
              f"{median(name, 'end_to_end_tokens_per_s'):,.0f} | {median(name, 'wall_s'):.0f} | "
              f"{median(name, 'eval_loss'):.4f} |")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"max_steps": args.max_steps, "rounds": args.rounds,
                                             "pretrain_args": args.pretrain_args, "results": results}, indent=2))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
