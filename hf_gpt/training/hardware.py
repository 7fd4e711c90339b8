"""What the hardware offers a run: CPU threads, bf16 speed, TF32, peak FLOP/s for MFU (glibc's memory reuse:
`_pages`)."""

import os
import re
from dataclasses import dataclass
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


# What launchers set for the number of processes on this machine (torchrun's, then the MPI ones accelerate reads).
LOCAL_SIZE_VARIABLES = ("LOCAL_WORLD_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")


def available_cores():
    """The cores this process may run on (its affinity mask: taskset, cgroup cpusets), else all of the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_processes():
    """How many processes of this run share the machine (1 unless a launcher says otherwise)."""
    for name in LOCAL_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def _accelerate_launch_arguments(cmdline):
    """The arguments of an `accelerate launch` command line (`accelerate launch ...`, `accelerate-launch ...`,
    `python -m accelerate.commands.launch ...`), or None when `cmdline` is some other command."""
    for i, word in enumerate(cmdline):
        name = os.path.basename(word)
        following = cmdline[i + 1:i + 2]
        if name == "accelerate-launch" or (word == "-m" and following == ["accelerate.commands.launch"]):
            return cmdline[i + (1 if name == "accelerate-launch" else 2):]
        if (name == "accelerate" or (word == "-m" and following == ["accelerate.commands.accelerate_cli"])) \
                and "launch" in cmdline[i + 1:i + 3]:
            start = i + 1 + cmdline[i + 1:i + 3].index("launch") + 1
            return cmdline[start:]
    return None


def thread_count_origin():
    """Who set this process's thread count: None when `accelerate launch` set OMP_NUM_THREADS on its own, else a
    few words naming the setting that holds (the user's flag or variable, or torch's own setting).

    The launcher always sets OMP_NUM_THREADS for its processes: the user's --num_cpu_threads_per_process, else the
    OMP_NUM_THREADS it was itself started with, else 1 (or, with --cpu / use_cpu, physical cores per process when
    that is more than 1); an accelerate config cannot name a thread count. So the child's variable alone cannot tell
    "the user said 1" from "the launcher defaulted to 1", but the launcher's inputs can: the launcher is this
    process's parent, and its command line (read with accelerate's own parser, so `--num-cpu-threads-per-process=2`
    counts too) and the environment it was started with are what its user gave it. Anything unreadable or
    unexpected (another launcher, a wrapper script in between, another user's process) counts as the user's
    choice, which is then kept."""
    omp = os.environ.get("OMP_NUM_THREADS")
    if omp is None:
        return "torch's setting, no OMP_NUM_THREADS"
    users = f"OMP_NUM_THREADS={omp}"
    try:
        import psutil

        launcher = psutil.Process(os.getppid())
        arguments = _accelerate_launch_arguments(launcher.cmdline())
        if arguments is None:
            return users
        from accelerate.commands.launch import launch_command_parser

        parsed, _ = launch_command_parser().parse_known_args(arguments)
        if parsed.num_cpu_threads_per_process is not None:
            return f"--num_cpu_threads_per_process {parsed.num_cpu_threads_per_process}"
        return users if "OMP_NUM_THREADS" in launcher.environ() else None
    except (Exception, SystemExit):
        return users


@dataclass
class CpuThreads:
    threads: int
    cores: int
    processes: int
    origin: str | None  # what set the count when it is not ours (cores // processes)

    def __str__(self):
        def count(n, word, plural="s"):
            return f"{n} {word}{plural if n != 1 else ''}"

        return (f"CPU: {count(self.threads, 'thread')} ({count(self.cores, 'core')} available, "
                f"{count(self.processes, 'process', 'es')}{f'; {self.origin}' if self.origin else ''})")


def use_cpu_threads():
    """Intra-op threads for a CPU run: when `accelerate launch` chose the count itself (OMP_NUM_THREADS=1 unless
    told otherwise), every core this process may use, shared among the machine's processes of the run; the user's
    OMP_NUM_THREADS or --num_cpu_threads_per_process is kept, as is torch's setting outside a launcher."""
    cores, processes = available_cores(), local_processes()
    origin = thread_count_origin()
    if origin is None:
        torch.set_num_threads(max(cores // processes, 1))
    return CpuThreads(torch.get_num_threads(), cores, processes, origin)


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
    """TF32 where CUDA has it (Ampere or newer): fp32 matrix products on tensor cores, nanoGPT's default and the
    first step of the book's GPU speed-ups. bf16 autocast products do not use it; fp32 runs gain the most."""
    from transformers.utils import is_torch_tf32_available

    return is_torch_tf32_available()


def flops_per_token(model, seq_len, vocab_size=None):
    """Training FLOPs per token, nanoGPT's estimate: 6N + 12 x layers x width x seq_len (attention), where N is every
    parameter once (a tied head shares the embedding) but the position embedding. `vocab_size` is the vocabulary a
    tokenizer uses: rows padded past it are counted out, as they do no useful work. The one MFU formula: training's
    log and the benchmarks both use it, for hf_gpt and for stock GPT-2 alike."""
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
