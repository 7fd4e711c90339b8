"""scripts/generate.py: text from a folder or repo id with the folder's defaults, flags on top, clear bad-input errors."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, set_seed

import hf_gpt
from hf_gpt import hub
from hf_gpt.hub import export_folder

REPO = Path(__file__).resolve().parents[1]
PROMPT = "Every effort moves you"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("generate_script", REPO / "scripts" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tokenizer():
    return hf_gpt.load_tokenizer()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    config = hf_gpt.GPTConfig(vocab_size=50257, context_length=32, emb_dim=16, n_heads=2, n_layers=2,
                              drop_rate=0.0, tie_word_embeddings=True)
    out = tmp_path_factory.mktemp("gen") / "gpt-tiny"
    return hub.save_for_hub(hf_gpt.GPTForCausalLM(config).eval(), tokenizer, out, dataset_name="the-verdict.txt")


@pytest.fixture(scope="module")
def loaded(folder):
    """The folder as a user's code would load it: its generation_config.json (sampling) comes along."""
    return AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()


@pytest.fixture
def cli(script, capsys):
    def run(*argv):
        code = script.main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def decode(tokenizer, ids):
    return tokenizer.decode(ids[0], skip_special_tokens=True)


def expected(loaded, tokenizer, seed=None, **kwargs):
    ids = tokenizer(PROMPT, return_tensors="pt")
    if seed is not None:
        set_seed(seed)
    with torch.no_grad():
        return decode(tokenizer, loaded.generate(**ids, **kwargs))


def test_greedy_prints_what_generate_gives_in_process(cli, folder, loaded, tokenizer):
    code, out, err = cli(folder, PROMPT, "--greedy", "--max_new_tokens", 12)
    assert code == 0, err
    text = expected(loaded, tokenizer, do_sample=False, max_new_tokens=12)
    assert text.startswith(PROMPT) and len(text) > len(PROMPT) + 12
    assert out == text + "\n"


def test_stream_prints_the_same_text_as_it_grows(cli, folder):
    _, plain, _ = cli(folder, PROMPT, "--greedy", "--max_new_tokens", 30)
    code, streamed, err = cli(folder, PROMPT, "--greedy", "--max_new_tokens", 30, "--stream")
    assert code == 0, err
    assert streamed == plain


def test_defaults_come_from_the_folders_generation_config(cli, folder, loaded, tokenizer):
    assert loaded.generation_config.do_sample is True and loaded.generation_config.max_new_tokens == 100
    code, out, err = cli(folder, PROMPT, "--seed", 7)
    assert code == 0, err
    assert out == expected(loaded, tokenizer, seed=7) + "\n"  # top_p 0.9, 100 new tokens, as saved


def test_seed_makes_sampling_reproducible_and_flags_override_the_defaults(cli, folder, loaded, tokenizer):
    runs = [cli(folder, PROMPT, "--seed", seed, "--top_k", 20, "--temperature", 0.7, "--max_new_tokens", 15)[1]
            for seed in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]
    assert runs[0] == expected(loaded, tokenizer, seed=1, top_k=20, temperature=0.7, max_new_tokens=15) + "\n"


# --greedy also clears the folder's sampling knobs (hf_gpt folders default to top_p 0.9), so generate raises no
# "top_p is set but do_sample=False" warning.
GREEDY_CLEARS = {"temperature": None, "top_k": None, "top_p": None}


@pytest.mark.parametrize(
    "flags, kwargs",
    [
        ([], {}),
        (["--greedy"], {"do_sample": False, **GREEDY_CLEARS}),
        (["--top_p", "0.5"], {"top_p": 0.5, "do_sample": True}),
        (["--num_beams", "3"], {"num_beams": 3, "do_sample": False}),
        (["--num_beams", "3", "--do_sample"], {"num_beams": 3, "do_sample": True}),
        (["--greedy", "--max_new_tokens", "5", "--num_return_sequences", "2", "--num_beams", "2"],
         {"do_sample": False, **GREEDY_CLEARS, "max_new_tokens": 5, "num_return_sequences": 2, "num_beams": 2}),
    ],
)
def test_flags_become_generate_kwargs_on_top_of_the_defaults(script, loaded, flags, kwargs):
    args = script.parse_args(["folder", PROMPT, *flags])
    assert script.generation_kwargs(loaded, args) == kwargs


def test_beams_return_several_sequences(cli, folder, loaded, tokenizer):
    code, out, err = cli(folder, PROMPT, "--num_beams", 3, "--num_return_sequences", 2, "--max_new_tokens", 8)
    assert code == 0, err
    ids = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        beams = loaded.generate(**ids, num_beams=3, num_return_sequences=2, do_sample=False, max_new_tokens=8)
    assert out == "\n---\n".join(tokenizer.batch_decode(beams, skip_special_tokens=True)) + "\n"


def test_a_stock_gpt2_folder_generates_the_same_text(cli, folder, tmp_path):
    stock = export_folder(folder, tmp_path / "gpt2")
    _, ours, _ = cli(folder, PROMPT, "--greedy", "--max_new_tokens", 20)
    code, theirs, err = cli(stock, PROMPT, "--greedy", "--max_new_tokens", 20)
    assert code == 0, err
    assert theirs == ours


def test_an_empty_prompt_starts_from_endoftext(cli, folder):
    code, out, err = cli(folder, "", "--seed", 3, "--max_new_tokens", 5)
    assert code == 0, err
    assert out.strip() and "<|endoftext|>" not in out


# ------------------------------------------------------------------------------------------------ bad input


def test_a_folder_that_is_not_a_model_says_what_is_missing(cli, tmp_path, folder):
    (tmp_path / "notes.txt").write_text("not a model")
    code, out, err = cli(tmp_path, PROMPT)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {tmp_path} is not a complete model folder: missing config.json")
    assert err.count("\n") == 1  # one line, no traceback
    assert "the weights (model.safetensors" in err and "the tokenizer files (tokenizer.json" in err

    code, _, err = cli(tmp_path / "missing", PROMPT)
    assert code == 2 and "missing the folder itself (no such directory)" in err


def test_a_bad_repo_id_or_an_uncached_repo_offline_says_so(cli):
    code, _, err = cli("alice/gpt--verdict", PROMPT)
    assert code == 2
    assert err.startswith("error: 'alice/gpt--verdict' is neither an existing folder nor a Hub repo id:")
    assert "Cannot have -- or .." in err

    code, _, err = cli("alice/never-cached", PROMPT)
    assert (code, err) == (2, "error: could not load 'alice/never-cached': it is not a local folder, and the Hub is "
                              "offline (HF_HUB_OFFLINE is set) and it is not cached.\n")


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--top_p", "1.5"], "--top_p must be in (0, 1], got 1.5"),
        (["--temperature", "0"], "--temperature must be > 0, got 0.0"),
        (["--max_new_tokens", "0"], "--max_new_tokens must be >= 1, got 0"),
        (["--stream", "--num_beams", "2"], "--stream shows one sequence as it grows"),
        (["--greedy", "--do_sample"], "not allowed with argument"),
    ],
)
def test_bad_flags_are_refused_before_loading(script, capsys, flags, says):
    with pytest.raises(SystemExit) as exit_info:
        script.parse_args(["folder", PROMPT, *flags])
    assert exit_info.value.code == 2
    assert says in capsys.readouterr().err


@pytest.mark.slow
def test_the_command_line_streams_the_text(folder, tmp_path, cli):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generate.py"), str(folder), PROMPT, "--greedy", "--max_new_tokens",
         "10", "--stream"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == cli(folder, PROMPT, "--greedy", "--max_new_tokens", 10)[1]
