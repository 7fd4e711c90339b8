"""hf_gpt.training in-process: optimizer groups, schedule, clipping, evaluation, perplexity, NaN stop, bad input."""

import json
import math
import os
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainerCallback

import hf_gpt.data
import hf_gpt.training as training
from hf_gpt import GPTConfig, GPTForCausalLM
from hf_gpt.metrics import PERPLEXITY_PATH
from hf_gpt.resources import THE_VERDICT
from hf_gpt.training import (
    PretrainingArguments,
    PretrainingTrainer,
    decay_parameter_names,
    default_bf16,
    is_complete_checkpoint,
    last_complete_checkpoint,
    main,
    parse_arguments,
)

TINY_MODEL = "n_layers=2,emb_dim=32,n_heads=2,context_length=32"


def tiny_argv(book_reference, output_dir, *extra):
    """A run that takes seconds: a 2-layer, 32-wide model on the book's short story, fp32 for exact numbers."""
    return [
        "--output_dir", str(output_dir),
        "--config_overrides", TINY_MODEL,
        "--train_files", str(THE_VERDICT),
        "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "8",
        "--max_eval_samples", "8",
        "--eval_train_samples", "8",
        "--sample_max_new_tokens", "4",
        "--bf16", "false",
        "--disable_tqdm", "true",
        *extra,
    ]


def log_entries(output_dir):
    return json.loads((Path(output_dir) / "trainer_state.json").read_text())["log_history"]


# ------------------------------------------------------------------------------------------------ defaults, parsing


def test_defaults_follow_the_book_and_its_improvements(tmp_path):
    args = PretrainingArguments(output_dir=str(tmp_path))
    assert args.learning_rate == 4e-4
    assert args.weight_decay == 0.1
    assert args.optim.value.startswith("adamw")
    assert args.lr_scheduler_type.value == "cosine"
    assert 0 < args.warmup_steps < 1
    assert args.max_grad_norm == 1.0
    assert args.seed == 123
    assert args.eval_on_start and args.eval_strategy.value == "steps"
    assert args.label_names == ["shift_labels"]
    assert args.bf16 == default_bf16()
    assert args.logging_nan_inf_filter is False


def test_bf16_is_the_default_on_this_cpu():
    """This machine's CPU has AVX512-BF16 (see /proc/cpuinfo), so bf16 autocast is the default here."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if not torch.cuda.is_available() and ("avx512_bf16" in flags or "amx_bf16" in flags):
        assert default_bf16() is True
        assert PretrainingArguments(output_dir="x").use_cpu is True


def test_tf32_is_the_default_where_cuda_has_it(monkeypatch, tmp_path):
    """Where CUDA has TF32 (Ampere or newer) a run defaults to it and --tf32 false keeps full fp32 products. No
    such GPU here, so its availability is mocked; transformers' own TrainingArguments then sets torch's precision."""
    import transformers.training_args

    import hf_gpt.training.args

    assert PretrainingArguments(output_dir=str(tmp_path)).tf32 is None  # no CUDA: torch's setting is left alone
    monkeypatch.setattr(hf_gpt.training.args, "default_tf32", lambda: True)
    monkeypatch.setattr(transformers.training_args, "is_torch_tf32_available", lambda: True)
    before = torch.backends.fp32_precision
    try:
        assert PretrainingArguments(output_dir=str(tmp_path)).tf32 is True
        assert torch.backends.fp32_precision == "tf32"
        assert PretrainingArguments(output_dir=str(tmp_path), tf32=False, torch_compile=True).tf32 is False
        assert torch.backends.fp32_precision == "ieee"  # also where transformers turns TF32 on for compile
    finally:
        torch.backends.fp32_precision = before


def test_reuse_freed_memory_stops_page_faults_on_reallocation(fresh_tensor_faults):
    """A step's large tensors (here 64 MiB, freed then allocated again) fault their pages in once the heap has settled
    (it may map a block or two first), not every step."""
    took, default, settling, settled = fresh_tensor_faults("""
from hf_gpt.training import reuse_freed_memory

