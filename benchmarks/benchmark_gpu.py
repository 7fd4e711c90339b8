#!/usr/bin/env python
"""GPU throughput of hf_gpt's GPTForCausalLM against stock `transformers.GPT2LMHeadModel` at gpt2-small (124M).

    python benchmarks/benchmark_gpu.py                  # on a CUDA GPU: training, then generation
    python benchmarks/benchmark_gpu.py --tiny           # CPU smoke test with tiny shapes (no fused AdamW, no TF32)
    python benchmarks/benchmark_gpu.py --part train --batch_size 16 --out /tmp/gpu.json

Training: context 1024, tied head, bf16 autocast over fp32 weights, SDPA (flash on CUDA), fused AdamW, TF32 on;
each model compiled with `torch.compile` and eager, the contenders alternating in rounds (A, B, A, B, ...)
so clock and thermal drift hit them alike. Step time is the median over all timed steps (CUDA events around
forward + loss + backward + AdamW). MFU uses nanoGPT's count: FLOPs/token = 6N + 12 * n_layer * d_model * T, with N
all parameters (the tied head once) minus the position embedding (hf_gpt.training.hardware.flops_per_token, as
training's log), over the GPU's dense bf16 peak (hardware.PEAK_BF16_TFLOPS: 989 TFLOP/s on an H100 or H200; others
need --peak_tflops). `ours-pad+liger` trains the padded model with Liger's fused linear + cross-entropy for the head
(liger-kernel, CUDA only; skipped elsewhere): the backbone compiled, the loss computed chunk by chunk from the hidden
states without the [tokens x vocabulary] logits.

Generation: greedy, `--new_tokens` after a `--prompt_len` random prompt, bf16 weights, at each `--gen_batches`; the
static cache with `generate`'s own compile of the decoding forward (mode reduce-overhead, fullgraph) against the
default dynamic cache in eager. Tokens/s = batch * new tokens / wall time of the whole `generate` (prefill included).

Imports only torch, transformers and hf_gpt's model files (no datasets/tokenizer), so it runs on a bare GPU box
with random token ids. Writes JSON after each part (partial results survive a time limit).
"""

import argparse
import contextlib
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.generation.configuration_utils import CompileConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_gpt.model.configuration_gpt import GPTConfig  # noqa: E402
from hf_gpt.model.modeling_gpt import GPTForCausalLM  # noqa: E402
from hf_gpt.training.hardware import PEAK_BF16_TFLOPS, flops_per_token  # noqa: E402

TINY = {"vocab_size": 512, "context_length": 64, "emb_dim": 64, "n_heads": 4, "n_layers": 2}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny model and shapes")
    p.add_argument("--part", default="train,generate", help="comma list of: train, generate")
    p.add_argument("--batch_size", type=int, default=None, help="training micro-batch (default 32; tiny 2)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per contender per round (default 10)")
    p.add_argument("--warmup_steps", type=int, default=None, help="untimed steps first, compile included (default 5)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3)")
    p.add_argument("--contenders", default="ours/compiled,stock/compiled,ours-pad/compiled,ours/eager,stock/eager",
                   help="comma list of MODEL/MODE, MODEL one of ours, stock, ours-pad (vocab padded to a multiple "
                        "of 64: 50304), optionally with @flash, @cudnn or @efficient to pin SDPA's backend (default: "
                        "PyTorch's pick) or @causal (stock's attention with is_causal=True and no mask tensor, also "
                        "compiled, as hf_gpt's own; compiled, stock passes a mask tensor, which flash refuses), "
                        "MODE one of compiled, eager; `ours-pad+liger` (CUDA with liger-kernel) is ours-pad with "
                        "Liger's fused linear + cross-entropy head")
    p.add_argument("--peak_tflops", type=float, default=None,
                   help="dense bf16 peak of the device for MFU (default: hardware.PEAK_BF16_TFLOPS by GPU name; none "
                        "on CPU, where a nominal value only exercises the arithmetic)")
    p.add_argument("--dropout", type=float, default=0.0, help="drop rate of both models (pretraining at scale: 0)")
    p.add_argument("--gen_batches", default=None, help="comma list of generate batch sizes (default 1,8)")
    p.add_argument("--prompt_len", type=int, default=None, help="prompt tokens (default 128)")
    p.add_argument("--new_tokens", type=int, default=None, help="greedy new tokens (default 256)")
    p.add_argument("--gen_rounds", type=int, default=3)
    p.add_argument("--no_gen_compile", action="store_true",
                   help="static cache without compile (a CPU dry run: inductor's C++ build takes minutes there)")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--out", default="bench_results/benchmark_gpu.json")
    args = p.parse_args(argv)
    tiny = args.tiny
    defaults = {"batch_size": (2, 32), "steps": (2, 10), "warmup_steps": (2, 5), "rounds": (2, 3),
                "gen_batches": ("1,2", "1,8"), "prompt_len": (8, 128), "new_tokens": (8, 256)}
    for name, (small, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if tiny else full)
    args.device = "cpu" if tiny or not torch.cuda.is_available() else "cuda"
    if args.peak_tflops is None and args.device == "cuda":
        name = torch.cuda.get_device_name()
        args.peak_tflops = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    return args


