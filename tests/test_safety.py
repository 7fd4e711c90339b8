"""Issue 26: nothing the user had is lost, and every message names what the user typed. One test (or more) per kind
of defect of the issue, at the door where the user meets it (a script's `main(argv)`, or the script as a
subprocess); each asserts the line, the exit code, and that nothing the user has was changed."""

import errno
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_trust import (  # noqa: F401  (fixtures)
    PROMPT,
    REPO,
    Records,
    _args,
    _checkpoint,
    finished_run,
    load_script,
    model_folder,
    pretrain_error,
    snapshot,
    tiny_argv,
    tokenizer,
)

from hf_gpt import GPTConfig, GPTForCausalLM
from hf_gpt.resources import THE_VERDICT
from hf_gpt.training import main
from hf_gpt.training.checkpoints import remove_incomplete_checkpoints, resolve_resume
from hf_gpt.writing import written_whole

pytestmark = pytest.mark.usefixtures("one_thread")


def script_error(capsys, code, prog=None):
    """The one line a script printed for a user error (exit code 2, no traceback), without its prefix."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    prefix = f"{prog}: error: " if prog else "error: "
    assert err.startswith(prefix), err
    return err.removeprefix(prefix).rstrip("\n")


def no_partials(folder):
    return not [p for p in Path(folder).rglob("*") if ".partial-" in p.name]


# -------------------------------------------------------------------- lost: every writer refuses what it would lose


def test_lost_resume_last_keeps_a_checkpoint_whose_weights_are_whole(tmp_path, nothing_heavy, capsys):
    out = tmp_path / "run"
    _checkpoint(out / "checkpoint-2", 2)
    _checkpoint(out / "checkpoint-4", 4)
    (out / "checkpoint-4" / "optimizer.pt").unlink()  # removed to save space
    before = snapshot(out)
    err = pretrain_error(capsys, main(tiny_argv(out, "--max_steps", "9", "--resume_from_checkpoint", "last")))
    assert err == (f"--resume_from_checkpoint last: the newest checkpoint, {out / 'checkpoint-4'}, has whole weights "
                   f"but optimizer.pt is missing (removed since it was written?). Add --resume_reset_optimizer to "
                   f"resume its weights with a fresh optimizer and schedule, or resume from an earlier one: "
                   f"--resume_from_checkpoint {out / 'checkpoint-2'}. Nothing was deleted.\n")
    assert remove_incomplete_checkpoints(out) == []  # what a run does before training: it deletes nothing here
    assert snapshot(out) == before
    assert resolve_resume(_args(out, "last", reset=True)) == str(out / "checkpoint-4")


def test_lost_export_into_its_own_source_is_refused(model_folder, tmp_path):
    source = tmp_path / "model"
    shutil.copytree(model_folder, source)
    before = snapshot(source)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "export.py"), str(source), str(source),
                           "--format", "gpt2", "--overwrite"], capture_output=True, text=True, env=env, timeout=300)
    assert (proc.returncode, proc.stderr) == (2, f"error: output {str(source)!r} is the model it reads ({source}); "
                                                 f"writing there would replace the source with the export: pick "
                                                 f"another folder.\n")
    assert snapshot(source) == before


def test_lost_export_over_another_model_only_with_overwrite(model_folder, tmp_path, capsys):
    export = load_script("export")
    other = tmp_path / "other"
    shutil.copytree(model_folder, other)
    before = snapshot(other)
    err = script_error(capsys, export.main([str(model_folder), str(other), "--format", "gpt2"]))
    assert err == (f"output {str(other)!r} already holds files (README.md, config.json, configuration_gpt.py, "
                   f"conversion_gpt.py, ...); pick a new or empty folder, or add --overwrite to replace it.")
    assert snapshot(other) == before

    assert export.main([str(model_folder), str(other), "--format", "gpt2", "--overwrite"]) == 0
    assert json.loads((other / "config.json").read_text())["model_type"] == "gpt2"
    assert not list(other.glob("*.py")) and no_partials(tmp_path)  # replaced whole, not mixed with the old model


def test_lost_gguf_over_an_existing_file_only_with_overwrite(model_folder, tmp_path, capsys):
    pytest.importorskip("gguf")
    export = load_script("export")
    old = tmp_path / "old.gguf"
    old.write_bytes(b"GGUF mine")
    err = script_error(capsys, export.main([str(model_folder), str(old), "--format", "gguf"]))
    assert err == f"output {str(old)!r} already exists; pick another name, or add --overwrite to replace it."
    assert old.read_bytes() == b"GGUF mine"
    assert export.main([str(model_folder), str(old), "--format", "gguf", "--overwrite"]) == 0
    assert old.read_bytes()[:4] == b"GGUF" and old.stat().st_size > 1000 and no_partials(tmp_path)


def test_lost_load_gpt2_save_over_another_model(model_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(GPTForCausalLM, "from_gpt2", classmethod(lambda *a, **k: pytest.fail("loaded")))
    other = tmp_path / "other"
    shutil.copytree(model_folder, other)
    before = snapshot(other)
    err = script_error(capsys, load_script("load_gpt2").main(["gpt2", "--save", str(other)]), "load_gpt2.py")
    assert err.startswith(f"--save {str(other)!r} already holds files (") and "add --overwrite" in err
    assert snapshot(other) == before


# ------------------------------------------------------------------------- whole or not at all; one clear line


def test_silent_export_onto_an_existing_file(model_folder, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    err = script_error(capsys, load_script("export").main([str(model_folder), str(notes), "--format", "gpt2"]))
    assert err == f"output {str(notes)!r} is an existing file; output takes a folder (it is created if missing)."
    assert notes.read_text() == "mine"
    model = GPTForCausalLM(GPTConfig(vocab_size=64, context_length=8, emb_dim=8, n_heads=2, n_layers=1))
    for save in (model.save_pretrained_gpt2, model.save_pretrained):
        with pytest.raises(ValueError, match=f"{notes} is an existing file; save_pretrained writes a folder"):
            save(notes)
    assert notes.read_text() == "mine"


def test_a_full_disk_mid_export_leaves_nothing_half_written(model_folder, tmp_path, capsys, monkeypatch):
    from hf_gpt.exports import gpt2

    def fill_the_disk(model, output, **kwargs):
        Path(output).mkdir()
        (Path(output) / "config.json").write_text("")
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(output) / "model.safetensors"))

    monkeypatch.setattr(gpt2, "export", fill_the_disk)
    target = tmp_path / "out"
    err = script_error(capsys, load_script("export").main([str(model_folder), str(target), "--format", "gpt2"]))
    assert err == (f"no space left on device in {tmp_path}: free some space (or pick a folder on another disk) and "
                   f"run again. Nothing was written to {target}.")
    assert list(tmp_path.iterdir()) == []


def test_written_whole_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with written_whole(target) as partial:
            partial.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


# ------------------------------------------------------------------------ silent: "finished" means the model is there


def test_silent_a_run_killed_writing_its_final_model_is_finished_from_its_checkpoint(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    final = {p.name for p in out.iterdir()} - {"config.json", "training_args.bin", "samples.jsonl"} - {
        p.name for p in out.glob("*.py")} - {p.name for p in out.glob("checkpoint-*")}
    for name in final:  # killed after config.json and the .py files: no weights, tokenizer or results
        (out / name).unlink()
    checkpoint = out / "checkpoint-3"
    before = snapshot(checkpoint)
    assert main(tiny_argv(out, "--max_steps", "3", "--resume_from_checkpoint", "last")) == 0
    assert {p.name for p in out.iterdir()} >= final
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3  # no step trained
    weights, saved = load_file(out / "model.safetensors"), load_file(checkpoint / "model.safetensors")
    assert all(torch.equal(weights[k], saved[k]) for k in saved)
    assert snapshot(checkpoint) == before and not (out / "checkpoint-4").exists()
    capsys.readouterr()
    assert main(tiny_argv(out, "--max_steps", "3", "--resume_from_checkpoint", "last")) == 0
    assert "is finished: checkpoint-3 is at step 3" in capsys.readouterr().err


# ------------------------------------------------------------- silent: sampling flags mean the same in every script


@pytest.mark.parametrize("flags, says", [
    (["--sample_top_p", "0"], "--sample_top_p must be in (0, 1], got 0.0"),
    (["--sample_max_new_tokens", "-1"], "--sample_max_new_tokens must be >= 0, got -1"),
    (["--sample_temperature", "-1"], "--sample_temperature must be >= 0 (0: greedy), got -1.0"),
    (["--sample_prompt", ""], "--sample_prompt is empty: give a prompt, or --sample_max_new_tokens 0 for no sample."),
])
def test_pretrain_sample_flags_are_checked_before_tokenizing(tmp_path, nothing_heavy, capsys, flags, says):
    out = tmp_path / "o"
    err = pretrain_error(capsys, main(tiny_argv(out, "--max_steps", "1") + flags))
    assert err.startswith(says), err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("flags, says", [
    (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
    (["--temperature", "-1"], "--temperature must be >= 0 (0: greedy), got -1.0"),
    (["--top-k", "-5"], "--top-k must be >= 0 (0: no top-k cut), got -5"),
    (["--max-new-tokens", "-1"], "--max-new-tokens must be >= 0, got -1"),
])
def test_load_gpt2_sampling_flags_mean_what_generate_says(capsys, monkeypatch, flags, says):
    monkeypatch.setattr(GPTForCausalLM, "from_gpt2", classmethod(lambda *a, **k: pytest.fail("loaded")))
    assert script_error(capsys, load_script("load_gpt2").main(["gpt2", *flags]), "load_gpt2.py") == says


# ------------------------------------------------------------ clear but late: flags checked before any work


@pytest.mark.parametrize("flags, says", [
    (["--seed", "-1"], "--seed must be in [0, 2**32 - 1] (numpy's range), got -1."),
    (["--attn_implementation", "foo"], "--attn_implementation 'foo': choose one of eager, "),
    (["--dataloader_num_workers", "-1"], "--dataloader_num_workers must be >= 0 (0: load in the main process), got -1."),
    (["--validation_fraction", "0"], "no validation split (--validation_fraction 0 and no --validation_file): give "
                                     "one, or turn evaluation off with --eval_strategy no --eval_on_start false."),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be >= 1, got 0."),
    (["--max_eval_samples", "0"], "--max_eval_samples must be >= 1 (or left out: the whole validation split), got 0."),
    (["--output_dir", ""], "--output_dir is empty: give the folder the run writes to (default: outputs/pretrain)."),
])
def test_pretrain_flags_are_checked_before_tokenizing(tmp_path, nothing_heavy, capsys, flags, says):
    out = tmp_path / "o"
    err = pretrain_error(capsys, main(tiny_argv(out, "--max_steps", "1") + flags))
    assert err.startswith(says), err
    assert not out.exists() or not any(out.iterdir())


def test_pretrain_report_to_a_missing_integration(tmp_path, nothing_heavy, capsys):
    pytest.importorskip("transformers.integrations")
    if importlib.util.find_spec("wandb"):
        pytest.skip("wandb is installed here")
    err = pretrain_error(capsys, main(tiny_argv(tmp_path / "o", "--max_steps", "1", "--report_to", "wandb")))
    assert err == "--report_to wandb: WandbCallback requires wandb to be installed. Run `pip install wandb`.\n"


@pytest.mark.parametrize("flags, says", [
    (["--repetition_penalty", "-1"], "--repetition_penalty must be > 0 (1: none), got -1.0"),
    (["--seed", "-1"], "--seed must be in [0, 2**32 - 1], got -1"),
    (["--device", "foo"], "--device 'foo' is not a device torch knows; use cpu, cuda, cuda:N or mps."),
    (["--device", "cuda"], "--device cuda: this machine has no usable CUDA device; use --device cpu."),
])
def test_generate_flags_are_checked_before_loading(capsys, flags, says):
    if flags == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as info:
        load_script("generate").parse_args(["folder", PROMPT, *flags])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.rstrip().endswith(f"error: {says}"), err


def test_generate_several_sequences_from_a_greedy_folder(model_folder, tmp_path, capsys, monkeypatch):
    greedy = tmp_path / "greedy"
    shutil.copytree(model_folder, greedy)
    (greedy / "generation_config.json").write_text(json.dumps({"do_sample": False}))
    generate = load_script("generate")
    monkeypatch.setattr(generate, "load", lambda *a, **k: pytest.fail("loaded"))
    err = script_error(capsys, generate.main([str(greedy), PROMPT, "--num_return_sequences", "3"]))
    assert err == (f"--num_return_sequences 3 needs sampling or at least 3 beams, and {greedy} decodes greedily by "
                   f"default (generation_config.json): add --do_sample (or --top_p/--top_k/--temperature), or "
                   f"--num_beams 3.")


def test_silent_train_files_folder_names_the_files_it_skips(tmp_path, tokenizer):
    from hf_gpt.data import build_lm_datasets

    folder = tmp_path / "text"
    folder.mkdir()
    (folder / "a.txt").write_text(THE_VERDICT.read_text()[:4000])
    (folder / "b.md").write_text(THE_VERDICT.read_text()[4000:8000])
    (folder / "figure.png").write_bytes(b"\x89PNG")
    (folder / "table.tsv").write_text("a\tb\n")
    records = Records()
    logging.getLogger("hf_gpt.data").addHandler(records)
    try:
        build_lm_datasets(tokenizer, text_files=str(folder), max_length=32, stride=32)
    finally:
        logging.getLogger("hf_gpt.data").removeHandler(records)
    assert records.messages == [f"train folder {str(folder)!r}: skipping 2 file(s) of no text format (figure.png, "
                                f"table.tsv); known formats: .txt, .text, .md, .jsonl, .json, .csv, .parquet"]


# ------------------------------------------------------------------------------ Ctrl-C is never lost on the way


def test_a_ctrl_c_swallowed_on_the_way_still_stops_with_its_line(capsys):
    """A KeyboardInterrupt that lands in a finalizer, or in a library's `except BaseException`, is lost; the
    handler of `cli.run` has recorded the signal, so the script still stops with exit code 130 and its line, and the
    training loop raises it again at its next step (`raise_if_interrupted`)."""
    import signal

    from hf_gpt import cli

    seen = []

    def main_that_swallows(argv):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:  # what a finalizer or a careless library does
            seen.append("swallowed")
        with pytest.raises(KeyboardInterrupt):
            cli.raise_if_interrupted()  # what each training step and checkpoint does
        return 0

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert cli.run(main_that_swallows, [], prog="x.py", interrupted="stopped.") == 130
    assert seen == ["swallowed"]
    assert capsys.readouterr().err == "x.py: interrupted (Ctrl-C); stopped.\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


# ------------------------------------------------------- recipe values are parsed as flags are, named by their file


@pytest.mark.parametrize("text, says", [
    ("max_steps: 2.5\n", "max_steps: invalid int value: '2.5'; see `--help`."),
    ("per_device_train_batch_size: [4]\n", "per_device_train_batch_size takes one value, got a list [4]"),
])
def test_recipe_values_are_type_checked_and_name_their_file(tmp_path, nothing_heavy, capsys, text, says):
    recipe = tmp_path / "args.yaml"
    recipe.write_text(text)
    err = pretrain_error(capsys, main([str(recipe), *tiny_argv(tmp_path / "o")]))
    assert err.startswith(f"{recipe}: {says}"), err


def test_recipe_values_and_flags_mean_the_same(tmp_path):
    from hf_gpt.training.args import parse_arguments

    recipe = tmp_path / "args.yaml"
    recipe.write_text("sample_prompt: 123\nnum_train_epochs: 3\nlr_scheduler_kwargs: {min_lr_rate: 0.1}\n"
                      "train_files: [a.txt, b.txt]\nbf16: false\nmax_length: null\nseed: 7\n")
    _, data, args = parse_arguments([str(recipe), "--seed", "8"])
    assert args.sample_prompt == "123" and args.num_train_epochs == 3.0  # the field's type, as from a flag
    assert args.lr_scheduler_kwargs == {"min_lr_rate": 0.1} and data.train_files == ["a.txt", "b.txt"]
    assert args.bf16 is False and data.max_length is None and args.seed == 8  # the command line wins