default = [faults_of_a_fresh_64mib_tensor() for _ in range(4)]
took = reuse_freed_memory()
settling = [faults_of_a_fresh_64mib_tensor() for _ in range(4)]
print(took, min(default[1:]), sum(settling), sum(faults_of_a_fresh_64mib_tensor() for _ in range(6)))
""")
    assert took == "True"
    assert int(default) >= 16_000  # every 64 MiB tensor: 16384 pages of 4 KiB
    assert int(settling) <= 3 * 16_500  # at most a few blocks mapped while the heap settles
    assert int(settled) < 100


def test_help_lists_every_argument_with_its_default():
    text = " ".join(training.build_parser().format_help().split())
    for flag in ("--preset", "--init_from", "--train_files", "--max_length", "--learning_rate", "--warmup_steps",
                 "--resume_from_checkpoint", "--overwrite_output_dir", "--sample_prompt", "--sample_top_k",
                 "--torch_compile", "--bf16", "--push_to_hub", "--hub_model_id"):
        assert flag in text
    assert "(default: gpt-tiny)" in text and "(default: 0.0004)" in text and "(default: Every effort moves you)" in text


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_arguments_from_a_file_then_flags(tmp_path, suffix):
    values = {"preset": "GPT_CONFIG_124M", "learning_rate": 1e-3, "max_length": 64, "output_dir": str(tmp_path / "o"),
              "train_files": ["a.txt"]}
    path = tmp_path / f"args{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(values))
    else:
        import yaml

        path.write_text(yaml.safe_dump(values))
    model_args, data_args, args = parse_arguments([str(path), "--learning_rate", "2e-4"])
    assert model_args.preset == "GPT_CONFIG_124M"
    assert data_args.max_length == 64 and data_args.train_files == ["a.txt"]
    assert args.learning_rate == 2e-4
    assert args.output_dir == str(tmp_path / "o")


def test_argument_file_with_an_unknown_key(tmp_path):
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"lerning_rate": 1e-3}))
    with pytest.raises(training.UsageError, match="lerning_rate"):
        parse_arguments([str(path)])


# ------------------------------------------------------------------------------------------------ optimizer groups


def test_weight_decay_only_on_weight_matrices_and_embeddings(tmp_path):
    config = GPTConfig(vocab_size=100, context_length=8, emb_dim=16, n_heads=2, n_layers=2, qkv_bias=True)
    model = GPTForCausalLM(config)
    args = PretrainingArguments(output_dir=str(tmp_path), bf16=False, eval_strategy="no", eval_on_start=False)
    trainer = PretrainingTrainer(model=model, args=args)
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = optimizer.param_groups
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}

    assert isinstance(optimizer, torch.optim.AdamW)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert decay["lr"] == no_decay["lr"] == 4e-4
    expected_decay = {"gpt.tok_emb.weight", "gpt.pos_emb.weight", "out_head.weight"} | {
        f"gpt.trf_blocks.{i}.{m}.weight" for i in range(2)
        for m in ("att.W_query", "att.W_key", "att.W_value", "att.out_proj", "ff.layers.0", "ff.layers.2")
    }
    assert decayed == expected_decay
    expected_no_decay = {"gpt.final_norm.scale", "gpt.final_norm.shift"} | {
        f"gpt.trf_blocks.{i}.{m}" for i in range(2)
        for m in ("norm1.scale", "norm1.shift", "norm2.scale", "norm2.shift", "att.W_query.bias", "att.W_key.bias",
                  "att.W_value.bias", "att.out_proj.bias", "ff.layers.0.bias", "ff.layers.2.bias")
    }
    assert not_decayed == expected_no_decay
    assert decayed | not_decayed == set(names.values())
    assert decay_parameter_names(model) == [n for n, p in model.named_parameters() if n in expected_decay]
    # Why the override: the Trainer's default name patterns would decay the book's LayerNorm `scale`/`shift`.
    stock = set(Trainer.get_decay_parameter_names(trainer, model))
    assert {"gpt.trf_blocks.0.norm1.scale", "gpt.trf_blocks.1.norm2.shift"} <= stock
    tied = GPTForCausalLM(GPTConfig(vocab_size=100, context_length=8, emb_dim=16, n_heads=2, n_layers=1,
                                    tie_word_embeddings=True))
    assert "gpt.tok_emb.weight" in decay_parameter_names(tied) and "out_head.weight" not in decay_parameter_names(tied)


# ------------------------------------------------------------------------------------------------ a short real run


class ClipProbe(TrainerCallback):
    """The global gradient norm the optimizer receives (after clipping), step by step."""

    def __init__(self):
        self.norms = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad.detach().flatten() for p in model.parameters() if p.grad is not None]
        self.norms[state.global_step + 1] = torch.cat(grads).norm().item()


@pytest.fixture(scope="module")
def short_run(book_reference, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("short_run")
    probe = ClipProbe()
    argv = tiny_argv(book_reference, output_dir, "--max_steps", "12", "--warmup_steps", "4", "--logging_steps", "1",
                     "--eval_steps", "6", "--save_steps", "6")
    model_args, data_args, args = parse_arguments(argv)
    results = training.run_pretraining(model_args, data_args, args, callbacks=[probe])
    return output_dir, results, probe


def test_schedule_is_linear_warmup_then_cosine_decay(short_run):
    output_dir, _, _ = short_run
    lrs = {e["step"]: e["learning_rate"] for e in log_entries(output_dir) if "learning_rate" in e}
    assert sorted(lrs) == list(range(1, 13))
    peak, warmup, total = 4e-4, 4, 12
    for step, lr in lrs.items():
        k = step - 1  # scheduler steps taken before this optimizer step
        expected = peak * k / warmup if k < warmup else peak * 0.5 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup)))
        assert lr == pytest.approx(expected, rel=1e-9, abs=1e-15), step
    rising, falling = [lrs[s] for s in range(1, 6)], [lrs[s] for s in range(5, 13)]
    assert rising == sorted(rising) and lrs[5] == pytest.approx(peak)
    assert falling == sorted(falling, reverse=True)


def test_gradient_clipping_is_active(short_run):
    output_dir, _, probe = short_run
    grad_norms = {e["step"]: e["grad_norm"] for e in log_entries(output_dir) if "grad_norm" in e}
    assert sorted(grad_norms) == list(range(1, 13))
    assert any(g > 1.0 for g in grad_norms.values())  # the tiny model's gradients exceed max_grad_norm ...
    for step, logged in grad_norms.items():  # ... and the optimizer gets them clipped to 1.0
        assert probe.norms[step] == pytest.approx(min(logged, 1.0), rel=1e-4), step


def test_step_zero_and_periodic_evaluation_with_perplexity(short_run):
    output_dir, results, _ = short_run
    history = log_entries(output_dir)
    evals = [e for e in history if "eval_loss" in e]
    train_evals = [e for e in history if "eval_train_loss" in e]
    assert [e["step"] for e in evals] == [0, 6, 12]
    assert [e["step"] for e in train_evals] == [0, 6, 12]
    for e in evals:
        assert e["eval_perplexity"] == pytest.approx(math.exp(e["eval_loss"]), rel=1e-5)
    assert evals[0]["num_input_tokens_seen"] == 0
    assert all("tokens_per_second" in e for e in history if "loss" in e)
    eval_results = json.loads((output_dir / "eval_results.json").read_text())
    assert eval_results["perplexity"] == pytest.approx(math.exp(eval_results["eval_loss"]), rel=1e-5)
    assert eval_results["eval_loss"] == pytest.approx(evals[-1]["eval_loss"], abs=1e-9)
    assert results["train"]["train_tokens"] == 12 * 4 * 32


def test_eval_loss_is_the_models_loss(short_run, book_reference):
    """The single-pass prediction_step gives the model's own loss on the validation windows."""
    output_dir, results, _ = short_run
    model = GPTForCausalLM.from_pretrained(output_dir).eval()
    from hf_gpt import load_tokenizer

    data = hf_gpt.data.build_lm_datasets(load_tokenizer(), text_files=str(THE_VERDICT),
                                         max_length=32, stride=32)
    val = data["validation"].with_format("torch")[:8]
    with torch.no_grad():
        loss = model(input_ids=val["input_ids"], shift_labels=val["shift_labels"]).loss.item()
    assert results["eval"]["eval_loss"] == pytest.approx(loss, rel=1e-5)