def model_shapes(args):
    if args.tiny:
        return dict(TINY)
    cfg = GPTConfig.from_preset("gpt2-small")
    return {k: getattr(cfg, k) for k in TINY}


def register_causal_sdpa():
    """`sdpa_causal`: transformers' SDPA, but with no mask tensor when there is no padding and no cache (a training
    window), also while compiled. Compiled, stock GPT-2 materialises the causal mask (it hands its own positions to
    the packed-sequence check, which cannot branch while tracing), and a mask tensor rules out the flash kernels.
    hf_gpt's model passes only positions a caller gave, so `stock@causal` is stock with hf_gpt's attention path."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    def mask(*args, **kwargs):
        square = kwargs.get("q_length") == kwargs.get("kv_length") and not kwargs.get("q_offset", 0)
        if kwargs.get("attention_mask") is None and square and kwargs.get("allow_is_causal_skip", True):
            return None
        return sdpa_mask(*args, **kwargs)

    AttentionInterface.register("sdpa_causal", sdpa_attention_forward)
    AttentionMaskInterface.register("sdpa_causal", mask)


def build(kind, args, dtype=torch.float32, attn="sdpa"):
    """Ours or stock, same sizes, tied head, SDPA; GPT-2's initialisation for both. `ours-pad` is ours with the
    vocabulary padded to a multiple of 64 (nanoGPT's 50304): a config choice for pretraining from scratch (the
    extra rows are never a target), not loadable from OpenAI's 50257-row checkpoints."""
    s = model_shapes(args)
    torch.manual_seed(args.seed)
    if kind in ("ours", "ours-pad"):
        if kind == "ours-pad":
            s["vocab_size"] = -(-s["vocab_size"] // 64) * 64
        cfg = GPTConfig(**s, qkv_bias=True, tie_word_embeddings=True, drop_rate=args.dropout, init_scheme="gpt2")
        model = GPTForCausalLM._from_config(cfg, attn_implementation=attn)
    else:
        cfg = GPT2Config(n_embd=s["emb_dim"], n_layer=s["n_layers"], n_head=s["n_heads"],
                         n_positions=s["context_length"], vocab_size=s["vocab_size"], resid_pdrop=args.dropout,
                         embd_pdrop=args.dropout, attn_pdrop=args.dropout)
        model = GPT2LMHeadModel._from_config(cfg, attn_implementation=attn)
        # Its class name maps to no loss type, so its forward logs "loss_type=None ... unrecognized" (a logging
        # call: 2 graph breaks under compile). Naming the loss it falls back to anyway gives stock its best.
        model.loss_type = "ForCausalLM"
    return model.to(device=args.device, dtype=dtype)


def graph_breaks():
    from torch._dynamo.utils import counters

    return sum(counters["graph_break"].values()), counters["stats"]["unique_graphs"]


def profile_step(step, args):
    """One step under the profiler: the attention kernels it launches (flash / efficient / math) and the kernels
    that take the most GPU time, to say where a step's time goes."""
    if args.device != "cuda":
        return [], []
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    events = prof.key_averages()
    keys = ("flash", "fmha", "efficient", "attention", "cudnn_sdpa", "sdpa")
    attention = sorted({e.key[:80] for e in events if any(k in e.key.lower() for k in keys)})

    def gpu_us(e):
        return getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)

    total = sum(gpu_us(e) for e in events) or 1
    top = sorted(events, key=gpu_us, reverse=True)[:15]
    return attention, [{"kernel": e.key[:100], "ms": round(gpu_us(e) / 1e3, 2), "share": round(gpu_us(e) / total, 3),
                        "calls": e.count} for e in top]


