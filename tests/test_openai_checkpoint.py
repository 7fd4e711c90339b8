"""OpenAI's original TensorFlow GPT-2 folder (what the book's `gpt_download.py` fetches), read without TensorFlow.

The fixtures in tests/fixtures/openai_tf/ were written by TensorFlow itself (make_fixtures.py there) with OpenAI's
variable names and shapes; `NAME.npz` beside each folder is what `tf.train.load_variable` read back from it.
"""

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, TrainerCallback

from hf_gpt import GPTConfig, GPTForCausalLM, load_tokenizer
from hf_gpt.evaluation import resolve_model, strided_nll
from hf_gpt.openai_checkpoint import OpenAICheckpoint, gpt2_config, hf_name
from hf_gpt.resources import THE_VERDICT

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "openai_tf"
MODELS = ("gpt2_tiny_16", "gpt2_tiny_32")


@pytest.mark.parametrize("name", MODELS)
def test_every_tensor_is_what_tensorflow_reads(name):
    expected = np.load(FIXTURES / f"{name}.npz")
    source = OpenAICheckpoint(FIXTURES / name)
    try:
        assert sorted(source.keys()) == sorted(hf_name(k) for k in expected.files)
        assert len(expected.files) == 4 + 12 * 2  # wte, wpe, ln_f g/b and 12 variables in each of 2 blocks
        for tf_name in expected.files:
            value = expected[tf_name]
            # Conv1D weights are [1, in, out] in TensorFlow, (in, out) in Hugging Face's GPT-2
            want = value[0] if tf_name.endswith("/w") else value
            got = source.get(hf_name(tf_name))
            assert source.shape(hf_name(tf_name)) == want.shape == tuple(got.shape), tf_name
            assert got.dtype == torch.float32 and np.array_equal(got.numpy(), want), tf_name
    finally:
        source.close()
    hparams = gpt2_config(FIXTURES / name / "hparams.json")
    assert hparams == {"model_type": "gpt2", "vocab_size": 300, "n_positions": 64, "n_embd": int(name[-2:]),
                       "n_head": int(name[-2:]) // 8, "n_layer": 2, "bos_token_id": None, "eos_token_id": None}


def test_float16_bfloat16_and_float64_variables_are_what_tensorflow_reads():
    expected = np.load(FIXTURES / "float_dtypes.npz")
    source = OpenAICheckpoint(FIXTURES / "float_dtypes")
    got = {name: source.get(hf_name(name)) for name in ("model/wte", "model/wpe", "model/ln_f/g", "model/ln_f/b")}
    source.close()
    assert [t.dtype for t in got.values()] == [torch.float16, torch.bfloat16, torch.float64, torch.float32]
    assert np.array_equal(got["model/wte"].numpy(), expected["model/wte"])
    assert np.array_equal(got["model/wpe"].view(torch.int16).numpy().view(np.uint16), expected["model/wpe"])
    assert np.array_equal(got["model/ln_f/g"].numpy(), expected["model/ln_f/g"])
    assert expected["model/wte"].dtype == np.float16 and expected["model/ln_f/g"].dtype == np.float64


def test_openai_names_map_to_hugging_face_gpt2_names():
    assert hf_name("model/wte") == "wte.weight"
    assert hf_name("model/ln_f/g") == "ln_f.weight"
    assert hf_name("model/h11/attn/c_attn/w") == "h.11.attn.c_attn.weight"
    assert hf_name("model/h0/mlp/c_proj/b") == "h.0.mlp.c_proj.bias"
    assert hf_name("model/h0/ln_2/g") == "h.0.ln_2.weight"
    assert hf_name("model/h0/attn/c_attn/w/Adam") == "model/h0/attn/c_attn/w/Adam"  # kept: listed as unexpected


# --------------------------------------------------------------------------------------------- into the model


def hub_layout_state_dict(name):
    """TensorFlow's values under `GPT2LMHeadModel`'s names, mapped here independently of hf_gpt's reader."""
    state_dict = {}
    for tf_name, value in np.load(FIXTURES / f"{name}.npz").items():
        key = re.sub(r"^h(\d+)/", r"h.\1/", tf_name.removeprefix("model/")).replace("/", ".")
        key = re.sub(r"\.[gw]$", ".weight", re.sub(r"\.b$", ".bias", key)) if "." in key else key + ".weight"
        state_dict["transformer." + key] = torch.from_numpy(value[0] if tf_name.endswith("/w") else value)
    return state_dict


def stock_gpt2(name):
    """Hugging Face's own GPT-2 with TensorFlow's values: the reference every load must agree with."""
    d = int(name[-2:])
    model = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=64, n_embd=d, n_layer=2, n_head=d // 8,
                                       bos_token_id=None, eos_token_id=None))
    missing, unexpected = model.load_state_dict(hub_layout_state_dict(name), strict=False)
    assert not unexpected and all(k == "lm_head.weight" or k.endswith("attn.bias") for k in missing)
    model.tie_weights()
    return model.eval()