def test_perplexity_module_loads_by_path_offline():
    import evaluate

    metric = evaluate.load(PERPLEXITY_PATH, keep_in_memory=True)
    result = metric.compute(predictions=[[1.0, 2.0, 3.0], [0.5]])
    assert result["perplexity"] == pytest.approx(math.exp(6.5 / 4))
    assert result["perplexities"] == pytest.approx([math.exp(2.0), math.exp(0.5)])
    assert result["num_tokens"] == 4


# ------------------------------------------------------------------------------------------------ NaN stop


class PoisonAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.final_norm.scale.fill_(float("nan"))


def test_nan_loss_stops_training_and_saves_no_final_model(book_reference, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(tiny_argv(book_reference, out, "--max_steps", "10", "--save_steps", "2", "--eval_steps", "100",
                          "--logging_steps", "1"), callbacks=[PoisonAt(3)])
    err = capsys.readouterr().err
    assert code == 1
    assert "loss is nan at step 4" in err
    assert "checkpoint-2" in err
    assert not (out / "model.safetensors").exists() and not (out / "train_results.json").exists()
    assert last_complete_checkpoint(out) == str(out / "checkpoint-2")
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(out / "checkpoint-2" / "model.safetensors").values())


# ------------------------------------------------------------------------------------------------ checkpoints


