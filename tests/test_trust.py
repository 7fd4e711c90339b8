"""Issue 15: no code runs without consent, no run silently overwrites another, every bad input gets one clear line
before heavy work. One test (or more) per defect of the issue, numbered as there; each asserts the message (or the
behaviour) and that nothing the user has was changed."""

import errno
import importlib.util
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

import hf_gpt
import hf_gpt.data
import hf_gpt.locations as locations
import hf_gpt.tokenization
import hf_gpt.training as training
from hf_gpt import GPTConfig, GPTForCausalLM
from hf_gpt.cli import UsageError, describe, disk_full_folder
from hf_gpt.hub import check_model_folder, save_for_hub
from hf_gpt.resources import THE_VERDICT
from hf_gpt.training import last_complete_checkpoint, main
from hf_gpt.training.checkpoints import resolve_resume
from hf_gpt.training.lock import LOCK_FILE, OutputDirLock

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = "n_layers=2,emb_dim=32,n_heads=2,context_length=32"
PROMPT = "Every effort moves you"

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_argv(output_dir, *extra):
    return ["--output_dir", str(output_dir), "--config_overrides", TINY_MODEL, "--train_files", str(THE_VERDICT),
            "--per_device_train_batch_size", "4", "--max_eval_samples", "4", "--eval_train_samples", "4",
            "--sample_max_new_tokens", "3", "--bf16", "false", "--disable_tqdm", "true", *extra]


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(folder):
    """Every file under `folder` with its bytes: 'nothing was changed' is this, before == after."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def pretrain_error(capsys, code):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("pretrain.py: error: "), err
    return err.removeprefix("pretrain.py: error: ")


@pytest.fixture
def nothing_heavy(nothing_heavy, monkeypatch):
    """conftest's, and the tokenizer must not be loaded either."""
    monkeypatch.setattr(hf_gpt.tokenization, "load_tokenizer", nothing_heavy)
    return nothing_heavy


