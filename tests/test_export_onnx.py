"""The ONNX export: onnxruntime gives hf_gpt's logits (within 1e-4) and greedy tokens, with and without the cache."""

import json

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # torch.onnx.export(dynamo=True) needs it

from hf_gpt import GPTConfig, GPTForCausalLM, load_tokenizer  # noqa: E402
from hf_gpt.exports import export  # noqa: E402

ATOL = 1e-4
PROMPT = "Every effort moves you"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50257, context_length=64, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.0,
                       qkv_bias=False, init_scheme="gpt2")
    return GPTForCausalLM(config).eval()


@pytest.fixture(scope="module")
def folder(model, tmp_path_factory):
    """One export for the module: tracing and translating the graph is the slow part (~20-60 s)."""
    folder = tmp_path_factory.mktemp("onnx")
    assert export(model, folder, "onnx") == folder / "model.onnx"
    return folder


@pytest.fixture(scope="module")
def session(folder):
    return ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])


def empty_past(session, batch, config):
    return {i.name: np.zeros((batch, config.n_heads, 0, config.head_dim), np.float32)
            for i in session.get_inputs() if i.name.startswith("past_key_values.")}


def run(session, input_ids, attention_mask, position_ids, past):
    logits, *presents = session.run(None, {
        "input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids, **past,
    })
    return logits, dict(zip(past, presents))


def readme_generate(folder, prompt, max_new_tokens):
    """The README's loop, verbatim but for the arguments: only onnxruntime, numpy and the folder's own files."""
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoTokenizer

    session = ort.InferenceSession(f"{folder}/model.onnx")
    config = json.load(open(f"{folder}/config.json"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    shape = (1, config["n_heads"], 0, config["emb_dim"] // config["n_heads"])
    past = {i.name: np.zeros(shape, np.float32) for i in session.get_inputs() if i.name.startswith("past_")}
    tokens = new = np.array([tokenizer.encode(prompt)])
    for _ in range(max_new_tokens):
        n = tokens.shape[1]
        logits, *presents = session.run(None, {
            "input_ids": new, "attention_mask": np.ones((1, n), np.int64),
            "position_ids": np.arange(n - new.shape[1], n)[None], **past})
        new = logits[:, -1:].argmax(-1)  # greedy; sample from softmax(logits / T) for variety
        tokens, past = np.concatenate([tokens, new], axis=1), dict(zip(past, presents))
    return tokens[0].tolist(), tokenizer.decode(tokens[0])


def test_folder_describes_itself(folder, session, model):
    names = {p.name for p in folder.iterdir()}
    assert {"model.onnx", "config.json", "onnx_io.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert json.loads((folder / "config.json").read_text())["n_layers"] == 2
    inputs = [(i.name, i.shape) for i in session.get_inputs()]
    assert inputs[:3] == [("input_ids", ["batch", "sequence"]), ("attention_mask", ["batch", "total_sequence"]),
                          ("position_ids", ["batch", "sequence"])]
    assert inputs[3:] == [(f"past_key_values.{i}.{kv}", ["batch", 2, "past_sequence", 16])
                          for i in range(2) for kv in ("key", "value")]
    outputs = [o.name for o in session.get_outputs()]
    assert outputs == ["logits"] + [f"present.{i}.{kv}" for i in range(2) for kv in ("key", "value")]
    assert json.loads((folder / "onnx_io.json").read_text())["inputs"] == [i for i, _ in inputs]


def test_logits_without_cache(session, model):
    """A whole batch in one step from an empty past: the graph was traced with a past of 4, yet runs with 0."""
    ids = torch.randint(0, 50257, (2, 9), generator=torch.Generator().manual_seed(1))
    logits, presents = run(session, ids.numpy(), np.ones((2, 9), np.int64), np.arange(9)[None].repeat(2, 0),
                           empty_past(session, 2, model.config))
    with torch.no_grad():
        out = model(ids, use_cache=True)
    np.testing.assert_allclose(logits, out.logits.numpy(), atol=ATOL, rtol=0)
    for i, layer in enumerate(out.past_key_values.layers):
        np.testing.assert_allclose(presents[f"past_key_values.{i}.key"], layer.keys.numpy(), atol=ATOL, rtol=0)
        np.testing.assert_allclose(presents[f"past_key_values.{i}.value"], layer.values.numpy(), atol=ATOL, rtol=0)


def test_logits_with_cache(session, model):
    """Prefill 6 tokens, then feed 1, then 3 at a time through the presents: each step's logits equal the full
    sequence's logits at those positions."""
    ids = torch.randint(0, 50257, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids).logits.numpy()
    past, start = empty_past(session, 2, model.config), 0
    for stop in (6, 7, 10):
        step = ids[:, start:stop].numpy()
        logits, past = run(session, step, np.ones((2, stop), np.int64), np.arange(start, stop)[None].repeat(2, 0), past)
        np.testing.assert_allclose(logits, full[:, start:stop], atol=ATOL, rtol=0)
        start = stop


def test_left_padded_batch(session, model):
    """attention_mask and position_ids carry left padding as in transformers: a short row padded on the left
    gets the logits it gets alone."""
    short, long = [464, 3290, 318], [40, 1101, 257, 922, 1110]
    ids = np.array([[50256] * 2 + short, long])
    mask = np.array([[0, 0, 1, 1, 1], [1] * 5])
    positions = np.clip(mask.cumsum(-1) - 1, 0, None)
    logits, past = run(session, ids, mask, positions, empty_past(session, 2, model.config))
    with torch.no_grad():
        alone = model(torch.tensor([short])).logits.numpy()
        both = model(torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions))
    np.testing.assert_allclose(logits[0, 2:], alone[0], atol=ATOL, rtol=0)
    real = mask.astype(bool)  # padded rows attend to nothing: their logits are meaningless in both runtimes
    np.testing.assert_allclose(logits[real], both.logits.numpy()[real], atol=ATOL, rtol=0)
    # one cached step on top of the padded prefill
    nxt = logits[:, -1:].argmax(-1)
    step, _ = run(session, nxt, np.concatenate([mask, [[1], [1]]], 1), positions[:, -1:] + 1, past)
    with torch.no_grad():
        ref = model(torch.tensor(np.concatenate([ids, nxt], 1)), attention_mask=torch.tensor(
            np.concatenate([mask, [[1], [1]]], 1)), position_ids=torch.tensor(np.concatenate([positions, positions[:, -1:] + 1], 1))).logits
    np.testing.assert_allclose(step[:, 0], ref[:, -1].numpy(), atol=ATOL, rtol=0)


def test_readme_loop_gives_generates_greedy_tokens(folder, model):
    tokens, text = readme_generate(folder, PROMPT, max_new_tokens=20)
    prompt = load_tokenizer().encode(PROMPT)
    with torch.no_grad():
        expected = model.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, pad_token_id=50256)
    assert tokens == expected[0].tolist()
    assert text.startswith(PROMPT) and len(tokens) == len(prompt) + 20

