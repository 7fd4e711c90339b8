#!/usr/bin/env python
"""Pretrain the book's GPT with the Hugging Face Trainer (the book's chapter 5, plus warmup, cosine decay and
gradient clipping).

    accelerate launch scripts/pretrain.py                         # gpt-tiny on the embedded corpus, minutes on a CPU
    accelerate launch scripts/pretrain.py --preset GPT_CONFIG_124M --train_files the-verdict.txt --max_length 256
    accelerate launch scripts/pretrain.py --init_from gpt2 --train_files my_text/ --max_length 1024
    accelerate launch scripts/pretrain.py args.yaml --max_steps 100   # arguments from a JSON/YAML file, then flags
    accelerate launch scripts/pretrain.py recipes/book-ch5.yaml       # the book's chapter 5 run, to the printed digit
    accelerate launch --multi_gpu --num_processes 2 scripts/pretrain.py ...   # DDP (gloo on a CPU)
    accelerate launch scripts/pretrain.py --resume_from_checkpoint last

`--help` lists every argument with its default. The work is done by `hf_gpt.training`.
"""


import os

# OpenMP threads that spin while waiting for a sibling the OS has descheduled (other jobs on the cores) trained 1.8x
# slower than sleeping ones, which cost ~3% on idle cores (benchmarks/README.md). Read as torch loads; yours wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hf_gpt import cli  # noqa: E402
from hf_gpt.training import main  # noqa: E402

if __name__ == "__main__":
    cli.exit(main)
