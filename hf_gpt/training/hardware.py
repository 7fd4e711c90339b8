"""What the hardware offers a run: CPU threads, bf16 speed, TF32, peak FLOP/s for MFU, glibc's reuse of freed
memory on CPU."""

import ctypes
import os
import re
import sys
from pathlib import Path

import torch

# Dense bf16 tensor-core peaks (TFLOP/s) of common accelerators, for MFU; others need --peak_tflops.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "A10": 125.0,
                    "L4": 121.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0, "T4": 65.0}


def cpu_has_fast_bf16():
    """True on CPUs with AMX or AVX512-BF16, where bf16 autocast trains faster than fp32."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", flags))


def _launcher_chose_threads():
    """True when `accelerate launch` (this process's parent) set OMP_NUM_THREADS itself: started without that variable
    and without --num_cpu_threads_per_process, it gives each process one thread, which leaves the other cores idle."""
    parent = f"/proc/{os.getppid()}"
    try:
        with open(f"{parent}/cmdline", "rb") as f:
            command = f.read().split(b"\0")
        with open(f"{parent}/environ", "rb") as f:
            environment = f.read().split(b"\0")
    except OSError:  # not Linux, or another user's launcher: keep what is set
        return False
    launcher = any(b"accelerate" in word for word in command[:3]) and any(b"launch" in word for word in command[1:4])
    told = any(word.replace(b"-", b"_").startswith(b"__num_cpu_threads_per_process") for word in command)
    return launcher and not told and not any(v.startswith(b"OMP_NUM_THREADS=") for v in environment)


def use_cpu_threads():
    """Intra-op threads for a CPU run: every core this process may use, shared among the run's processes on the
    machine, where `accelerate launch` chose the count itself; the user's OMP_NUM_THREADS or
    --num_cpu_threads_per_process wins. Returns the line that says so."""
    cores, processes = len(os.sched_getaffinity(0)), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    ours = _launcher_chose_threads()
    if ours:
        torch.set_num_threads(max(cores // processes, 1))
    given = os.environ.get("OMP_NUM_THREADS")
    origin = f"; OMP_NUM_THREADS={given} as given" if given and not ours else ""
    return f"CPU threads: {torch.get_num_threads()} ({cores} cores available to {processes} process(es){origin})"


def _has_accelerator():
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return (torch.cuda.is_available() or (mps is not None and mps.is_available())
            or (xpu is not None and xpu.is_available()))


def default_bf16():
    """bf16 autocast where the hardware has it (CUDA with bf16, CPUs with AMX/AVX512-BF16); fp32 otherwise."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return False
    return cpu_has_fast_bf16()


def default_tf32():
    """TF32 where CUDA has it (Ampere or newer): nanoGPT's default, and the first of the book's GPU speed-ups."""
    from transformers.utils import is_torch_tf32_available

    return is_torch_tf32_available()


def flops_per_token(model, seq_len, vocab_size=None):
    """The one MFU formula (training's log and the benchmarks, for hf_gpt and stock GPT-2): nanoGPT's 6N + 12·L·d·T,
    N every parameter once but the position embedding; rows padded past `vocab_size` do no useful work."""
    config = model.config
    width, layers = config.hidden_size, config.num_hidden_layers
    n = sum(p.numel() for p in model.parameters()) - config.max_position_embeddings * width
    if vocab_size is not None:
        tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
        n -= (config.vocab_size - vocab_size) * width * (1 if tied else 2)
    return 6 * n + 12 * layers * width * seq_len


def peak_tflops(training_args):
    """Peak TFLOP/s of one device when known (`--peak_tflops`, or a common GPU in bf16)."""
    if training_args.peak_tflops:
        return training_args.peak_tflops
    if torch.cuda.is_available() and training_args.bf16:
        name = torch.cuda.get_device_name()
        for key, value in PEAK_BF16_TFLOPS.items():
            if key in name:
                return value
    return None


def reuse_freed_memory():
    """glibc keeps freed memory for reuse, as CUDA's caching allocator does (True if it took): else each step's large
    tensors (logits, gradients) are mapped afresh and fault in every page, 1.5x the training time on CPU."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
