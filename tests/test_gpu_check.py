"""benchmarks/gpu_check.sh, the one command that checks the GPU pretraining path: its CPU dry run (every part with
tiny shapes, the report files it writes), and the pieces of benchmark_gpu.py it relies on that only a GPU runs."""

import importlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.mark.slow
def test_dry_run_writes_every_part(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_OUT": str(out), "PYTHONPATH": str(REPO),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    md = (out / "gpu_check.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "# GPU check: none (CPU)"
    assert all(word in lines[2] for word in ("torch ", "transformers ", "CUDA none")), lines[2]
    assert "FAILED" not in md, md
    headings = ["## 1. Training benchmark", "## 2. The real path", "## 3. Generation", "## 4. Correctness",
                "### Kill and resume", "## Goals"]
    assert all(h in md for h in headings), md
    assert [md.index(h) for h in headings] == sorted(md.index(h) for h in headings)
    assert "skipped: CUDA only" in md  # the speed-up (Liger) runs on CUDA alone, and says so

    parts = json.loads((out / "gpu_check.json").read_text())["parts"]
    assert set(parts) == {"env", "train", "pretrain", "generate", "correctness", "goals"}
    assert parts["env"]["dry_run"] is True and parts["env"]["torch"] == torch.__version__
    train = parts["train"]["results"]
    for name in ("ours/eager", "ours-pad/eager", "stock/eager"):
        assert train[name]["tokens_per_s"] > 0 and train[name]["mfu"] > 0, train[name]
    assert train["ours/eager"]["vs_stock"] > 0
    assert "CUDA only" in train["ours-pad+liger/eager"]["skipped"]

    real = parts["pretrain"]
    assert real["steps"] == 12 and real["logs_used"] == [4, 6, 8, 10, 12]
    for key in ("tokens_per_s", "mfu", "benchmark_tokens_per_s", "ratio_to_benchmark", "peak_rss_gib"):
        assert real[key] > 0, (key, real)
    assert real["benchmark"] == "ours-pad/eager" and real["vocab_size"] == 50304
    assert "flash" in real["sdpa_backends"], real["attention_ops"]  # CPU's own flash kernel, with no mask tensor
    assert "checkpoint-6" in real["complete_checkpoints"] and real["final_model_saved"]

    gen = parts["generate"]["results"]
    assert {r["batch"] for r in gen.values()} == {1, 2}
    assert all(r["tokens_per_s"] > 0 and r["same_tokens_as_dynamic_eager"] for r in gen.values())

    correct = parts["correctness"]
    assert correct["fp32"]["ok"] and correct["fp32"]["max_abs_diff"] < 1e-4
    assert correct["bf16"]["ok"] and correct["greedy"]["fp32_equal"]
    resume = correct["resume"]
    assert resume["ok"] and resume["steps"] == [8, 10, 12] and resume["max_abs_diff"] == 0  # exact on CPU
    assert len(parts["goals"]["rows"]) == 5


@pytest.fixture
def benchmark_gpu():
    return importlib.import_module("benchmark_gpu")


def test_liger_contender_trains_on_the_models_loss(benchmark_gpu, monkeypatch):
    """The fused linear + cross-entropy forward (CUDA only in the check) shifts the labels as the model does and
    sends the head's gradient to the tied embedding: a reference stand-in for Liger's loss gives the model's own loss
    and gradients."""

    class Reference(torch.nn.Module):  # what LigerFusedLinearCrossEntropyLoss computes, without materialising logits
        def forward(self, weight, hidden, target):
            return F.cross_entropy(hidden @ weight.T, target)

    transformers_mod = types.ModuleType("liger_kernel.transformers")
    transformers_mod.LigerFusedLinearCrossEntropyLoss = Reference
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", transformers_mod)
    args = benchmark_gpu.parse_args(["--tiny"])
    model = benchmark_gpu.build("ours-pad", args).train()
    ids = torch.randint(0, 512, (2, 16))
    loss = benchmark_gpu.liger_forward(model, compiled=False)(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ref = model(input_ids=ids, labels=ids, use_cache=False).loss
    ref.backward()
    torch.testing.assert_close(loss, ref)
    for name, param in model.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, msg=name)


def test_liger_is_skipped_off_cuda(benchmark_gpu):
    args = benchmark_gpu.parse_args(["--tiny"])
    assert "CUDA only" in benchmark_gpu.liger_unavailable(args)


def test_sdpa_backends_named_from_profiler_events():
    from gpu_check import sdpa_backends

    assert sdpa_backends(["aten::_scaled_dot_product_flash_attention",
                          "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>"]) == ["flash"]
    assert sdpa_backends(["fmha_cutlassF_bf16_aligned_64x64_rf_sm80",
                          "aten::_scaled_dot_product_efficient_attention"]) == ["efficient"]
    assert sdpa_backends(["cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16"]) == ["cudnn"]
    assert sdpa_backends(["aten::_scaled_dot_product_attention_math", "aten::scaled_dot_product_attention"]) == ["math"]
    assert sdpa_backends(["aten::mm", "triton_per_fused_softmax_0"]) == []
