"""Peak memory and time of loading a GPT-2 checkpoint: `GPTForCausalLM.from_gpt2` next to `GPT2LMHeadModel.from_pretrained`.

    python benchmarks/benchmark_weights.py                       # gpt2-xl shape: 1.56B parameters, a ~6.2 GB file
    python benchmarks/benchmark_weights.py --size gpt2-small --repeats 3

Writes a random checkpoint of the chosen shape as `GPT2LMHeadModel.save_pretrained` does (one `model.safetensors`,
`transformer.` prefix, tied head), streamed tensor by tensor so writing it needs no model in memory. Each load runs
in a fresh Python process that reports its peak RSS (`ru_maxrss`) at the end of the load, before any forward
pass, and its RSS right after the imports. The
target is peak RSS <= 1.3 x the file size. The file is read warm (just written, so in the page cache).
"""

import argparse
import json
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {  # n_embd, n_layer, n_head
    "gpt2-small": (768, 12, 12),
    "gpt2-medium": (1024, 24, 16),
    "gpt2-large": (1280, 36, 20),
    "gpt2-xl": (1600, 48, 25),
    "tiny": (64, 2, 4),
}
VOCAB, POSITIONS = 50257, 1024


def gpt2_shapes(n_embd, n_layer, n_head):
    """The GPT-2 tensors of a size, from hf_gpt's one GPT-2 <-> book table."""
    from hf_gpt import GPTConfig
    from hf_gpt.model.conversion_gpt import gpt2_tensor_shapes
    from hf_gpt.model.modeling_gpt import GPTForCausalLM

    config = GPTConfig.from_preset("gpt2-small", emb_dim=n_embd, n_layers=n_layer, n_heads=n_head)
    return [("transformer." + name, shape) for name, shape in gpt2_tensor_shapes(config, GPTForCausalLM).items()]


def write_checkpoint(folder, size):
    """A random GPT-2 of `size` in safetensors, written one tensor at a time (the format: u64 header length,
    JSON header, raw little-endian data)."""
    import torch
    from transformers import GPT2Config

    n_embd, n_layer, n_head = SIZES[size]
    folder.mkdir(parents=True, exist_ok=True)
    GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_positions=POSITIONS, vocab_size=VOCAB,
               architectures=["GPT2LMHeadModel"]).to_json_file(folder / "config.json")
    shapes = gpt2_shapes(n_embd, n_layer, n_head)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes:
        nbytes = 4 * torch.Size(shape).numel()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    generator = torch.Generator().manual_seed(0)
    with open(folder / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for name, shape in shapes:
            tensor = torch.empty(shape).normal_(0.0, 0.02, generator=generator)
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                tensor.add_(1.0)
            f.write(tensor.numpy().data)
    return sum(torch.Size(s).numel() for _, s in shapes)


def child(loader, folder):
    """One measured load, in this fresh process: JSON on stdout."""
    import torch
    import transformers
    import hf_gpt

    transformers.logging.set_verbosity_error()
    rss_imports = _rss()
    start = time.perf_counter()
    if loader == "hf_gpt":
        model = hf_gpt.GPTForCausalLM.from_gpt2(folder)
    else:
        model = transformers.GPT2LMHeadModel.from_pretrained(folder)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    with torch.no_grad():
        logits = model(torch.tensor([[6109, 3626, 6100, 345]])).logits
    print(json.dumps({
        "loader": loader,
        "seconds": seconds,
        # Stock from_pretrained maps the file lazily: its pages are read by the first forward pass.
        "seconds_with_first_forward": time.perf_counter() - start,
        "peak_rss": peak,
        "rss_after_imports": rss_imports,
        "params": sum(p.numel() for p in model.parameters()),
        "logits_checksum": float(logits.double().sum()),
    }))


def _rss():
    import psutil

    return psutil.Process().memory_info().rss


def measure(loader, folder):
    out = subprocess.run([sys.executable, __file__, "--child", loader, str(folder)], capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise RuntimeError(f"{loader} load failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="gpt2-xl")
    parser.add_argument("--repeats", type=int, default=1, help="loads per loader, alternating (default 1)")
    parser.add_argument("--workdir", type=Path, help="where to write the checkpoint (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint (and reuse it if present)")
    parser.add_argument("--skip-stock", action="store_true", help="measure GPTForCausalLM.from_gpt2 only")
    parser.add_argument("--child", nargs=2, metavar=("LOADER", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hf_gpt_bench_"))
    folder = workdir / f"random-{args.size}"
    try:
        if not (args.keep and (folder / "model.safetensors").is_file()):
            start = time.perf_counter()
            n = write_checkpoint(folder, args.size)
            print(f"wrote a random {args.size} ({n / 1e9:.3f}B parameters) in {time.perf_counter() - start:.1f} s")
        file_size = (folder / "model.safetensors").stat().st_size
        print(f"file: {folder / 'model.safetensors'} ({file_size / 1e9:.3f} GB)")
        loaders = ["hf_gpt"] + ([] if args.skip_stock else ["GPT2LMHeadModel"])
        runs = [measure(loader, folder) for _ in range(args.repeats) for loader in loaders]
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{'loader':<16} {'load s':>8} {'+1st forward s':>15} {'peak RSS GB':>12} {'peak/file':>10} "
          f"{'(peak-imports)/file':>20}")
    for r in runs:
        print(f"{r['loader']:<16} {r['seconds']:>8.2f} {r['seconds_with_first_forward']:>15.2f} "
              f"{r['peak_rss'] / 1e9:>12.3f} {r['peak_rss'] / file_size:>10.2f} "
              f"{(r['peak_rss'] - r['rss_after_imports']) / file_size:>20.2f}")
    ours = [r for r in runs if r["loader"] == "hf_gpt"]
    stock = [r for r in runs if r["loader"] != "hf_gpt"]
    if stock and abs(ours[0]["logits_checksum"] - stock[0]["logits_checksum"]) > 1e-3 * max(1.0, abs(stock[0]["logits_checksum"])):
        print("WARNING: the two loaders give different logits")
    worst = max(r["peak_rss"] for r in ours) / file_size
    print(f"\nhf_gpt peak RSS / file size: {worst:.2f} (target <= 1.30): {'OK' if worst <= 1.3 else 'OVER'}")
    if file_size < 3e9:
        print("(small file: the interpreter and imports, ~0.35 GB, weigh on the ratio; see (peak-imports)/file)")
    return runs


if __name__ == "__main__":
    main()