def _fake_checkpoint(path, step, marker=True):
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, path / "model.safetensors")
    for name in ("optimizer.pt", "scheduler.pt"):
        torch.save({"x": torch.ones(3)}, path / name)
    if marker:
        training.mark_checkpoint_complete(path, step)


def test_last_complete_checkpoint_skips_broken_ones(tmp_path):
    _fake_checkpoint(tmp_path / "checkpoint-2", 2)
    _fake_checkpoint(tmp_path / "checkpoint-4", 4)
    _fake_checkpoint(tmp_path / "checkpoint-10", 10, marker=False)  # a plain Trainer's, whole: accepted
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    optimizer = tmp_path / "checkpoint-10" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])  # killed mid-write
    assert not zipfile.is_zipfile(optimizer)
    assert not is_complete_checkpoint(tmp_path / "checkpoint-10")
    (tmp_path / "checkpoint-12").mkdir()  # killed before anything was written
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    removed = training.remove_incomplete_checkpoints(tmp_path)
    # Only a checkpoint whose save never finished goes; checkpoint-10's weights are whole (its trainer state was
    # written after the optimizer, so the optimizer was damaged later): it stays for the user to decide.
    assert sorted(Path(p).name for p in removed) == ["checkpoint-12"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-2", "checkpoint-4"]


# ------------------------------------------------------------------------------------------------ bad input


def _error(capsys, code):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "pretrain.py: error: " in err
    return err.split("pretrain.py: error: ", 1)[1]


def test_unknown_preset(book_reference, tmp_path, nothing_heavy, capsys):
    err = _error(capsys, main(["--preset", "gpt-huge", "--output_dir", str(tmp_path / "o")]))
    assert "unknown preset 'gpt-huge'" in err and "gpt-tiny" in err and "GPT_CONFIG_124M" in err


def test_context_longer_than_the_preset(tmp_path, nothing_heavy, capsys):
    err = _error(capsys, main(["--max_length", "4096", "--output_dir", str(tmp_path / "o")]))
    assert "--max_length 4096 is larger than the model's context_length 128" in err


def test_unknown_config_override(tmp_path, nothing_heavy, capsys):
    err = _error(capsys, main(["--config_overrides", "n_layer=2", "--output_dir", str(tmp_path / "o")]))
    assert "unknown config field 'n_layer'. Did you mean 'n_layers'?" in err


def test_hub_token_on_the_command_line_is_refused(tmp_path, nothing_heavy, capsys):
    err = _error(capsys, main(["--hub_token", "hf_secret123", "--output_dir", str(tmp_path / "o")]))
    assert "HF_TOKEN" in err and "hf_secret123" not in err
    assert not (tmp_path / "o").exists()


def test_output_dir_under_a_file(tmp_path, nothing_heavy, capsys):
    (tmp_path / "afile").write_text("x")
    err = _error(capsys, main(["--output_dir", str(tmp_path / "afile" / "run")]))
    assert "is a file, not a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_dir_not_writable(tmp_path, nothing_heavy, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    err = _error(capsys, main(["--output_dir", str(locked / "run")]))
    assert "not writable" in err


def test_output_dir_holding_another_run(tmp_path, nothing_heavy, capsys):
    out = tmp_path / "o"
    _fake_checkpoint(out / "checkpoint-5", 5)
    (out / "trainer_state.json").write_text("{}")
    err = _error(capsys, main(["--output_dir", str(out)]))
    assert "holds another run" in err and "--overwrite_output_dir" in err and "--resume_from_checkpoint last" in err


def test_overwrite_output_dir_replaces_the_old_checkpoints(book_reference, tmp_path):
    out = tmp_path / "o"
    _fake_checkpoint(out / "checkpoint-500", 500)
    code = main(tiny_argv(book_reference, out, "--overwrite_output_dir", "--max_steps", "2", "--save_steps", "2",
                          "--eval_steps", "2"))
    assert code == 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]