@pytest.fixture(scope="module")
def tokenizer():
    return hf_gpt.load_tokenizer()


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50257, context_length=16, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0,
                       tie_word_embeddings=True)
    return save_for_hub(GPTForCausalLM(config).eval(), tokenizer, tmp_path_factory.mktemp("m") / "gpt")


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 2-step run, then resumed to 3 steps (the transformers warnings of both recorded): a finished run."""
    out = tmp_path_factory.mktemp("finished") / "run"
    records = Records()
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(records)
    try:
        assert main(tiny_argv(out, "--max_steps", "2", "--save_steps", "2", "--eval_steps", "2")) == 0
        assert main(tiny_argv(out, "--max_steps", "3", "--save_steps", "3", "--eval_steps", "3",
                              "--resume_from_checkpoint", "last")) == 0
    finally:
        hf_logger.removeHandler(records)
    return out, records.messages


# ---------------------------------------------------------------------------- 1. remote code only with consent


def test_1_generate_runs_no_folder_code_without_trust_remote_code(model_folder, tmp_path, capsys):
    generate = load_script("generate")
    evil = tmp_path / "downloaded"
    shutil.copytree(model_folder, evil)
    config = json.loads((evil / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                                               "AutoModelForCausalLM": "modeling_evil.EvilModel"})
    (evil / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "MARKER"
    for name in ("configuration_evil.py", "modeling_evil.py"):
        (evil / name).write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    before = snapshot(evil)

    code = generate.main([str(evil), PROMPT, "--max_new_tokens", "2"])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    assert err == (f"error: {evil} runs its own model code (its config names .py files to import); read them, and if "
                   f"you trust them add --trust_remote_code.\n")
    assert snapshot(evil) == before

    # An hf_gpt folder needs no remote code with hf_gpt installed.
    assert generate.main([str(model_folder), PROMPT, "--max_new_tokens", "2", "--greedy"]) == 0
    assert capsys.readouterr().out.startswith(PROMPT)


# -------------------------------------------------------------------------------- 2. one run per output_dir


def _hold_lock(output_dir, barrier, tried, results):
    barrier.wait()
    try:
        lock = OutputDirLock(output_dir).acquire()  # held while the object lives  # noqa: F841
        results.put("acquired")
    except training.UsageError as e:
        results.put(str(e))
    tried.wait()  # the winner holds the lock until the other one has tried


def test_2_two_runs_started_together_one_gets_the_output_dir(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, tried, results = ctx.Barrier(2), ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_hold_lock, args=(tmp_path, barrier, tried, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcome = sorted((results.get(timeout=60) for _ in procs), key=lambda r: r != "acquired")
    for p in procs:
        p.join(timeout=60)
    assert outcome[0] == "acquired"
    assert outcome[1].startswith(f"--output_dir {str(tmp_path)!r} is in use by another run (pid ")


def test_2_a_running_run_owns_its_output_dir(tmp_path, nothing_heavy, capsys, caplog):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom hf_gpt.training.lock import OutputDirLock\n"
                               "lock = OutputDirLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)", out],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        before = snapshot(out)
        err = pretrain_error(capsys, main(tiny_argv(out, "--max_steps", "1")))
        assert err == (f"--output_dir {str(out)!r} is in use by another run (pid {holder.pid}). Wait for it to "
                       f"finish, or pick another --output_dir.\n")
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed, so the kernel released its lock: the next run takes it over, with a notice.
    with caplog.at_level(logging.WARNING, logger="hf_gpt"):
        lock = OutputDirLock(out).acquire()
    assert f"taking over the lock of {out} from a run that is gone (pid {holder.pid})" in caplog.text
    assert (out / LOCK_FILE).read_text().startswith(f"pid={os.getpid()}\n")
    lock.release()
    assert not (out / LOCK_FILE).exists()


# --------------------------------------------------------------------- 3. complete means: the files are there


def _checkpoint(path, step):
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, path / "model.safetensors")
    for name in ("optimizer.pt", "scheduler.pt"):
        torch.save({"x": torch.ones(3)}, path / name)
    training.mark_checkpoint_complete(path, step)


def _args(output_dir, resume, reset=False):
    return types.SimpleNamespace(output_dir=str(output_dir), resume_from_checkpoint=resume,
                                 resume_reset_optimizer=reset)


def test_3_a_checkpoint_whose_files_went_missing_is_not_complete(tmp_path):
    _checkpoint(tmp_path / "checkpoint-2", 2)
    _checkpoint(tmp_path / "checkpoint-4", 4)
    (tmp_path / "checkpoint-4" / "model.safetensors").unlink()  # deleted during the run; the marker stays
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert resolve_resume(_args(tmp_path, "last")) == str(tmp_path / "checkpoint-2")
    with pytest.raises(training.UsageError, match=r"checkpoint-4' is incomplete \(model.safetensors is missing\)"):
        resolve_resume(_args(tmp_path, str(tmp_path / "checkpoint-4")))


def test_3_a_resume_without_optimizer_state_refuses_unless_reset(tmp_path):
    ckpt = tmp_path / "checkpoint-4"
    _checkpoint(ckpt, 4)
    (ckpt / "optimizer.pt").unlink()
    with pytest.raises(training.UsageError) as info:
        resolve_resume(_args(tmp_path, str(ckpt)))
    assert "optimizer.pt is missing" in str(info.value) and "--resume_reset_optimizer" in str(info.value)
    assert resolve_resume(_args(tmp_path, str(ckpt), reset=True)) == str(ckpt)


def test_7_a_corrupt_optimizer_is_named_before_anything_is_built(tmp_path):
    ckpt = tmp_path / "checkpoint-4"
    _checkpoint(ckpt, 4)
    size = (ckpt / "optimizer.pt").stat().st_size
    (ckpt / "optimizer.pt").write_bytes(os.urandom(size))  # same size: the marker cannot tell
    with pytest.raises(training.UsageError) as info:
        resolve_resume(_args(tmp_path, "last"))
    assert f"{ckpt / 'optimizer.pt'} is missing or not a readable torch file" in str(info.value)


# ------------------------------------------------------------------------------ 4. silent misconfiguration


def test_4_config_booleans_are_booleans_and_unknown_keys_are_refused():
    with pytest.raises(ValueError, match=r"`qkv_bias` must be a boolean \(True or False\), got 'no'"):
        GPTConfig(qkv_bias="no")
    book = {"vocab_size": 50257, "context_length": 256, "emb_dimm": 768, "n_heads": 12, "n_layers": 12,
            "drop_rate": 0.1, "qkv_bias": False}
    with pytest.raises(TypeError, match=r"unknown config field 'emb_dimm'. Did you mean 'emb_dim'\?"):
        GPTConfig(**book)


def test_4_config_overrides_with_a_string_boolean(tmp_path, nothing_heavy, capsys):
    err = pretrain_error(capsys, main(tiny_argv(tmp_path / "o") + ["--config_overrides", "qkv_bias=no"]))
    assert err == "GPTConfig: `qkv_bias` must be a boolean (True or False), got 'no'.\n"
    assert not (tmp_path / "o" / "config.json").exists()


def test_4_labels_with_shift_labels_is_an_error():
    model = GPTForCausalLM(GPTConfig(vocab_size=64, context_length=8, emb_dim=8, n_heads=2, n_layers=1))
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"Pass `labels` \(shifted inside\) or `shift_labels` \(already shifted\), not both"):
        model(ids, labels=ids, shift_labels=ids)


def test_4_abbreviated_flags_are_refused(tmp_path, nothing_heavy, capsys):
    err = pretrain_error(capsys, main(tiny_argv(tmp_path / "o") + ["--learning_rat", "1e-3"]))
    assert err == "unrecognized arguments: ['--learning_rat', '1e-3']; see --help\n"
    for name, argv in (("generate", ["folder", PROMPT, "--max_new_tok", "3"]), ("load_gpt2", ["--max-new", "3"])):
        with pytest.raises(SystemExit) as info:
            load_script(name).parse_args(argv)
        assert info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- 5. load_gpt2 --save a file


def test_5_load_gpt2_save_onto_an_existing_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(GPTForCausalLM, "from_gpt2", classmethod(lambda *a, **k: pytest.fail("loaded")))
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    code = load_script("load_gpt2").main(["gpt2", "--save", str(target)])
    assert (code, capsys.readouterr().err) == (2, f"load_gpt2.py: error: --save {str(target)!r} is an existing file; "
                                                  f"--save takes a folder (it is created if missing).\n")
    assert target.read_text() == "mine"


# ---------------------------------------------------------------------------------------------- 6. step counts


def test_6_max_steps_0_trains_0_steps(tmp_path):
    out = tmp_path / "zero"
    assert main(tiny_argv(out, "--max_steps", "0", "--sample_max_new_tokens", "0")) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 0
    assert not [e for e in state["log_history"] if "loss" in e]  # no training step logged
    assert (out / "model.safetensors").is_file()


def test_6_resuming_a_finished_run_leaves_it_alone(finished_run, capsys):
    out, _ = finished_run
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3
    before = snapshot(out)
    code = main(tiny_argv(out, "--max_steps", "3", "--resume_from_checkpoint", "last"))
    err = capsys.readouterr().err
    assert code == 0
    assert err == (f"pretrain.py: the run in {out} is finished: checkpoint-3 is at step 3 and --max_steps 3 asks for "
                   f"3. Nothing was trained and the model is left as it is; raise --max_steps (or --num_train_epochs) "
                   f"to train further.\n")
    assert snapshot(out) == before


# ------------------------------------------------------------------------------- 7. early, one-line errors


@pytest.mark.parametrize("flags, says", [
    (["--learning_rate", "-1"], "--learning_rate must be a finite number >= 0, got -1.0.\n"),
    (["--init_from", "gpt2-smal"], "--init_from 'gpt2-smal' is not a local file or folder, and the Hub is offline "
                                   "(HF_HUB_OFFLINE is set) and it is not cached. Did you mean 'gpt2-small'?\n"),
    (["--tokenizer_name", "./my-tokenizr"], "--tokenizer_name './my-tokenizr': no such file or folder.\n"),
    (["--push_to_hub"], "--push_to_hub: HF_HUB_OFFLINE is set, so nothing can reach the Hub; unset it, or train "
                        "without --push_to_hub and push later with scripts/push_to_hub.py.\n"),
    (["--max_steps", "x"], None),
])
def test_7_bad_input_fails_before_tokenizing(tmp_path, nothing_heavy, capsys, flags, says):
    out = tmp_path / "o"
    if says is None:  # argparse's own error: exit 2, usage and one error line, no traceback
        with pytest.raises(SystemExit) as info:
            main(tiny_argv(out, *flags))
        assert info.value.code == 2 and "Traceback" not in capsys.readouterr().err
        return
    assert pretrain_error(capsys, main(tiny_argv(out, *flags))) == says
    assert not out.exists() or not any(p.name != LOCK_FILE for p in out.iterdir())
    assert not (out / LOCK_FILE).exists()  # released


@pytest.mark.parametrize("name, text, says", [
    ("args.yaml", "max_steps: [1\n", "is not valid YAML"),
    ("args.json", "{max_steps: 1}", "is not valid JSON"),
    ("args.json", "[1, 2]", "must hold a mapping of argument names to values, got a list"),
])
def test_7_bad_argument_files(tmp_path, nothing_heavy, capsys, name, text, says):
    (tmp_path / name).write_text(text)
    err = pretrain_error(capsys, main([str(tmp_path / name), "--output_dir", str(tmp_path / "o")]))
    assert err.startswith(str(tmp_path / name)) and says in err


def test_7_resume_with_another_config(finished_run, nothing_heavy, capsys):
    out, _ = finished_run
    before = snapshot(out)
    argv = tiny_argv(out, "--max_steps", "9", "--resume_from_checkpoint", "last")
    argv[argv.index(TINY_MODEL)] = TINY_MODEL.replace("n_layers=2", "n_layers=3")
    err = pretrain_error(capsys, main(argv))
    assert err == (f"--resume_from_checkpoint {out / 'checkpoint-3'} holds another model than this run's config "
                   f"(n_layers=2 there, 3 here). Resume with the --preset / --config_overrides of the run that wrote it,"
                   f" or start a new run.\n")
    assert snapshot(out) == before


def test_7_full_disk_names_the_folder(tmp_path, capsys):
    """A real full disk: the output_dir on a 1 MiB tmpfs (needs root; else skipped, and the test below covers the
    injected form)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        code = main(tiny_argv(mount / "run", "--max_steps", "1", "--save_steps", "1", "--eval_on_start", "false",
                              "--eval_strategy", "no", "--sample_max_new_tokens", "0"))
        err = capsys.readouterr().err
        assert code == 2, err
        assert "Traceback" not in err and "inline_container" not in err
        last_line = err.strip().splitlines()[-1].split("\r")[-1]  # after the save's progress bar
        assert last_line.startswith(f"pretrain.py: error: no space left on device in {mount / 'run'}"), err
    finally:
        subprocess.run(["umount", str(mount)])