def liger_unavailable(args):
    """Why Liger's fused linear + cross-entropy cannot run here, or None."""
    if args.device != "cuda":
        return "CUDA only (liger-kernel's Triton kernels)"
    try:
        import liger_kernel.transformers  # noqa: F401
    except ImportError as e:
        return f"liger-kernel not importable ({e}): pip install liger-kernel"
    return None


def liger_forward(model, compiled):
    """A forward for `Trainer.step` whose loss is Liger's fused linear + cross-entropy over the backbone's hidden
    states and the (tied) head's weight: the logits are never materialised. The backbone is compiled like the
    others; Liger's Triton kernels run as they are (they handle autocast themselves)."""
    from types import SimpleNamespace

    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    loss_fn = LigerFusedLinearCrossEntropyLoss()
    backbone = torch.compile(model.get_decoder()) if compiled else model.get_decoder()
    head = model.get_output_embeddings()

    def forward(input_ids, labels, use_cache=False):
        hidden = backbone(input_ids=input_ids, use_cache=use_cache).last_hidden_state
        hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])  # labels = input_ids, shifted as the models do
        return SimpleNamespace(loss=loss_fn(head.weight, hidden, labels[:, 1:].reshape(-1)))

    return forward


def sdpa_backend(name):
    """Pin SDPA to one backend (flash, cudnn, efficient); None keeps PyTorch's own pick."""
    if name is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION"}
    return sdpa_kernel(getattr(SDPBackend, names[name]))


class Trainer:
    """One model, its fused AdamW and a (compiled or eager) forward: a full pretraining step on random ids."""

    def __init__(self, name, model, forward, args, batches, backend=None):
        self.name, self.model, self.forward, self.args, self.batches = name, model, forward, args, batches
        self.backend = backend
        self.i = 0
        self.times_ms = []
        self.peak_mem = 0

    def step(self):
        x = self.batches[self.i % len(self.batches)]
        self.i += 1
        with torch.autocast(self.args.device, dtype=torch.bfloat16), sdpa_backend(self.backend):
            loss = self.forward(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        self.model.optimizer.step()
        self.model.optimizer.zero_grad(set_to_none=True)
        return loss

    def run(self, steps, timed):
        cuda = self.args.device == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(steps)]
        for k in range(steps):
            if cuda:
                events[k][0].record()
            else:
                t0 = time.perf_counter()
            self.step()
            if cuda:
                events[k][1].record()
            elif timed:
                self.times_ms.append((time.perf_counter() - t0) * 1e3)
        if cuda:
            torch.cuda.synchronize()
            if timed:
                self.times_ms += [a.elapsed_time(b) for a, b in events]
            self.peak_mem = max(self.peak_mem, torch.cuda.max_memory_allocated())


