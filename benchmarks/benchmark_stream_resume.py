#!/usr/bin/env python
"""CPU time to the first untrained window when a streamed split resumes deep into its stream: from the position a
checkpoint saves (hf_gpt.streaming) against reading and tokenizing the stream again up to it, which is what resuming
a generator-made `IterableDataset` by its own `state_dict()` does. The two take turns.

    python benchmarks/benchmark_stream_resume.py CORPUS_FOLDER --at 0.9 --rounds 2
"""

import argparse
import itertools
import os
import time

import numpy as np

from hf_gpt.data import build_lm_datasets
from hf_gpt.streaming import resume_from, resume_point


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("corpus", help="a folder of .txt files")
    p.add_argument("--at", type=float, default=0.9, help="where to resume, as a share of the stream's windows")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    files = sorted(os.path.join(args.corpus, f) for f in os.listdir(args.corpus))

    def stream():
        return build_lm_datasets(None, text_files=files, max_length=128, stride=128, validation_fraction=0,
                                 streaming=True)["train"]

    ds = stream()
    total = sum(1 for _ in ds)
    window = int(total * args.at)
    target = next(itertools.islice(iter(ds), window, None))["input_ids"]
    point = resume_point(ds, window)
    print(f"| round | from the saved position (s CPU) | re-reading (s CPU) | ratio |  ({total:,} windows, at {window:,})")
    for r in range(args.rounds):
        resume_from(ds, point)
        t = time.process_time()
        assert np.array_equal(next(iter(ds))["input_ids"], target)
        saved = time.process_time() - t
        t = time.process_time()
        assert np.array_equal(next(itertools.islice(iter(stream()), window, None))["input_ids"], target)
        again = time.process_time() - t
        print(f"| {r} | {saved:.2f} | {again:.2f} | {again / saved:.1f}x |")


if __name__ == "__main__":
    main()
