"""OpenAI's original TensorFlow GPT-2 folder (what the book's `gpt_download.py` fetches), read without TensorFlow.

The fixtures in tests/fixtures/openai_tf/ were written by TensorFlow itself (make_fixtures.py there) with OpenAI's
variable names and shapes; `NAME.npz` beside each folder is what `tf.train.load_variable` read back from it.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from hf_gpt.openai_checkpoint import OpenAICheckpoint, gpt2_config, hf_name

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


def test_openai_names_map_to_hugging_face_gpt2_names():
    assert hf_name("model/wte") == "wte.weight"
    assert hf_name("model/ln_f/g") == "ln_f.weight"
    assert hf_name("model/h11/attn/c_attn/w") == "h.11.attn.c_attn.weight"
    assert hf_name("model/h0/mlp/c_proj/b") == "h.0.mlp.c_proj.bias"
    assert hf_name("model/h0/ln_2/g") == "h.0.ln_2.weight"
    assert hf_name("model/h0/attn/c_attn/w/Adam") == "model/h0/attn/c_attn/w/Adam"  # kept: listed as unexpected