def bench_train(args):
    cuda = args.device == "cuda"
    s = model_shapes(args)
    contenders = [c.split("/") for c in args.contenders.split(",")]
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    batches = [torch.randint(0, s["vocab_size"], (args.batch_size, s["context_length"]), generator=gen).to(args.device)
               for _ in range(4)]
    trainers, info, skipped = [], {}, {}
    for kind in dict.fromkeys(k for k, _ in contenders):
        base, _, backend = kind.partition("@")
        base, liger = base.removesuffix("+liger"), base.endswith("+liger")
        if liger and (reason := liger_unavailable(args)):
            skipped.update({f"{k}/{m}": reason for k, m in contenders if k == kind})
            print(f"skipped {kind}: {reason}", flush=True)
            continue
        if backend == "causal":
            register_causal_sdpa()
        model = build(base, args, attn="sdpa_causal" if backend == "causal" else "sdpa").train()
        backend = None if backend == "causal" else backend
        model.optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                            **({"fused": True} if cuda else {}))
        info[kind] = {"params": sum(p.numel() for p in model.parameters()),
                      "flops_per_token": flops_per_token(model, model_shapes(args)["context_length"], model_shapes(args)["vocab_size"])}
        for k, mode in contenders:
            if k == kind:
                forward = torch.compile(model) if mode == "compiled" else model
                if liger:
                    forward = liger_forward(model, mode == "compiled")
                trainers.append(Trainer(f"{kind}/{mode}", model, forward, args, batches, backend or None))

    results = {}
    for t in trainers:  # warm-up (and compile), one contender at a time
        breaks0, graphs0 = graph_breaks()
        t0 = time.perf_counter()
        t.run(args.warmup_steps, timed=False)
        kind, mode = t.name.split("/")
        results[t.name] = {"warmup_s": round(time.perf_counter() - t0, 1)}
        if mode == "compiled":
            breaks1, graphs1 = graph_breaks()
            results[t.name].update(graph_breaks=breaks1 - breaks0, graphs=graphs1 - graphs0)
        results[t.name]["attention_kernels"], results[t.name]["top_kernels"] = profile_step(t.step, args)
        print(f"warm-up {t.name}: {results[t.name]}", flush=True)
    breaks_before = graph_breaks()
    for r in range(args.rounds):  # A, B, A, B: the contenders alternate every round
        for t in trainers:
            t.run(args.steps, timed=True)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    recompiled = graph_breaks() != breaks_before

    tokens = args.batch_size * s["context_length"]
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    for t in trainers:
        kind = t.name.split("/")[0]
        ms = statistics.median(t.times_ms)
        tps = tokens / (ms / 1e3)
        results[t.name].update(
            median_step_ms=round(ms, 2), min_step_ms=round(min(t.times_ms), 2), max_step_ms=round(max(t.times_ms), 2),
            timed_steps=len(t.times_ms), tokens_per_s=round(tps), peak_mem_gb=round(t.peak_mem / 2**30, 2),
            mfu=round(tps * info[kind]["flops_per_token"] / peak, 4) if peak else None,
        )
    for kind, mode in contenders:
        base, at, backend = kind.partition("@")
        stock = f"stock{at}{backend}/{mode}"  # stock on the same SDPA backend
        if base != "stock" and stock in results and f"{kind}/{mode}" in results:
            results[f"{kind}/{mode}"]["vs_stock"] = round(
                results[stock]["median_step_ms"] / results[f"{kind}/{mode}"]["median_step_ms"], 3)
        without = f"{kind.replace('+liger', '')}/{mode}"  # the same model, the flag off
        if "+liger" in kind and f"{kind}/{mode}" in results and without in results:
            results[f"{kind}/{mode}"]["vs_without_liger"] = round(
                results[without]["median_step_ms"] / results[f"{kind}/{mode}"]["median_step_ms"], 3)
    for kind in info:
        if f"{kind}/compiled" in results and f"{kind}/eager" in results:
            results[f"{kind}/compiled"]["vs_eager"] = round(
                results[f"{kind}/eager"]["median_step_ms"] / results[f"{kind}/compiled"]["median_step_ms"], 3)
    del trainers
    return {"batch_size": args.batch_size, "context": s["context_length"], "tokens_per_step": tokens,
            "dropout": args.dropout, "peak_tflops": args.peak_tflops, "models": info,
            "recompiled_during_timing": recompiled, "results": results, "skipped": skipped}


def bench_generate(args):
    cuda = args.device == "cuda"
    s = model_shapes(args)
    dtype = torch.bfloat16 if cuda else torch.float32
    models = {}
    for kind in ("ours", "stock"):
        m = build(kind, args, dtype=dtype).eval()
        m.generation_config.eos_token_id = None  # random weights: always generate all new tokens
        m.generation_config.pad_token_id = 0
        models[kind] = m
    compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead" if cuda else "default")
    if not cuda:
        compile_config._compile_all_devices = True  # smoke-test generate's compile path on CPU too
    modes = {"static+compile": {"cache_implementation": "static", "compile_config": compile_config},
             "dynamic eager": {}}
    if args.no_gen_compile:
        modes = {"static eager": {"cache_implementation": "static", "disable_compile": True}, "dynamic eager": {}}

    def generate(kind, mode, prompt):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = models[kind].generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                    max_new_tokens=args.new_tokens, **modes[mode])
        if cuda:
            torch.cuda.synchronize()
        assert out.shape[1] == prompt.shape[1] + args.new_tokens, out.shape
        return time.perf_counter() - t0, out

    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    results = {}
    for batch in [int(b) for b in args.gen_batches.split(",")]:
        prompt = torch.randint(0, s["vocab_size"], (batch, args.prompt_len), generator=gen).to(args.device)
        times = {(k, m): [] for m in modes for k in models}
        outs = {}
        for key in times:  # warm-up: compile and CUDA-graph capture
            t0 = time.perf_counter()
            generate(*key, prompt)
            _, outs[key] = generate(*key, prompt)
            print(f"warm-up generate batch {batch} {key}: {time.perf_counter() - t0:.1f} s", flush=True)
        for _ in range(args.gen_rounds):
            for key in times:
                times[key].append(generate(*key, prompt)[0])
        for (kind, mode), ts in times.items():
            sec = statistics.median(ts)
            results[f"{kind}/{mode}/batch{batch}"] = {
                "batch": batch, "median_s": round(sec, 4), "tokens_per_s": round(batch * args.new_tokens / sec, 1),
                "ms_per_step": round(sec / args.new_tokens * 1e3, 3),
                "same_tokens_as_dynamic_eager": bool(torch.equal(outs[(kind, mode)], outs[(kind, "dynamic eager")])),
            }
        for mode in modes:
            ours, stock = results[f"ours/{mode}/batch{batch}"], results[f"stock/{mode}/batch{batch}"]
            ours["vs_stock"] = round(stock["median_s"] / ours["median_s"], 3)
    breaks, graphs = graph_breaks()
    return {"prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "dtype": str(dtype).split(".")[-1],
            "graph_breaks_total": breaks, "results": results}