@pytest.mark.parametrize("resume", ["nowhere", "last"])
def test_resume_from_nothing(tmp_path, nothing_heavy, capsys, resume):
    path = str(tmp_path / "nowhere") if resume == "nowhere" else "last"
    err = _error(capsys, main(["--output_dir", str(tmp_path / "o"), "--resume_from_checkpoint", path]))
    assert ("no such checkpoint folder" in err) if resume == "nowhere" else ("no complete checkpoint in" in err)


def test_missing_training_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(training.run, "build_model", lambda *a, **k: pytest.fail("model built"))
    err = _error(capsys, main(["--train_files", str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "o")]))
    assert "missing.txt" in err


def test_dataset_smaller_than_one_batch(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(training.run, "build_model", lambda *a, **k: pytest.fail("model built"))
    text = tmp_path / "small.txt"
    text.write_text("Every effort moves you. " * 200)  # ~1000 tokens: 28 training windows of 32, 3 for validation
    err = _error(capsys, main(["--train_files", str(text), "--config_overrides", TINY_MODEL, "--output_dir",
                               str(tmp_path / "o"), "--per_device_train_batch_size", "64"]))
    assert "smaller than one batch" in err and "one step takes 64" in err


def test_init_from_gpt2_weights(book_reference, tmp_path, capsys):
    """`--init_from` a GPT-2 folder (here a tiny one written by save_pretrained_gpt2): its context is checked before
    loading, and training continues from exactly its weights."""
    torch.manual_seed(0)
    source = GPTForCausalLM(GPTConfig(vocab_size=50257, context_length=32, emb_dim=32, n_heads=2, n_layers=1,
                                      qkv_bias=True, tie_word_embeddings=True))
    source.save_pretrained_gpt2(tmp_path / "gpt2-tiny")
    err = _error(capsys, main(["--init_from", str(tmp_path / "gpt2-tiny"), "--max_length", "64",
                               "--output_dir", str(tmp_path / "bad")]))
    assert "--max_length 64 is larger than the model's context_length 32" in err

    seen = {}

    class FirstWeights(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen["W_query"] = model.trf_blocks[0].att.W_query.weight.detach().clone()

    out = tmp_path / "out"
    argv = tiny_argv(book_reference, out, "--init_from", str(tmp_path / "gpt2-tiny"), "--max_steps", "2",
                     "--eval_steps", "2", "--save_steps", "2")
    argv[argv.index("--config_overrides") + 1] = "drop_rate=0.0"
    assert main(argv, callbacks=[FirstWeights()]) == 0
    torch.testing.assert_close(seen["W_query"], source.trf_blocks[0].att.W_query.weight, rtol=0, atol=0)
    assert json.loads((out / "config.json").read_text())["qkv_bias"] is True


def test_pad_vocab_keeps_loaded_gpt2_weights_and_suppresses_the_new_ids(book_reference, tmp_path, capsys):
    """`--init_from` GPT-2 weights with `--pad_vocab_to_multiple_of 64`: 50,304 rows whose first 50,257 are
    exactly the checkpoint's, so the real tokens' logits are unchanged; generation never picks the 47 new ids."""
    torch.manual_seed(0)
    source = GPTForCausalLM(GPTConfig(vocab_size=50257, context_length=32, emb_dim=32, n_heads=2, n_layers=1,
                                      qkv_bias=True, tie_word_embeddings=True))
    source.save_pretrained_gpt2(tmp_path / "gpt2-tiny")
    assert "--pad_vocab_to_multiple_of must be a positive" in _error(capsys, main(
        ["--init_from", str(tmp_path / "gpt2-tiny"), "--pad_vocab_to_multiple_of", "0"]))
    seen = {}

    class FirstLogits(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen["logits"] = model.eval()(torch.tensor([[6109, 3626, 6100, 345]])).logits.detach()
            seen["suppress"] = model.generation_config.suppress_tokens
            model.train()

    out = tmp_path / "out"
    argv = tiny_argv(book_reference, out, "--init_from", str(tmp_path / "gpt2-tiny"), "--max_steps", "1",
                     "--eval_steps", "1", "--save_steps", "1", "--pad_vocab_to_multiple_of", "64")
    argv[argv.index("--config_overrides") + 1] = "drop_rate=0.0"
    assert main(argv, callbacks=[FirstLogits()]) == 0
    expected = source.eval()(torch.tensor([[6109, 3626, 6100, 345]])).logits
    assert seen["logits"].shape[-1] == 50304
    torch.testing.assert_close(seen["logits"][..., :50257], expected, rtol=0, atol=1e-5)
    assert seen["suppress"] == list(range(50257, 50304))
    generated = GPTForCausalLM.from_pretrained(out).generate(
        torch.tensor([[6109, 3626]]), do_sample=True, top_k=0, top_p=1.0, max_new_tokens=3, output_scores=True,
        return_dict_in_generate=True)
    for scores in generated.scores:  # what sampling draws from: the new ids have probability 0, the real ones do not
        assert torch.isneginf(scores[:, 50257:]).all() and torch.isfinite(scores[:, :50257]).all()


def test_streaming_needs_max_steps_then_trains(book_reference, tmp_path, capsys, monkeypatch):
    with monkeypatch.context() as patched:
        patched.setattr(training.run, "build_model", lambda *a, **k: pytest.fail("model built"))
        patched.setattr(hf_gpt.data, "build_lm_datasets", lambda *a, **k: pytest.fail("data tokenized"))
        err = _error(capsys, main(["--streaming", "--output_dir", str(tmp_path / "bad")]))
    assert "--streaming needs --max_steps" in err
    out = tmp_path / "out"
    assert main(tiny_argv(book_reference, out, "--streaming", "--max_steps", "2", "--eval_steps", "2",
                          "--save_steps", "2")) == 0
    assert json.loads((out / "train_results.json").read_text())["train_tokens"] == 2 * 4 * 32
    assert "perplexity" in json.loads((out / "eval_results.json").read_text())


@pytest.mark.parametrize("launcher, flags, expected", [
    ("bf16", ["--bf16", "false"], "no"),     # an explicit flag wins over the accelerate config
    ("no", ["--bf16", "false"], "no"),
    ("bf16", [], "bf16"),                    # no flag: the config's request holds
    ("no", ["--bf16", "true"], "bf16"),
])
def test_bf16_flag_wins_over_the_accelerate_config(monkeypatch, tmp_path, launcher, flags, expected):
    """`accelerate launch --config_file fsdp.yaml` (mixed_precision: bf16) exports ACCELERATE_MIXED_PRECISION=bf16;
    transformers alone would let it override `--bf16 false`. The Trainer's Accelerator must get the flag's choice."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launcher)
    _, _, args = parse_arguments(["--output_dir", str(tmp_path / "o"), "--eval_strategy", "no", *flags])
    trainer = Trainer(model=GPTForCausalLM(GPTConfig(n_layers=1, emb_dim=16, n_heads=2, context_length=8,
                                                     vocab_size=64)), args=args)
    assert args.mixed_precision == expected
    assert trainer.accelerator.mixed_precision == expected