def test_7_torch_write_failure_on_a_full_folder_reads_as_no_space(tmp_path, monkeypatch):
    """torch's zip writer reports a full disk only as 'inline_container.cc:...': with the folder out of space it is
    said as 'no space left on device'."""
    failure = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: types.SimpleNamespace(total=1, used=1, free=0))
    assert describe(failure, tmp_path).startswith(f"no space left on device in {tmp_path}")
    enospc = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "loss.png"))
    assert disk_full_folder(enospc) == str(tmp_path)


def test_7_ctrl_c_stops_cleanly_and_names_the_last_checkpoint(tmp_path):
    """Robust to a busy machine: the signal goes after the run printed step 2 (so checkpoint-1 was complete: the
    Trainer logs a step before saving it), not after a sleep; stdout is read all along so the run never blocks
    on a full pipe; the waits are bounded but generous (a busy CI machine takes minutes to start a run)."""
    import queue
    import threading

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "pretrain.py"),
                             *tiny_argv(out, "--max_steps", "10000", "--save_steps", "1", "--eval_on_start", "false",
                                        "--eval_strategy", "no", "--logging_steps", "1")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    readers = [threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)]
    err = []
    readers.append(threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True))
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 600
        while True:
            line = lines.get(timeout=max(1.0, deadline - time.monotonic()))
            if line.startswith("step 2/"):
                break
        assert last_complete_checkpoint(out) is not None
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for reader in readers:
        reader.join(timeout=60)
    err = "".join(err)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    last = last_complete_checkpoint(out)
    assert last is not None
    assert err.strip().splitlines()[-1] == (f"pretrain.py: interrupted (Ctrl-C); stopped. The last complete checkpoint "
                                            f"is {last}: continue with --resume_from_checkpoint last.")
    assert not (out / LOCK_FILE).exists()


