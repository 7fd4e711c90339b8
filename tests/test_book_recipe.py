"""recipes/book-ch5.yaml is the book's chapter 5 training cell: run with a small model, it gives the numbers the
book's own code gives (tests/fixtures/book_ch5_train_tiny.json), printed and plotted the book's way."""

import contextlib
import io
import json
import logging
import math
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hf_gpt import GPTForCausalLM, load_tokenizer
from hf_gpt.resources import THE_VERDICT
from hf_gpt.training import PretrainingArguments, main
from hf_gpt.training.book import exactness_breakers

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "book-ch5.yaml"
# The fixture's model: GPT_CONFIG_124M with context 64, width 64, 4 heads, 2 layers; 2 epochs.
TINY = ["--config_overrides", "context_length=64,emb_dim=64,n_heads=4,n_layers=2", "--max_length", "64",
        "--stride", "64", "--num_train_epochs", "2", "--train_files", str(THE_VERDICT)]


@pytest.fixture(scope="module")
def reference(book_reference):
    return json.loads((book_reference / "book_ch5_train_tiny.json").read_text())


@pytest.fixture(scope="module")
def tiny_run(one_thread, tmp_path_factory):
    out = tmp_path_factory.mktemp("book-ch5") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([str(RECIPE), *TINY, "--output_dir", str(out)])
    assert code == 0, printed.getvalue()[-3000:]
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return SimpleNamespace(out=out, printed=printed.getvalue(), evals=[e for e in history if "eval_loss" in e])


def test_every_evaluation_matches_the_books(tiny_run, reference):
    assert len(tiny_run.evals) == len(reference["evals"])
    for ours, book in zip(tiny_run.evals, reference["evals"]):
        assert ours["step"] - 1 == book["step"]
        assert ours["num_input_tokens_seen"] == book["tokens_seen"]
        assert math.ceil(ours["epoch"]) == book["epoch"]
        assert ours["eval_train_loss"] == pytest.approx(book["train_loss"], abs=1e-4), book["step"]
        assert ours["eval_loss"] == pytest.approx(book["val_loss"], abs=1e-4), book["step"]


def test_prints_the_books_table_and_its_samples(tiny_run, reference):
    expected = []
    for i, e in enumerate(reference["evals"]):
        expected.append(f"Ep {e['epoch']} (Step {e['step']:06d}): Train loss {e['train_loss']:.3f}, "
                        f"Val loss {e['val_loss']:.3f}")
        if i + 1 == len(reference["evals"]) or reference["evals"][i + 1]["epoch"] != e["epoch"]:
            expected.append(reference["epoch_samples"][e["epoch"] - 1].replace("\n", " "))
    printed = [line for line in tiny_run.printed.splitlines() if line.startswith(("Ep ", "Every effort"))]
    assert printed == expected
    saved = [json.loads(line)["text"] for line in (tiny_run.out / "samples.jsonl").read_text().splitlines()]
    assert saved == reference["epoch_samples"]


def test_writes_the_books_loss_plot_and_our_outputs(tiny_run):
    png = (tiny_run.out / "loss.png").read_bytes()
    assert struct.unpack(">II", png[16:24]) == (500, 300)  # the book's figsize=(5, 3)
    for name in ("model.safetensors", "README.md", "train_results.json", "eval_results.json", "samples.jsonl"):
        assert (tiny_run.out / name).is_file(), name
    assert list(tiny_run.out.glob("checkpoint-*"))
    eval_results = json.loads((tiny_run.out / "eval_results.json").read_text())
    assert eval_results["eval_loss"] == tiny_run.evals[-1]["eval_loss"]


def book_generate(model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None):
    """The book's chapter 5 `generate`, as printed there (the model returns an output object here)."""
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        with torch.no_grad():
            logits = model(idx_cond).logits
        logits = logits[:, -1, :]
        if top_k is not None:
            top_logits, _ = torch.topk(logits, top_k)
            min_val = top_logits[:, -1]
            logits = torch.where(logits < min_val, torch.tensor(float("-inf")).to(logits.device), logits)
        if temperature > 0.0:
            logits = logits / temperature
            probs = torch.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
        else:
            idx_next = torch.argmax(logits, dim=-1, keepdim=True)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


def test_sampling_after_the_run_is_the_books_generate(tiny_run):
    model = GPTForCausalLM.from_pretrained(tiny_run.out).eval()
    ids = load_tokenizer()("Every effort moves you", return_tensors="pt").input_ids
    torch.manual_seed(123)
    book = book_generate(model, ids, 15, context_size=64, temperature=1.4, top_k=25)
    torch.manual_seed(123)
    ours = model.generate(ids, do_sample=True, top_k=25, temperature=1.4, max_new_tokens=15)
    assert ours.tolist() == book.tolist()


def test_a_change_that_breaks_exactness_runs_and_says_so_once(one_thread, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_gpt.training"):
        code = main([str(RECIPE), *TINY, "--output_dir", str(tmp_path / "run"), "--bf16", "true",
                     "--max_steps", "2", "--save_strategy", "no"])
    assert code == 0
    said = [r.getMessage() for r in caplog.records if "no longer match the book's" in r.getMessage()]
    assert len(said) == 1 and "bf16 autocast" in said[0] and "\n" not in said[0]


def test_what_breaks_exactness():
    book = dict(bf16=False, fp16=False, tf32=None, torch_compile=False, world_size=1, gradient_accumulation_steps=1,
                data_order="book", rng_order="book")
    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation="eager"))
    model_args = SimpleNamespace(attn_implementation="eager")
    assert exactness_breakers(model_args, SimpleNamespace(**book), model) == []
    changed = SimpleNamespace(**{**book, "torch_compile": True, "world_size": 2, "rng_order": "trainer", "tf32": True})
    assert exactness_breakers(model_args, changed, model) == ["TF32 matrix products", "torch.compile", "2 processes",
                                                              "rng_order=trainer"]
    sdpa = SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa"))
    assert exactness_breakers(model_args, SimpleNamespace(**book), sdpa) == ["sdpa attention (the book's is eager)"]
    padded = SimpleNamespace(attn_implementation="eager", pad_vocab_to_multiple_of=64)
    assert exactness_breakers(padded, SimpleNamespace(**book), model) == ["a vocabulary padded to a multiple of 64"]


def test_the_default_run_keeps_its_improvements(tmp_path):
    args = PretrainingArguments(output_dir=str(tmp_path))
    assert (args.data_order, args.rng_order, args.step_numbering, args.report_style) == \
        ("seedable", "trainer", "trainer", "default")
    assert args.eval_iter is None and not args.decay_all_parameters
    assert args.accelerator_config.use_seedable_sampler
    assert args.lr_scheduler_type == "cosine" and args.max_grad_norm == 1.0
    book = PretrainingArguments(output_dir=str(tmp_path), data_order="book")
    assert not book.accelerator_config.use_seedable_sampler


def test_a_misspelt_choice_in_an_argument_file_is_refused(tmp_path, capsys):
    import yaml

    values = {**yaml.safe_load(RECIPE.read_text()), "rng_order": "bok"}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(values))
    assert main([str(tmp_path / "recipe.yaml"), "--output_dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == (f"pretrain.py: error: {tmp_path / 'recipe.yaml'}: rng_order: invalid "
                                               f"choice: 'bok' (choose from 'trainer', 'book'); see `--help`.")
