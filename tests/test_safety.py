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


# ---------------------------------------------- a folder whose files do not fit: the file, the field, the sizes


def _misfit(model_folder, tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(model_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    if damage == "emb_dim 64":
        config["emb_dim"] = 64
    elif damage == "emb_dim missing":
        del config["emb_dim"]
    (folder / "config.json").write_text(json.dumps(config))
    if damage == "truncated":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


MISFIT_SAYS = {
    "emb_dim 64": ("{f}: config.json does not fit the weights in model.safetensors: emb_dim is 64 in config.json "
                   "but 16 in the weights. Fix config.json, or save the model again with save_pretrained."),
    "emb_dim missing": ("{f}: config.json does not fit the weights in model.safetensors: emb_dim is missing from "
                        "config.json (so 768) but 16 in the weights. Fix config.json, or save the model again with "
                        "save_pretrained."),
    "truncated": ("{f}/model.safetensors: not a readable safetensors file (Error while deserializing header: "
                  "incomplete metadata, file not fully covered). It may be truncated or corrupt; delete it and "
                  "download or save it again."),
}


@pytest.mark.parametrize("damage", list(MISFIT_SAYS))
def test_a_folder_whose_files_do_not_fit_is_named_at_every_door(model_folder, tmp_path, capsys, monkeypatch, damage):
    """transformers prints a table of every tensor and then points at `ignore_mismatched_sizes` (the wrong fix), or
    a truncated file's "Error while deserializing header" without its name."""
    folder = _misfit(model_folder, tmp_path, damage)
    says = MISFIT_SAYS[damage].format(f=folder)
    text = tmp_path / "t.txt"
    text.write_text(PROMPT * 20)
    with pytest.raises(ValueError) as info:
        GPTForCausalLM.from_pretrained(folder)
    assert str(info.value) == says
    if damage == "emb_dim 64":  # transformers' own switch for a head of another size still works
        assert GPTForCausalLM.from_pretrained(folder, ignore_mismatched_sizes=True).config.emb_dim == 64
        capsys.readouterr()  # transformers reports what it re-initialised
    assert script_error(capsys, load_script("generate").main([str(folder), PROMPT])) == says
    assert script_error(capsys, load_script("evaluate_model").main([str(folder), "--text_file", str(text)])) == says
    assert script_error(capsys, load_script("export").main([str(folder), str(tmp_path / "e"), "--format", "gpt2"])) \
        == says and not (tmp_path / "e").exists()
    import hf_gpt.data
    import hf_gpt.training.run

    for module, name in ((hf_gpt.training.run, "build_model"), (hf_gpt.data, "build_lm_datasets")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("before tokenizing"))
    argv = ["--output_dir", str(tmp_path / "o"), "--model_name_or_path", str(folder), "--max_steps", "1"]
    assert pretrain_error(capsys, main(argv)) == says + "\n"


class MadeBy:
    """Any object of the user's, pickled beside the weights."""


def test_a_pickle_weights_file_is_refused_naming_it_without_the_unsafe_advice(model_folder, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(model_folder, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({"weights": state, "made_by": MadeBy()}, folder / "pytorch_model.bin")
    says = (f"{folder / 'pytorch_model.bin'}: it holds a pickled Python object (test_safety.MadeBy) besides tensors, "
            f"and loading it would run that code, so it is refused. Where the model was made, save only its weights: "
            f"`model.save_pretrained(folder)` (safetensors) or `torch.save(model.state_dict(), path)`.")
    with pytest.raises(ValueError) as info:
        GPTForCausalLM.from_pretrained(folder)
    assert str(info.value) == says
    assert script_error(capsys, load_script("generate").main([str(folder), PROMPT])) == says
    book = tmp_path / "model.pth"
    shutil.copy(folder / "pytorch_model.bin", book)
    config = tmp_path / "c.json"
    config.write_text(json.dumps(GPTConfig.from_pretrained(model_folder).to_book_dict()))
    err = script_error(capsys, load_script("evaluate_model").main([str(book), "--config", str(config),
                                                                    "--text_file", str(THE_VERDICT)]))
    assert err == says.replace(str(folder / "pytorch_model.bin"), str(book)) and "weights_only" not in err


def test_a_gpt2_folder_as_model_name_or_path_points_to_init_from(model_folder, tmp_path, nothing_heavy, capsys):
    gpt2 = tmp_path / "gpt2"
    GPTForCausalLM.from_pretrained(model_folder).save_pretrained_gpt2(gpt2)
    argv = ["--output_dir", str(tmp_path / "o"), "--model_name_or_path", str(gpt2), "--max_steps", "1"]
    assert pretrain_error(capsys, main(argv)) == (f"--model_name_or_path {str(gpt2)!r} holds OpenAI GPT-2 weights "
                                                  f"(model_type 'gpt2'); start from them with --init_from {gpt2}.\n")
    with pytest.raises(ValueError, match=r"^a 'gpt2' config is not an hf_gpt one .* GPTForCausalLM.from_gpt2.$"):
        GPTForCausalLM.from_pretrained(gpt2)
    (tmp_path / "x.pth").write_bytes(b"")
    err = script_error(capsys, load_script("evaluate_model").main([str(tmp_path / "x.pth"), "--config",
                                                                    str(gpt2 / "config.json"), "--text_file", "t"]))
    assert err.startswith(f"--config {gpt2 / 'config.json'}: a 'gpt2' config is not an hf_gpt one"), err


# ------------------------------------------------------------------------------ data: the file and the line


@pytest.mark.parametrize("streaming", [False, True])
def test_a_malformed_jsonl_names_the_file_and_line(tmp_path, capsys, monkeypatch, streaming):
    import hf_gpt.training.run

    monkeypatch.setattr(hf_gpt.training.run, "build_model", lambda *a, **k: pytest.fail("built"))
    data = tmp_path / "notes.jsonl"
    data.write_text('{"text": "one"}\n{"text": "two"}\n{"text": three}\n')
    argv = tiny_argv(tmp_path / "o", "--max_steps", "1", "--streaming", str(streaming).lower())
    argv[argv.index("--train_files") + 1] = str(data)
    assert pretrain_error(capsys, main(argv)) == (f"{data}: line 3 is not valid JSON (Expecting value); fix or "
                                                  f"remove that line.\n")


def test_a_stream_too_short_for_one_window_fails_before_the_model_is_built(tmp_path, capsys, monkeypatch):
    import hf_gpt.training.run

    monkeypatch.setattr(hf_gpt.training.run, "build_model", lambda *a, **k: pytest.fail("built"))
    short = tmp_path / "short.txt"
    short.write_text("Every effort moves you")
    argv = tiny_argv(tmp_path / "o", "--max_steps", "1", "--streaming", "true")
    argv[argv.index("--train_files") + 1] = str(short)
    assert pretrain_error(capsys, main(argv)) == ("the train split holds 4 tokens, fewer than max_length + 1 = 33 "
                                                  "needed for one window: lower max_length to at most 3, or give "
                                                  "more text\n")


# ---------------------------------------------------------- evaluate: a data file, and the results file up front


def test_evaluate_dataset_name_a_local_jsonl_scores_what_text_file_scores(model_folder, tmp_path, capsys):
    evaluate_model = load_script("evaluate_model")
    text = THE_VERDICT.read_text()[:3000]
    (tmp_path / "t.txt").write_text(text)
    (tmp_path / "t.jsonl").write_text(json.dumps({"id": 1, "body": text}) + "\n")
    for data in (["--text_file", str(tmp_path / "t.txt")], ["--dataset_name", str(tmp_path / "t.jsonl"),
                                                            "--text_column", "body"]):
        name = data[1].rsplit(".", 1)[1]
        assert evaluate_model.main([str(model_folder), *data, "--output_json", str(tmp_path / f"{name}.json")]) == 0
    assert capsys.readouterr().err == ""  # no progress bars of the libraries'
    by_text, by_dataset = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("txt", "jsonl"))
    assert by_dataset["tokens"] == by_text["tokens"] > 500
    assert by_dataset["loss"] == pytest.approx(by_text["loss"], abs=1e-6)
    (tmp_path / "bad.jsonl").write_text('{"body": "a"}\n{"body": \n')
    err = script_error(capsys, evaluate_model.main([str(model_folder), "--dataset_name", str(tmp_path / "bad.jsonl")]))
    assert err.endswith(f"{tmp_path / 'bad.jsonl'}: line 2 is not valid JSON (Expecting value); fix or remove that "
                        f"line."), err


def test_evaluate_output_json_is_checked_before_any_scoring(model_folder, tmp_path, capsys, monkeypatch):
    import hf_gpt.evaluation

    evaluate_model = load_script("evaluate_model")
    text = tmp_path / "t.txt"
    text.write_text(PROMPT * 20)
    mine = tmp_path / "mine.json"
    mine.write_text("mine")
    monkeypatch.setattr(hf_gpt.evaluation, "evaluate", lambda *a, **k: pytest.fail("scored"))
    taken = f"--output_json {str(mine)!r} already exists; pick another name, or add --overwrite to replace it."
    under_a_file = f"--output_json {str(text / 'r.json')!r}: {text} is a file, not a folder."
    for target, says in ((mine, taken), (text / "r.json", under_a_file)):
        argv = [str(model_folder), "--text_file", str(text), "--output_json", str(target)]
        assert script_error(capsys, evaluate_model.main(argv)) == says
    assert mine.read_text() == "mine"
    monkeypatch.undo()
    assert evaluate_model.main([str(model_folder), "--text_file", str(text), "--output_json", str(mine),
                                "--overwrite"]) == 0
    assert json.loads(mine.read_text())["tokens"] > 0 and no_partials(tmp_path)


def test_evaluate_runs_no_tokenizer_code_without_consent(model_folder, tmp_path, capsys):
    folder = tmp_path / "downloaded"
    shutil.copytree(model_folder, folder)
    marker = tmp_path / "MARKER"
    (folder / "tokenization_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer",
                                                                                None]})
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    err = script_error(capsys, load_script("evaluate_model").main([str(folder), "--text_file", str(THE_VERDICT)]))
    assert err == (f"tokenizer {folder}: it runs its own code (its tokenizer_config.json names .py files to import), "
                   f"which is not run without your consent; read them, and if you trust them load it with "
                   f"trust_remote_code=True (--trust_remote_code where a script has it).")
    assert not marker.exists()


# -------------------------------------------------- the user's last screen under `accelerate launch` (docs/training.md)


def test_under_accelerate_launch_q_our_line_is_the_last(tmp_path):
    """What docs/training.md says: `accelerate launch -q` adds no traceback of its own after our line."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "-q", "--num_processes", "1",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           str(REPO / "scripts" / "pretrain.py"), "--output_dir", str(tmp_path / "o"), "--max_steps",
                           "-5"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and proc.stderr == ("pretrain.py: error: --max_steps must be >= 0 (or -1: run "
                                                    "--num_train_epochs), got -5.\n"), proc.stderr
    assert not (tmp_path / "o").exists()