def test_7_load_gpt2_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "rand.pth").write_bytes(os.urandom(4096))
    code = load_script("load_gpt2").main([str(tmp_path / "rand.pth")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("load_gpt2.py: error: ")


# ------------------------------------------------------------------------------------- 8. no network waits


@pytest.fixture
def closed_hub(monkeypatch):
    """HF_HUB_OFFLINE unset, and every connection attempt counted and refused (no network is touched)."""
    attempts = []

    def refuse(address, timeout=None, **kwargs):
        attempts.append((address, timeout))
        raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")

    monkeypatch.setattr(locations, "is_offline_mode", lambda: False)
    monkeypatch.setattr(locations.socket, "create_connection", refuse)
    monkeypatch.setattr(locations, "_probe_result", {})
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    return attempts


def test_8_a_missing_local_looking_path_fails_without_the_hub(tmp_path, closed_hub, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "pretrain").mkdir(parents=True)
    code = load_script("load_gpt2").main(["outputs/pretrian"])
    assert (code, capsys.readouterr().err) == (2, "load_gpt2.py: error: model 'outputs/pretrian': no such file or "
                                                  "folder. Did you mean 'outputs/pretrain'?\n")
    code = load_script("generate").main(["outputs/pretrian", PROMPT])
    assert code == 2 and "no such directory" in capsys.readouterr().err
    assert closed_hub == []  # no connection was even tried


def test_8_an_unreachable_hub_is_probed_once_briefly(closed_hub, capsys):
    script = load_script("load_gpt2")
    for _ in range(2):
        assert script.main(["alice/gpt-verdict"]) == 2
        assert capsys.readouterr().err == (
            "load_gpt2.py: error: model 'alice/gpt-verdict' is not a local file or folder, and the Hub "
            "(http://127.0.0.1:9) cannot be reached (no connection within 3 s); check the path, or the network.\n")
    with pytest.raises(locations.UsageError, match="cannot be reached"):
        locations.check_source("alice/tok", "--tokenizer_name", cached_file="tokenizer_config.json")
    assert closed_hub == [(("127.0.0.1", 9), locations.PROBE_TIMEOUT)]  # once, with a short timeout


# ------------------------------------------------------------------------------ 9. push changes nothing local


def test_9_a_failed_push_leaves_the_card_alone(model_folder, tmp_path, monkeypatch):
    from huggingface_hub import constants

    with socket.socket() as probe:  # a port that was free a moment ago: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 34)
    run = tmp_path / "run"
    shutil.copytree(model_folder, run)
    before = snapshot(run)
    with pytest.raises(UsageError, match="Could not reach the Hub"):
        hf_gpt.hub.push_folder(run, "alice/gpt-verdict", log=lambda message: None)
    assert snapshot(run) == before


# ------------------------------------------------------------------------------------ 10. clear messages


def test_10_bad_input_ids_say_what_is_wrong():
    model = GPTForCausalLM(GPTConfig(vocab_size=64, context_length=8, emb_dim=8, n_heads=2, n_layers=1))
    with pytest.raises(ValueError, match=r"token id 64 is outside the vocabulary: ids must be in \[0, 63\]"):
        model(torch.tensor([[1, 64]]))
    with pytest.raises(ValueError, match=r"input_ids holds no tokens \(shape \(1, 0\)\)"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"input_ids must be 2-D \(batch, tokens\), got shape \(3,\).*unsqueeze\(0\)"):
        model(torch.tensor([1, 2, 3]))


def test_10_random_bytes_pth_is_not_a_checkpoint(tmp_path):
    (tmp_path / "model.pth").write_bytes(b"\x00" + os.urandom(4095))
    with pytest.raises(ValueError) as info:
        GPTForCausalLM.from_book_checkpoint(tmp_path / "model.pth", GPTConfig(vocab_size=64, emb_dim=8, n_heads=2))
    assert "not a PyTorch checkpoint (neither torch.save's zip archive nor a pickle)" in str(info.value)
    assert "weights_only=False" not in str(info.value)


def test_10_short_text_advice_is_one_pretrain_accepts():
    from hf_gpt.windows import too_few_tokens

    assert str(too_few_tokens("train", 2, 32, 0.1)).endswith("needed for one window: give it more text")
    assert "at most 4" in str(too_few_tokens("train", 5, 32, 0.1))


def test_10_truncated_safetensors_in_a_model_folder(model_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model_folder, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(UsageError, match=r"model.safetensors: not a readable safetensors file .* truncated or corrupt"):
        check_model_folder(broken)


def test_10_gpt2_config_without_its_sizes_is_refused():
    from hf_gpt.model.conversion_gpt import gpt2_config_to_gpt_config

    with pytest.raises(ValueError, match=r"GPT-2 config lacks n_embd, n_layer"):
        gpt2_config_to_gpt_config({"model_type": "gpt2", "n_head": 12, "n_positions": 1024, "vocab_size": 50257})


# ------------------------------------------------------------------------------------- 12. newcomer noise


def test_12_no_alarming_notices_and_use_cache_kept(finished_run):
    out, warnings = finished_run
    assert not [w for w in warnings if "PAD/BOS/EOS" in w or "missing keys" in w], warnings
    assert json.loads((out / "config.json").read_text())["use_cache"] is True
