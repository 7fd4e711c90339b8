"""scripts/pretrain.py end to end, in real subprocesses: outputs, kill-and-resume, a kill while a checkpoint is
written, and 2-process DDP through `accelerate launch`."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from hf_gpt.resources import THE_VERDICT

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "pretrain.py"
TINY_MODEL = "n_layers=2,emb_dim=32,n_heads=2,context_length=32"
LOSS_KEYS = ("loss", "grad_norm", "learning_rate", "eval_loss", "eval_train_loss", "eval_perplexity")

# Runs hf_gpt.training.main (what scripts/pretrain.py runs) with test hooks chosen by environment variables:
# SIGKILL after a step, SIGKILL while a checkpoint is being written (after half of optimizer.pt), or record the
# windows each rank trains on.
DRIVER = r'''
import json, os, signal, sys
from pathlib import Path
from transformers import TrainerCallback
from hf_gpt import training

callbacks = []
if os.environ.get("KILL_AFTER_STEP"):
    class KillAfterStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == int(os.environ["KILL_AFTER_STEP"]):
                os.kill(os.getpid(), signal.SIGKILL)
    callbacks.append(KillAfterStep())

if os.environ.get("KILL_DURING_SAVE"):
    original_save = training.PretrainingTrainer._save_optimizer_and_scheduler
    def save_then_die(self, output_dir):
        original_save(self, output_dir)
        if self.state.global_step == int(os.environ["KILL_DURING_SAVE"]):
            path = Path(output_dir) / "optimizer.pt"
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    training.PretrainingTrainer._save_optimizer_and_scheduler = save_then_die

if os.environ.get("NOTE_EVERY_TOKENS"):
    from hf_gpt import streaming
    streaming.NOTE_EVERY_TOKENS = int(os.environ["NOTE_EVERY_TOKENS"])

seen, reads = [], []
if os.environ.get("RECORD_WINDOWS"):
    original_step = training.PretrainingTrainer.training_step
    def recording_step(self, model, inputs, num_items_in_batch=None):
        if not seen:  # rows the streamed training split read before the first step
            from hf_gpt import streaming
            reads.append(streaming.rows_read(self.train_dataset))
        seen.append(inputs["input_ids"].tolist())
        return original_step(self, model, inputs, num_items_in_batch)
    training.PretrainingTrainer.training_step = recording_step

code = training.main(sys.argv[1:], callbacks=callbacks)
if os.environ.get("RECORD_WINDOWS"):
    rank = os.environ.get("RANK", "0")
    Path(os.environ["RECORD_WINDOWS"], f"rank{rank}.json").write_text(json.dumps(seen))
    Path(os.environ["RECORD_WINDOWS"], f"reads{rank}.json").write_text(json.dumps(reads))
sys.exit(code)
'''


def run(args, tmp_path, env=None, launcher=(sys.executable,), expect=0):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                **(env or {})}
    proc = subprocess.run([*launcher, *map(str, args)], cwd=tmp_path, env=full_env, capture_output=True, text=True,
                          timeout=600)
    if expect is not None:
        assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def driver(tmp_path):
    path = tmp_path / "driver.py"
    path.write_text(DRIVER)
    return path


def tiny_args(book_reference, output_dir, *extra):
    return ["--output_dir", output_dir, "--config_overrides", TINY_MODEL,
            "--train_files", THE_VERDICT, "--per_device_train_batch_size", "4",
            "--max_eval_samples", "8", "--eval_train_samples", "8", "--sample_max_new_tokens", "8",
            "--max_steps", "8", "--save_steps", "2", "--eval_steps", "4", "--logging_steps", "1",
            "--save_total_limit", "3", "--disable_tqdm", "true", *extra]


def losses(output_dir):
    """Step -> the logged numbers that must not depend on interruptions or process count."""
    history = json.loads((Path(output_dir) / "trainer_state.json").read_text())["log_history"]
    table = {}
    for entry in history:
        for key in LOSS_KEYS:
            if key in entry:
                table[(entry["step"], key)] = entry[key]
    return table


def assert_same_run(a, b, tol):
    la, lb = losses(a), losses(b)
    assert la.keys() == lb.keys()
    for key in la:
        assert lb[key] == pytest.approx(la[key], rel=tol, abs=tol), key
    wa, wb = load_file(Path(a) / "model.safetensors"), load_file(Path(b) / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=tol, atol=tol, msg=name)


@pytest.fixture(scope="module")
def reference_run(book_reference, tmp_path_factory):
    """The uninterrupted run, through the script itself and with its arguments from a YAML file plus flags."""
    tmp_path = tmp_path_factory.mktemp("reference")
    args = tiny_args(book_reference, tmp_path / "out")
    values = {args[i].lstrip("-"): str(args[i + 1]) for i in range(0, len(args), 2) if args[i] != "--max_steps"}
    values["train_files"] = [values["train_files"]]
    (tmp_path / "args.yaml").write_text(yaml.safe_dump(values))
    proc = run([SCRIPT, tmp_path / "args.yaml", "--max_steps", "8"], tmp_path)
    return tmp_path / "out", proc


@pytest.mark.slow
def test_end_to_end_run_writes_every_output(reference_run):
    out, proc = reference_run
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "train_results.json", "eval_results.json", "all_results.json", "trainer_state.json",
                 "training_args.bin", "loss.png", "samples.jsonl", "configuration_gpt.py", "modeling_gpt.py"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in checkpoints] == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]  # save_total_limit 3
    for checkpoint in checkpoints:
        for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
                     "checkpoint_complete.json"):
            assert (checkpoint / name).is_file(), (checkpoint, name)

    eval_results = json.loads((out / "eval_results.json").read_text())
    assert eval_results["perplexity"] == pytest.approx(math.exp(eval_results["eval_loss"]), rel=1e-5)
    train_results = json.loads((out / "train_results.json").read_text())
    assert train_results["train_tokens"] == 8 * 4 * 32
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    step0 = [e for e in history if e["step"] == 0]
    assert any("eval_loss" in e for e in step0) and any("eval_train_loss" in e for e in step0)
    assert [e["step"] for e in history if "eval_loss" in e] == [0, 4, 8]
    assert all(e["tokens_per_second"] > 0 for e in history if "loss" in e)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [0, 4, 8]
    assert all(s["text"].startswith("Every effort moves you") for s in samples)
    # One console line per logging step and per evaluation (then its sample), as nanoGPT's train.py prints them:
    # no raw Trainer dicts, no progress bars or escape codes in a log that is not a terminal.
    lines = proc.stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines if line.startswith("step ")] == [f"step {k}/8" for k in range(1, 9)]
    assert [line.split(" | ")[0] for line in lines if line.startswith("eval ")] == [f"eval step {k}/8" for k in (0, 4, 8)]
    assert all("val loss" in line and "val perplexity" in line for line in lines if line.startswith("eval "))
    everything = proc.stdout + proc.stderr
    assert "{'" not in everything and "\x1b[" not in everything and "\r" not in everything
    assert len(lines) <= 30, proc.stdout
    assert "glibc malloc keeps freed memory for reuse" in proc.stdout + proc.stderr

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("Every effort moves you", return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=3, do_sample=False).shape == (1, ids.shape[1] + 3)
    assert model.generation_config.do_sample  # published folders sample by default (hf_gpt.hub)
    if (out / "README.md").exists():
        assert "loss.png" in (out / "README.md").read_text()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_losses_and_weights(reference_run, book_reference, tmp_path):
    reference, _ = reference_run
    out = tmp_path / "out"
    killed = run([driver(tmp_path), *tiny_args(book_reference, out)], tmp_path, env={"KILL_AFTER_STEP": "5"},
                 expect=None)
    assert killed.returncode == -9
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    resumed = run([SCRIPT, *tiny_args(book_reference, out, "--resume_from_checkpoint", "last")], tmp_path)
    assert f"Resuming from {out / 'checkpoint-4'}" in resumed.stdout + resumed.stderr
    assert_same_run(reference, out, 1e-5)


def small_documents(folder, n=60):
    """`n` .txt files of a few sentences each: a stream whose position at a checkpoint is many documents in."""
    words = Path(THE_VERDICT).read_text(encoding="utf-8").split()
    folder.mkdir()
    for i in range(n):
        (folder / f"doc{i:03d}.txt").write_text(" ".join(words[i * 40:(i + 1) * 40]), encoding="utf-8")
    return folder


def streaming_args(output_dir, docs, *extra):
    return ["--output_dir", output_dir, "--config_overrides", TINY_MODEL, "--train_files", docs, "--streaming", "true",
            "--validation_fraction", "0", "--eval_strategy", "no", "--eval_on_start", "false",
            "--per_device_train_batch_size", "4", "--max_steps", "8", "--save_steps", "2", "--sample_max_new_tokens",
            "0", "--logging_steps", "1", "--bf16", "false", "--disable_tqdm", "true", *extra]


@pytest.mark.slow
def test_killed_streaming_run_resumes_at_its_window_without_rereading_the_stream(tmp_path, monkeypatch):
    """Streamed data: a run killed after step 5 resumes from checkpoint-4 on exactly the stream's windows 16-31
    (steps 5-8), after reading only the few documents from the saved position on, not the ~9 before it."""
    from hf_gpt import streaming
    from hf_gpt.data import build_lm_datasets
    from hf_gpt.tokenization import load_tokenizer

    docs = small_documents(tmp_path / "docs")
    env = {"NOTE_EVERY_TOKENS": "64"}  # a resumable position noted every 64 tokens (a few thousand by default)
    out, seen = tmp_path / "out", tmp_path / "seen"
    seen.mkdir()
    killed = run([driver(tmp_path), *streaming_args(out, docs)], tmp_path, env={**env, "KILL_AFTER_STEP": "5"},
                 expect=None)
    assert killed.returncode == -9
    saved = json.loads((out / "checkpoint-4" / "stream_position.json").read_text())
    assert saved["windows_trained"] == 16 and saved["point"]["window"] == 16
    resumed = run([driver(tmp_path), *streaming_args(out, docs, "--resume_from_checkpoint", "last")],
                  tmp_path, env={**env, "RECORD_WINDOWS": str(seen)})
    assert "The stream resumes after 16 trained windows" in resumed.stdout + resumed.stderr

    monkeypatch.setattr(streaming, "NOTE_EVERY_TOKENS", 64)
    stream = build_lm_datasets(load_tokenizer(), text_files=docs, max_length=32, stride=32, validation_fraction=0,
                               streaming=True)["train"]
    it = iter(stream)
    for _ in range(24):
        next(it)
    assert saved["point"] == json.loads(json.dumps(streaming.resume_point(stream, 16)))
    windows = build_lm_datasets(load_tokenizer(), text_files=docs, max_length=32, stride=32, validation_fraction=0,
                                cache_dir=str(tmp_path / "cache"))["train"]["input_ids"]
    after = json.loads((seen / "rank0.json").read_text())
    assert after == [windows[i:i + 4] for i in range(16, 32, 4)]
    # Window 16 starts ~9 documents (of ~55 tokens) in. Before its first step the resumed run read the document at
    # the saved position, the ones its first batch spans and one batch accelerate fetches ahead: about 6.
    # Skipping batches, as the Trainer does by default, would have read the ~9 before too: 14 or more.
    reads = json.loads((seen / "reads0.json").read_text())[0]
    assert 0 < reads <= 8, reads


@pytest.mark.slow
def test_kill_while_writing_a_checkpoint_resumes_from_the_last_complete_one(reference_run, book_reference, tmp_path):
    reference, _ = reference_run
    out = tmp_path / "out"
    killed = run([driver(tmp_path), *tiny_args(book_reference, out)], tmp_path, env={"KILL_DURING_SAVE": "6"},
                 expect=None)
    assert killed.returncode == -9
    broken = out / "checkpoint-6"
    assert (broken / "model.safetensors").is_file() and not (broken / "trainer_state.json").exists()
    resumed = run([SCRIPT, *tiny_args(book_reference, out, "--resume_from_checkpoint", "last")], tmp_path)
    assert f"Resuming from {out / 'checkpoint-4'}" in resumed.stdout + resumed.stderr
    assert "Removing incomplete checkpoint" in resumed.stdout + resumed.stderr
    assert (out / "checkpoint-6" / "checkpoint_complete.json").is_file()  # rewritten whole by the resumed run
    assert_same_run(reference, out, 1e-5)


def test_a_stream_asked_for_dataloader_workers_is_read_in_the_main_process(tmp_path, capsys):
    """Where its resume positions are noted: the run says so and trains (the resume itself is the test above)."""
    from hf_gpt.training import main

    out = tmp_path / "out"
    argv = streaming_args(out, small_documents(tmp_path / "docs"), "--dataloader_num_workers", "1",
                          "--dataloader_prefetch_factor", "1", "--max_steps", "2")
    assert main([str(a) for a in argv]) == 0
    assert "--dataloader_num_workers 1 -> 0: a streamed split is read in the main process" in capsys.readouterr().out
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True])
def test_two_process_ddp_equals_one_process_with_the_same_global_batch(book_reference, tmp_path, streaming):
    """`accelerate launch --multi_gpu --num_processes 2` (gloo DDP on this CPU), 4 windows per process, against one
    process with 8: same losses (fp32, no dropout), and the two ranks train on disjoint windows. Streamed, the
    stream is one shard: accelerate's default `dispatch_batches` has rank 0 read it and send each rank its part of
    every global batch, so no window is seen twice and the union is the one-process batch. Odd evaluation sets (7
    and 5 windows): the last batch is padded with a repeated window, which the evaluation losses must not count."""
    common = ["--max_steps", "6", "--eval_steps", "3", "--save_steps", "6", "--bf16", "false",
              "--max_eval_samples", "7", "--eval_train_samples", "5", "--streaming", str(streaming).lower()]
    one, two = tmp_path / "one", tmp_path / "two"
    (tmp_path / "seen1").mkdir()
    (tmp_path / "seen2").mkdir()
    run([driver(tmp_path), *tiny_args(book_reference, one, *common, "--per_device_train_batch_size", "8")], tmp_path,
        env={"RECORD_WINDOWS": str(tmp_path / "seen1")})
    run([driver(tmp_path), *tiny_args(book_reference, two, *common, "--per_device_train_batch_size", "4")], tmp_path,
        env={"RECORD_WINDOWS": str(tmp_path / "seen2"), "OMP_NUM_THREADS": "1"},
        launcher=(sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
                  str(29517 + streaming)))

    la, lb = losses(one), losses(two)
    assert la.keys() == lb.keys()
    for key in la:
        assert lb[key] == pytest.approx(la[key], rel=1e-4, abs=1e-4), key
    wa, wb = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-4, atol=1e-4, msg=name)

    single = json.loads((tmp_path / "seen1" / "rank0.json").read_text())
    rank0 = json.loads((tmp_path / "seen2" / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "seen2" / "rank1.json").read_text())
    assert len(rank0) == len(rank1) == len(single) == 6
    for step in range(6):
        r0, r1 = {tuple(w) for w in rank0[step]}, {tuple(w) for w in rank1[step]}
        assert len(r0) == len(r1) == 4 and not r0 & r1
        assert r0 | r1 == {tuple(w) for w in single[step]}


def test_shipped_accelerate_configs_load():
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    expected = {"cpu_ddp": (DistributedType.MULTI_GPU, 1), "single_gpu": (DistributedType.NO, 1),
                "multi_gpu": (DistributedType.MULTI_GPU, 1), "fsdp": (DistributedType.FSDP, 1),
                "multi_node": (DistributedType.MULTI_GPU, 2)}
    folder = REPO / "scripts" / "accelerate_configs"
    assert {p.stem for p in folder.glob("*.yaml")} == set(expected)
    for name, (kind, machines) in expected.items():
        config = ClusterConfig.from_yaml_file(folder / f"{name}.yaml")
        assert (config.distributed_type, config.num_machines) == (kind, machines), name
    fsdp = ClusterConfig.from_yaml_file(folder / "fsdp.yaml").fsdp_config
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "TransformerBlock"


@pytest.mark.slow
def test_gpt2_124m_recipe_runs_on_cpu_with_tiny_overrides(tmp_path):
    """recipes/gpt2-124m.yaml parses and trains (fused AdamW, cosine to 10%, accumulation, padded vocabulary) with
    the model shrunk; compile and bf16 are turned off by flags here only to keep CI fast."""
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(REPO / "recipes" / "gpt2-124m.yaml"), "--train_files", THE_VERDICT,
         "--config_overrides", "n_layers=2,emb_dim=32,n_heads=2,context_length=64", "--max_length", "64",
         "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--max_steps", "6",
         "--warmup_steps", "2", "--eval_steps", "3", "--save_steps", "6", "--logging_steps", "1",
         "--torch_compile", "false", "--bf16", "false", "--dataloader_num_workers", "0", "--sample_max_new_tokens", "0",
         "--output_dir", out],
        capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    args = torch.load(out / "training_args.bin", weights_only=False)
    assert (args.optim, args.lr_scheduler_type, args.adam_beta2) == ("adamw_torch_fused", "cosine_with_min_lr", 0.95)
    state = json.loads((out / "trainer_state.json").read_text())
    lrs = [e["learning_rate"] for e in state["log_history"] if "learning_rate" in e]
    assert max(lrs) == pytest.approx(6e-4) and lrs.index(max(lrs)) == 2  # linear warmup over 2 steps to the peak
    # then cosine towards 10% of it: the 6th step runs 3/4 of the way down (steps 2..5 of 4 decay steps)
    assert lrs[-1] == pytest.approx(6e-4 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 4))))
    assert state["global_step"] == 6 and (out / "model.safetensors").is_file()
    # The padded vocabulary: 50,304 rows, the extra ids suppressed, and a stock GPT-2 copy with the same logits.
    from transformers import GPT2LMHeadModel

    from hf_gpt import GPTForCausalLM
    from hf_gpt.exports import export

    assert json.loads((out / "config.json").read_text())["vocab_size"] == 50304
    padding = list(range(50257, 50304))
    assert json.loads((out / "generation_config.json").read_text())["suppress_tokens"] == padding
    export(out, tmp_path / "gpt2", "gpt2")
    gpt2, ours = GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2"), GPTForCausalLM.from_pretrained(out)
    assert gpt2.generation_config.suppress_tokens == padding
    ids = torch.tensor([[6109, 3626, 6100, 345]])
    torch.testing.assert_close(gpt2.eval()(ids).logits, ours.eval()(ids).logits, rtol=0, atol=1e-5)
    assert gpt2.generate(ids, do_sample=False, max_new_tokens=5, suppress_tokens=None).shape == (1, 9)


@pytest.mark.slow
def test_torch_compile_trains_like_eager_and_resumes(tmp_path):
    """--torch_compile end to end: the same losses as eager (fp32, no dropout), checkpoints whose keys are the
    model's own (no `_orig_mod.`), and a resume from them."""
    base = [sys.executable, str(SCRIPT), "--train_files", THE_VERDICT, "--config_overrides",
            "n_layers=2,emb_dim=32,n_heads=2,context_length=32,drop_rate=0.0", "--max_length", "32",
            "--save_steps", "2", "--eval_steps", "2", "--logging_steps", "1", "--bf16", "false",
            "--sample_max_new_tokens", "0"]

    def run(out, *extra):
        result = subprocess.run([*base, "--output_dir", out, *map(str, extra)], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        return [e["loss"] for e in history if "loss" in e]

    eager = run(tmp_path / "eager", "--max_steps", 4)
    compiled = run(tmp_path / "compiled", "--max_steps", 4, "--torch_compile", "true")
    assert compiled == pytest.approx(eager, abs=1e-4)
    with safe_open(str(tmp_path / "compiled" / "checkpoint-4" / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "_orig_mod" in k]
    resumed = run(tmp_path / "compiled", "--max_steps", 6, "--torch_compile", "true", "--resume_from_checkpoint", "last")
    assert len(resumed) == 6 and resumed[:4] == compiled