@pytest.fixture(scope="module")
def input_ids():
    return torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", MODELS)
def test_logits_equal_the_hub_layout_and_survive_the_gpt2_export(name, input_ids, tmp_path, one_thread):
    ours = GPTForCausalLM.from_gpt2(FIXTURES / name)
    assert (ours.config.vocab_size, ours.config.context_length, ours.config.emb_dim, ours.config.n_layers) == (
        300, 64, int(name[-2:]), 2)
    assert ours.config.qkv_bias and ours.out_head.weight is ours.tok_emb.weight
    stock = stock_gpt2(name)
    stock.save_pretrained(tmp_path / "hub")
    via_hub = GPTForCausalLM.from_gpt2(tmp_path / "hub")
    ours.save_pretrained_gpt2(tmp_path / "export")
    exported = GPT2LMHeadModel.from_pretrained(tmp_path / "export").eval()
    with torch.no_grad():
        expected = stock(input_ids).logits
        for model in (ours, via_hub, exported):
            torch.testing.assert_close(model(input_ids).logits, expected, rtol=0, atol=1e-5)


REMOTE_CODE = r"""
import json, sys, torch
if sys.argv[3] == "without hf_gpt":
    sys.modules["hf_gpt"] = None  # as on a machine that never installed hf_gpt
from transformers import AutoModelForCausalLM
remote = type(AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True))
try:
    model = remote.from_gpt2(sys.argv[2])
except ImportError as err:
    print(json.dumps({"error": str(err)}))
else:
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3, 299]])).logits
    print(json.dumps({"class": remote.__module__, "logits": logits[0, -1, :8].tolist()}))
"""


