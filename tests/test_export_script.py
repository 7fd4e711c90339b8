"""scripts/export.py and hf_gpt.exports: a format is chosen by name; gpt2 writes a folder stock transformers loads."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

from hf_gpt import GPTConfig, GPTForCausalLM, load_tokenizer
from hf_gpt.exports import FORMATS, export, format_module

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export.py"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(n_layers=2, emb_dim=32, n_heads=2, context_length=32, qkv_bias=True)).eval()
    path = tmp_path_factory.mktemp("hf_gpt_model")
    model.save_pretrained(path)
    load_tokenizer().save_pretrained(path)
    return path


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_gpt2_format_writes_a_stock_folder_with_the_same_logits(folder, tmp_path):
    result = run(folder, tmp_path / "gpt2", "--format", "gpt2")
    assert result.returncode == 0, result.stderr
    stock = AutoModelForCausalLM.from_pretrained(tmp_path / "gpt2")  # no trust_remote_code: plain GPT-2
    assert type(stock) is GPT2LMHeadModel
    ids = AutoTokenizer.from_pretrained(tmp_path / "gpt2")("Every effort moves you", return_tensors="pt").input_ids
    ours = GPTForCausalLM.from_pretrained(folder).eval()
    torch.testing.assert_close(stock.eval()(ids).logits, ours(ids).logits, atol=1e-5, rtol=0)


def test_every_format_is_a_module_with_export_and_a_one_line_description():
    for name in FORMATS:
        module = format_module(name)
        assert callable(module.export) and module.__doc__.strip().splitlines()[0]


def test_unknown_format_names_the_known_ones(folder, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'tflite'; choose one of gpt2"):
        export(folder, tmp_path / "x", "tflite")
    assert not (tmp_path / "x").exists()
    result = run(folder, tmp_path / "x", "--format", "tflite")
    assert result.returncode == 2 and "invalid choice: 'tflite'" in result.stderr
    assert not (tmp_path / "x").exists()


def test_not_a_model_folder_is_one_line_before_any_loading(tmp_path):
    result = run(tmp_path / "nowhere", tmp_path / "out", "--format", "gpt2")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "no such directory" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_a_folder_missing_the_conversion_code_it_imports_is_named(folder, tmp_path):
    import shutil

    from hf_gpt.hub import NotAModelFolderError, check_model_folder

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "conversion_gpt.py").unlink()
    with pytest.raises(NotAModelFolderError, match=r"conversion_gpt\.py \(the model's code that modeling_gpt\.py imports\)"):
        check_model_folder(copy)