def matmul_tflops(args):
    """A measured ceiling beside the datasheet's: an 8192^3 bf16 matrix product, random data, median of 20."""
    if args.device != "cuda":
        return None
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(20):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        a @ b
        e1.record()
        torch.cuda.synchronize()
        ts.append(e0.elapsed_time(e1))
    return round(2 * 8192**3 / (statistics.median(ts) / 1e3) / 1e12, 1)


def print_tables(report):
    train = report.get("train")
    if train:
        print(f"\n### Training: {report['model']}, batch {train['batch_size']} x {train['context']} tokens, "
              "bf16 autocast, fused AdamW\n")
        print("| model | mode | step ms (median) | tokens/s | MFU | vs stock | compiled vs eager | peak GiB "
              "| graph breaks |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in train["results"].items():
            kind, mode = name.split("/")
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
            print(f"| {kind} | {mode} | {r['median_step_ms']:.1f} | {r['tokens_per_s']:,} | {mfu} "
                  f"| {r.get('vs_stock', '')} | {r.get('vs_eager', '')} | {r['peak_mem_gb']} "
                  f"| {r.get('graph_breaks', '')} |")
        for name, reason in train.get("skipped", {}).items():
            print(f"| {name.replace('/', ' | ')} | skipped: {reason} | | | | | | |")
        for name, r in train["results"].items():
            if r.get("top_kernels"):
                print(f"\n{name}: top GPU kernels of one step: " + "; ".join(
                    f"{k['kernel'][:60]} {k['ms']} ms x{k['calls']}" for k in r["top_kernels"][:6]))
    gen = report.get("generate")
    if gen:
        print(f"\n### Greedy generate: {report['model']}, {gen['new_tokens']} new tokens after {gen['prompt_len']}, "
              f"{gen['dtype']}\n")
        print("| model | cache / compile | batch | tokens/s | ms per token step | vs stock |")
        print("|---|---|---:|---:|---:|---:|")
        for name, r in gen["results"].items():
            kind, mode, _ = name.split("/")
            print(f"| {kind} | {mode} | {r['batch']} | {r['tokens_per_s']:,} | {r['ms_per_step']} "
                  f"| {r.get('vs_stock', '')} |")


def main(argv=None):
    args = parse_args(argv)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    report = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__, "tiny": args.tiny,
        "peak_flops_assumed": args.peak_tflops and args.peak_tflops * 1e12, "args": vars(args),
        "model": "tiny (2 layers, emb 64, context 64)" if args.tiny else "gpt2-small (124M)",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        out.write_text(json.dumps(report, indent=2))

    report["matmul_bf16_tflops_measured"] = matmul_tflops(args)
    parts = args.part.split(",")
    if "train" in parts:
        while "train" not in report:
            try:
                report["train"] = bench_train(args)
            except torch.OutOfMemoryError:  # a smaller micro-batch rather than no numbers at all
                if args.batch_size == 1:
                    raise
                args.batch_size //= 2
                print(f"out of memory: retrying with batch {args.batch_size}", flush=True)
            if "train" not in report:  # outside `except`, so the failed run's tensors are freed
                gc.collect()
                torch._dynamo.reset()
                torch.cuda.empty_cache()
        save()
        print_tables({"train": report["train"], "model": report["model"]})
    if "generate" in parts:
        if args.device == "cuda":
            torch.cuda.empty_cache()
        report["generate"] = bench_generate(args)
        save()
    print_tables(report)
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