@pytest.mark.slow
def test_the_hub_copy_of_the_model_code_reads_the_folder_only_where_hf_gpt_is_installed(tmp_path):
    """The payload imports only torch, transformers and huggingface_hub; the TensorFlow reader is hf_gpt's. Loaded as
    remote code it uses that reader when hf_gpt is installed, and says in one line what to do when it is not."""
    GPTForCausalLM(GPTConfig(vocab_size=300, context_length=16, emb_dim=8, n_heads=2, n_layers=1)).save_pretrained(
        tmp_path / "remote")
    folder = FIXTURES / "gpt2_tiny_16"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    results = {}
    for where in ("with hf_gpt", "without hf_gpt"):
        proc = subprocess.run([sys.executable, "-c", REMOTE_CODE, str(tmp_path / "remote"), str(folder), where],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[where] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["with hf_gpt"]["class"].startswith("transformers_modules.")
    with torch.no_grad():
        expected = stock_gpt2("gpt2_tiny_16")(torch.tensor([[1, 2, 3, 299]])).logits[0, -1, :8]
    torch.testing.assert_close(torch.tensor(results["with hf_gpt"]["logits"]), expected, rtol=0, atol=1e-5)
    assert results["without hf_gpt"]["error"] == (
        f"{folder}: this folder is OpenAI's TensorFlow checkpoint, which the installed hf_gpt package reads "
        "(pip install -e . in its repository); or load the Hub's converted copy, e.g. from_gpt2('gpt2-small (124M)').")


# ----------------------------------------------------------------------------------------------- the scripts


def run_script(script, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "scripts" / script), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_load_gpt2_script_samples_with_the_folders_own_tokenizer_and_exports(tmp_path, one_thread):
    folder = FIXTURES / "gpt2_tiny_32"
    proc = run_script("load_gpt2.py", folder, "--max-new-tokens", 8, "--save", tmp_path / "gpt2", "--format", "gpt2")
    assert proc.returncode == 0, proc.stderr
    tokenizer = load_tokenizer(folder)
    assert len(tokenizer) == 300  # encoder.json's, not GPT-2's 50,257
    prompt = tokenizer("Every effort moves you", return_tensors="pt").input_ids
    assert prompt.max() < 300 and prompt.shape[1] == 17
    greedy = stock_gpt2("gpt2_tiny_32").generate(prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                                                 pad_token_id=tokenizer.pad_token_id)
    assert proc.stdout == tokenizer.decode(greedy[0], skip_special_tokens=True) + "\n"
    assert proc.stdout.startswith("Every effort moves you") and len(proc.stdout) > len("Every effort moves you\n")
    assert json.loads((tmp_path / "gpt2" / "config.json").read_text())["model_type"] == "gpt2"
    assert len(AutoTokenizer.from_pretrained(tmp_path / "gpt2")) == 300  # the folder's tokenizer went with it


@pytest.fixture
def console_restored():
    """A run in this process gives the `hf_gpt` logger its console handler; the test modules after this one expect
    the logger as they found it."""
    logger = logging.getLogger("hf_gpt")
    handlers, level = logger.handlers[:], logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_init_from_takes_the_folders_sizes_before_anything_heavy(tmp_path, nothing_heavy, capsys, console_restored):
    from hf_gpt.training import main

    assert main(["--init_from", str(FIXTURES / "gpt2_tiny_16"), "--max_length", "128",
                 "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max_length 128 is larger than the model's context_length 64" in err
    broken = copy_fixture("gpt2_tiny_16", tmp_path / "broken")
    (broken / "model.ckpt.data-00000-of-00001").unlink()
    assert main(["--init_from", str(broken), "--max_length", "32", "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.ckpt.data-00000-of-00001: missing" in err


@pytest.mark.slow
def test_pretraining_continues_from_the_folder_with_its_tokenizer(tmp_path, one_thread, console_restored):
    """One step from OpenAI's folder: its 300-token vocabulary tokenizes the text (GPT-2's would give ids the model
    does not have), and training starts from exactly its weights."""
    from hf_gpt.training import main

    seen = {}

    class FirstWeights(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            seen["wte"] = model.tok_emb.weight.detach().clone()

    out = tmp_path / "out"
    argv = ["--init_from", str(FIXTURES / "gpt2_tiny_16"), "--output_dir", str(out), "--train_files", str(THE_VERDICT),
            "--max_length", "32", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
            "--max_eval_samples", "8", "--max_steps", "1", "--eval_steps", "1", "--save_steps", "1",
            "--sample_max_new_tokens", "4", "--bf16", "false", "--disable_tqdm", "true"]
    assert main(argv, callbacks=[FirstWeights()]) == 0
    wte = np.load(FIXTURES / "gpt2_tiny_16.npz")["model/wte"]
    assert np.array_equal(seen["wte"].numpy(), wte)
    assert len(AutoTokenizer.from_pretrained(out)) == 300


@pytest.mark.slow
def test_evaluate_model_scores_a_text_with_the_folders_model_and_tokenizer(tmp_path, one_thread):
    folder = FIXTURES / "gpt2_tiny_32"
    spec = resolve_model(folder)
    assert (spec.kind, spec.context_length, spec.vocab_size, spec.tokenizer_folder) == ("gpt2", 64, 300, str(folder))
    text = THE_VERDICT.read_text(encoding="utf-8")[:2000]
    (tmp_path / "short.txt").write_text(text, encoding="utf-8")
    proc = run_script("evaluate_model.py", folder, "--text_file", tmp_path / "short.txt", "--max_length", 32,
                      "--no_progress", "--output_json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads((tmp_path / "r.json").read_text())
    ids = load_tokenizer(folder)(text)["input_ids"]
    nats, n, _ = strided_nll(stock_gpt2("gpt2_tiny_32"), ids, max_length=32, stride=32, progress=False)
    assert got["tokens"] == n == len(ids) - 1
    assert got["loss"] == pytest.approx(nats / n, rel=1e-5)


# ------------------------------------------------------------------------------------------------ bad input


def copy_fixture(name, to):
    shutil.copytree(FIXTURES / name, to)
    return to


def _truncate(folder, name, keep):
    path = folder / name
    path.write_bytes(path.read_bytes()[:keep])


def _set_hparam(folder, **values):
    hparams = json.loads((folder / "hparams.json").read_text())
    (folder / "hparams.json").write_text(json.dumps({**hparams, **values}))


BAD = {  # case -> (damage, error type, what the one line says)
    "truncated data": (lambda f: _truncate(f, "model.ckpt.data-00000-of-00001", 40_000), ValueError,
                       r"model\.ckpt\.data-00000-of-00001: truncated: 'model/.*' ends at byte .* but the file has "
                       r"40,000 bytes; download the folder again"),
    "truncated index": (lambda f: _truncate(f, "model.ckpt.index", 500), ValueError,
                        r"model\.ckpt\.index: not a TensorFlow checkpoint index \(no table footer\)"),
    "missing index": (lambda f: (f / "model.ckpt.index").unlink(), FileNotFoundError,
                      r"model\.ckpt\.index: missing, so the folder's TensorFlow checkpoint cannot be read"),
    "missing data shard": (lambda f: (f / "model.ckpt.data-00000-of-00001").unlink(), FileNotFoundError,
                           r"model\.ckpt\.data-00000-of-00001: missing \(the index names 1 data file\(s\)\)"),
    "hparams.json disagrees": (lambda f: _set_hparam(f, n_embd=48), ValueError,
                               r"Cannot load .*model\.ckpt\.index as hparams\.json describes it:.*"
                               r"wte\.weight: checkpoint \(300, 32\), model expects \(300, 48\)"),
    "hparams.json lacks a size": (lambda f: _set_hparam(f, n_head=None), ValueError,
                                  r"hparams\.json: no integer n_head"),
    "a variable missing": ("bad_missing_variable", ValueError,
                           r"model\.ckpt\.index: no variable model/h1/mlp/c_fc/b; the checkpoint is incomplete"),
    "unknown dtype": ("bad_dtype", ValueError,
                      r"model\.ckpt\.index: variable 'model/wte' has TensorFlow dtype 3 .*only float32, float16, "
                      r"bfloat16 and float64 are read"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_folders_get_one_line_naming_the_problem(case, tmp_path, capsys):
    damage, error, message = BAD[case]
    if isinstance(damage, str):
        folder = copy_fixture(damage, tmp_path / "gpt2")
    else:
        folder = copy_fixture("gpt2_tiny_32", tmp_path / "gpt2")
        damage(folder)
    with pytest.raises(error, match=re.compile(message, re.S)):
        GPTForCausalLM.from_gpt2(folder)
    spec = importlib.util.spec_from_file_location("load_gpt2", REPO / "scripts" / "load_gpt2.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(folder), "--save", str(tmp_path / "saved")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("load_gpt2.py: error: ")
    assert re.search(message.replace(":.*", ": .*"), err), err
    assert not (tmp_path / "saved").exists()  # nothing was loaded, so nothing was saved
