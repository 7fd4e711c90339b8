"""scripts/evaluate_model.py and hf_gpt.evaluation: the book's loss at stride = max_length, the guide's strided loop
below it, stock GPT-2 through the same loop, every token scored once, and bad inputs refused before weights load."""

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hf_gpt import GPTConfig, GPTForCausalLM, load_tokenizer
from hf_gpt.data import create_dataloader
from hf_gpt.evaluation import RESULT_KEYS, strided_nll, strided_windows
from hf_gpt.resources import THE_VERDICT

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "evaluate_model.py"
CONTEXT = 32

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("evaluate_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def text():
    return THE_VERDICT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def ids(tokenizer, text):
    return tokenizer(text, verbose=False)["input_ids"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(123)
    config = GPTConfig(vocab_size=50257, context_length=CONTEXT, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.0)
    return GPTForCausalLM(config).eval()


@pytest.fixture(scope="module")
def folder(model, tokenizer, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf_gpt_folder")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _loss(model, ids, **kwargs):
    nats, n, _ = strided_nll(model, ids, progress=False, **kwargs)
    return nats / n, n


# ------------------------------------------------------------------------------------------ the book's numbers


def calc_loss_batch(input_batch, target_batch, model, device):
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch).logits  # the book's GPTModel returns the logits themselves
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())
    return loss


def calc_loss_loader(data_loader, model, device, num_batches=None):
    total_loss = 0.
    if len(data_loader) == 0:
        return float("nan")
    elif num_batches is None:
        num_batches = len(data_loader)
    else:
        num_batches = min(num_batches, len(data_loader))
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i < num_batches:
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            total_loss += loss.item()
        else:
            break
    return total_loss / num_batches


def test_stride_equal_to_max_length_is_the_books_calc_loss_loader(model, tokenizer, text):
    text = text[:8400]
    loader = create_dataloader(text, tokenizer, batch_size=8, max_length=CONTEXT, stride=CONTEXT, shuffle=False,
                               drop_last=False)
    n_windows = len(loader.dataset)
    assert n_windows == 64 and n_windows % 8 == 0  # equal batches: the book's mean of batch means is the token mean
    with torch.no_grad():
        book = calc_loss_loader(loader, model, "cpu")
    # The book drops the tail that does not fill a window; score exactly the tokens its windows cover.
    ids = tokenizer(text, verbose=False)["input_ids"]
    assert len(ids) > n_windows * CONTEXT + 1
    ours, scored = _loss(model, ids[:n_windows * CONTEXT + 1], max_length=CONTEXT, stride=CONTEXT, batch_size=5)
    assert scored == n_windows * CONTEXT
    assert ours == pytest.approx(book, abs=1e-5)


def test_overlapping_windows_equal_the_hf_guide_loop(model, ids):
    """The perplexity guide's loop, as written there, over windows of max_length + 1 tokens (so each window predicts
    max_length tokens, like the book's); its overlap targets are -100 and its loss is the model's own."""
    ids, max_length, stride = torch.tensor(ids[:301]), 16, 5
    seq_len = ids.numel()
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length + 1, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = ids[begin_loc:end_loc].unsqueeze(0)
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss
        num_loss_tokens = int((target_ids[:, 1:] != -100).sum())  # the labels the model's shifted loss averages
        nll_sum += loss.item() * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    ours, scored = _loss(model, ids, max_length=max_length, stride=stride, batch_size=3)
    assert scored == n_tokens == seq_len - 1
    assert ours == pytest.approx(nll_sum / n_tokens, abs=1e-5)
    # Overlap helps: more context per token gives a different (here: any) number than disjoint windows.
    assert ours != pytest.approx(_loss(model, ids, max_length=max_length, stride=max_length)[0], abs=1e-6)


@pytest.mark.parametrize("n_pairs", [1, 2, 31, 32, 33, 100, 257])
@pytest.mark.parametrize("max_length,stride", [(1, 1), (8, 1), (8, 3), (8, 8), (32, 16), (32, 31)])
def test_every_token_is_scored_once_with_at_most_max_length_context(n_pairs, max_length, stride):
    times = [0] * n_pairs
    for begin, end, n_targets in strided_windows(n_pairs, max_length, stride):
        assert 0 < end - begin <= max_length and 0 < n_targets <= end - begin
        for pair in range(end - n_targets, end):
            times[pair] += 1
            assert pair - begin + 1 <= max_length  # inputs seen when predicting token pair + 1
    assert times == [1] * n_pairs


@pytest.mark.parametrize("max_length,stride", [(1, 1), (8, 3), (8, 8), (32, 31)])
def test_windows_planned_as_ids_arrive_are_strided_windows(max_length, stride):
    """A streamed text's length is known only at its end: the windows given as ids arrive, in steps of any size,
    are those of `strided_windows` over the whole text, and so are their batches."""
    import random

    from hf_gpt.evaluation import _batches, _WindowPlan

    rng = random.Random(0)
    for n_pairs in (1, 7, 8, 9, 33, 100, 257):
        plan, windows, known = _WindowPlan(max_length, stride), [], 0
        while known < n_pairs:
            known = min(n_pairs, known + rng.choice([1, 2, 5, 40]))
            windows += plan.advance(known, final=False)
        windows += plan.advance(n_pairs, final=True)
        assert windows == strided_windows(n_pairs, max_length, stride), n_pairs
        assert [w for run in _batches(iter(windows), 3) for w in run] == windows


def test_token_nll_covers_every_token_of_a_real_text(model, ids):
    nats, scored, token_nll = strided_nll(model, ids, max_length=CONTEXT, stride=12, batch_size=4, progress=False,
                                          return_token_nll=True)
    assert scored == len(ids) - 1 == token_nll.numel() == 5144
    assert not token_nll.isnan().any() and (token_nll > 0).all()
    assert token_nll.sum().item() == pytest.approx(nats, rel=1e-12)
    # The first window scores its tokens from the text's start: the model on ids[:32] alone gives the same NLLs.
    with torch.no_grad():
        head = F.cross_entropy(model(torch.tensor([ids[:CONTEXT]])).logits[0], torch.tensor(ids[1:CONTEXT + 1]),
                               reduction="none")
    torch.testing.assert_close(token_nll[:CONTEXT].float(), head, atol=1e-5, rtol=0)


def test_stock_gpt2_through_the_same_loop_gives_the_same_numbers(model, ids, tmp_path):
    from transformers import GPT2LMHeadModel

    model.save_pretrained_gpt2(tmp_path / "gpt2")
    stock = GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").eval()
    reloaded = GPTForCausalLM.from_gpt2(tmp_path / "gpt2").eval()
    text = ids[:1200]
    for bf16, tol in ((False, 1e-5), (True, 2e-2)):
        settings = dict(max_length=CONTEXT, stride=8, batch_size=8, bf16=bf16)
        ours, n = _loss(reloaded, text, **settings)
        theirs, m = _loss(stock, text, **settings)
        assert n == m == len(text) - 1
        assert ours == pytest.approx(theirs, abs=tol)
    assert _loss(model, text, max_length=CONTEXT, stride=8)[0] == pytest.approx(
        _loss(stock, text, max_length=CONTEXT, stride=8)[0], abs=1e-5)


# --------------------------------------------------------------------------------------------------- the script


def _run(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)


def _expected(model, tokenizer, text, **settings):
    ids = tokenizer(text, verbose=False)["input_ids"]
    nats, n, _ = strided_nll(model, ids, progress=False, **settings)
    return {"tokens": n, "loss": nats / n, "perplexity": math.exp(nats / n),
            "bits_per_byte": nats / math.log(2) / len(text.encode("utf-8")),
            "word_perplexity": math.exp(nats / len(text.split()))}


@pytest.mark.slow
def test_script_scores_a_text_file_and_writes_json(model, tokenizer, folder, text, tmp_path):
    part = text[:3000] + " — naïve café"  # multi-byte characters: bytes != characters
    (tmp_path / "part.txt").write_text(part, encoding="utf-8")
    out = tmp_path / "results" / "r.json"
    proc = _run(folder, "--text_file", tmp_path / "part.txt", "--max_length", 32, "--stride", 16, "--batch_size", 8,
                "--output_json", out)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(out.read_text())
    expected = _expected(model, tokenizer, part, max_length=32, stride=16)
    assert got["tokens"] == expected["tokens"] == len(tokenizer(part)["input_ids"]) - 1
    for key in RESULT_KEYS[1:]:
        assert got[key] == pytest.approx(expected[key], rel=1e-5), key
    assert proc.stderr == ""  # no progress bars in a log: the scoring bar is drawn on a terminal only
    assert "perplexity" in proc.stdout


def test_script_reads_datasets_book_checkpoints_and_gpt2_folders(main, model, tokenizer, folder, text, tmp_path):
    docs = [p for p in text[:4000].split("\n\n") if p.strip()][:6]
    (tmp_path / "data").mkdir()
    with open(tmp_path / "data" / "test.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": len(d), "body": d}) + "\n")
    settings = dict(max_length=32, stride=24)
    expected = _expected(model, tokenizer, "\n\n".join(docs), **settings)
    flags = ["--max_length", "32", "--stride", "24", "--no_progress"]

    torch.save(model.state_dict(), tmp_path / "model.pth")  # the book's key names are hf_gpt's
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_book_dict()))
    model.save_pretrained_gpt2(tmp_path / "gpt2")
    runs = {
        "dataset": [str(folder), "--dataset_name", str(tmp_path / "data"), "--text_column", "body"],
        "book .pth": [str(tmp_path / "model.pth"), "--config", str(tmp_path / "config.json"),
                      "--dataset_name", str(tmp_path / "data"), "--split", "test", "--text_column", "body"],
        "gpt2 folder": [str(tmp_path / "gpt2"), "--dataset_name", str(tmp_path / "data"), "--text_column", "body"],
    }
    for name, argv in runs.items():
        out = tmp_path / f"{name}.json"
        assert main([*argv, *flags, "--output_json", str(out)]) == 0, name
        got = json.loads(out.read_text())
        assert got["tokens"] == expected["tokens"], name
        for key in RESULT_KEYS[1:]:
            assert got[key] == pytest.approx(expected[key], rel=1e-5), (name, key)


# ------------------------------------------------------------------------------------------ a long text file


PART = 200  # characters per part in these tests (256K when scoring by default): a few KB is read in dozens of parts


@pytest.fixture
def small_parts(monkeypatch):
    import hf_gpt.evaluation as evaluation
    import hf_gpt.sources as sources

    monkeypatch.setattr(sources, "PART_CHARS", PART)
    monkeypatch.setattr(evaluation, "PART_CHARS", PART)
    return sources


def _long_text(text):
    """Several KB of the-verdict with tabs, runs of spaces, no-break spaces and multi-byte characters."""
    odd = " — naïve café\t tab\u00a0nbsp  two  spaces\n\n"
    return (text[:5000] + odd + text[5000:6500]).replace("Gisburn", "Gisbürn")


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize("max_length,stride,batch_size", [(32, 32, 4), (32, 12, 3), (16, 5, 7)])
def test_a_text_file_read_in_parts_scores_as_the_whole_text(model, tokenizer, folder, text, small_parts, tmp_path,
                                                            max_length, stride, batch_size, crlf):
    """The streamed --text_file path: dozens of parts, windows and batches across their borders, a last short window
    and a last short batch give the results of the whole text's ids scored at once (CRLF read as Python reads it)."""
    from hf_gpt.evaluation import evaluate

    whole = _long_text(text)
    path = tmp_path / "long.txt"
    path.write_bytes((whole.replace("\n", "\r\n") if crlf else whole).encode("utf-8"))
    assert Path(path).read_text(encoding="utf-8") == whole
    assert len(list(small_parts.file_parts(path))) > 25
    ids = tokenizer(whole, verbose=False)["input_ids"]
    windows = strided_windows(len(ids) - 1, max_length, stride)
    assert windows[-1][1] - windows[-1][0] < max_length and (len(windows) - 1) % batch_size  # short last ones
    settings = dict(max_length=max_length, stride=stride, batch_size=batch_size)
    nats, n, _ = strided_nll(model, ids, progress=False, **settings)
    got = evaluate(folder, text_file=path, device="cpu", progress=False, **settings)
    assert (got["tokens"], got["windows"], got["bytes"], got["words"]) == (
        n, len(windows), len(whole.encode("utf-8")), len(whole.split()))
    expected = {"loss": nats / n, "perplexity": math.exp(nats / n), "nats": nats,
                "bits_per_byte": nats / math.log(2) / len(whole.encode("utf-8")),
                "word_perplexity": math.exp(nats / len(whole.split()))}
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=0), key
    assert got == {**evaluate(folder, text=whole, device="cpu", progress=False, **settings),
                   "seconds": got["seconds"], "tokens_per_second": got["tokens_per_second"]}


def test_a_text_file_is_scored_holding_about_one_part_of_ids(model, tokenizer, folder, text, small_parts, tmp_path,
                                                            monkeypatch):
    """Bounded memory, measured: the tokenizer never sees more than about one part of text, and the scorer's id
    buffer never holds more than `max_length + (batch_size - 1) * stride + 1` ids plus one part's. The same probe
    on the whole-list path sees every id at once, so it does measure the buffer."""
    import hf_gpt.evaluation as evaluation

    whole = _long_text(text)
    (tmp_path / "long.txt").write_text(whole, encoding="utf-8")
    held = []
    score_batch = evaluation._score_batch
    monkeypatch.setattr(evaluation, "_score_batch", lambda model, buf, *a: held.append(buf.numel()) or score_batch(
        model, buf, *a))
    seen = []

    def counting(text, **kwargs):
        out = tokenizer(text, **kwargs)
        seen.append((len(text), len(out["input_ids"])))
        return out

    spec = evaluation.resolve_model(folder)
    spec.load_tokenizer = lambda: counting
    max_length, stride, batch_size = 32, 12, 3
    got = evaluation.evaluate(folder, spec=spec, text_file=tmp_path / "long.txt", max_length=max_length,
                              stride=stride, batch_size=batch_size, device="cpu", progress=False)
    longest_part = max(chars for chars, _ in seen)
    bound = max_length + (batch_size - 1) * stride + 1 + max(n for _, n in seen)
    assert len(seen) > 25 and longest_part < 2 * PART
    assert max(held) <= bound and got["tokens"] > 10 * bound
    held.clear()
    strided_nll(model, tokenizer(whole)["input_ids"], max_length=max_length, stride=stride, batch_size=batch_size,
                progress=False)
    assert set(held) == {got["tokens"] + 1}


def test_parts_give_the_ids_bytes_and_words_of_the_whole_text(tokenizer, small_parts, tmp_path):
    """Parts are cut only at a space or newline between two non-space characters, so their ids concatenate to the
    whole text's and their words add up; where no such gap comes for 8 parts (one huge word), the cut splits the
    word and it still counts once. The same for a file's reads and for strings of any size (a dataset's rows)."""
    from hf_gpt.evaluation import encode_parts

    texts = {"prose": "\t Lead  spaces\u00a0and\u2003odd\x0cwhite\n\n\nspace, then words.\nA line " * 40 + "end\n \n",
             "one huge word": "a b " + "x" * (20 * PART) + " c\td\n"}
    for name, whole in texts.items():
        (tmp_path / "t.txt").write_text(whole, encoding="utf-8")
        cuts = sorted(random.Random(0).sample(range(1, len(whole)), len(whole) // 150))  # strings of 1 to ~1000
        strings = [whole[i:j] for i, j in zip([0, *cuts], [*cuts, len(whole)])]
        for parts in (list(small_parts.file_parts(tmp_path / "t.txt")), list(small_parts.text_parts(strings))):
            assert len(parts) > 5 and "".join(parts) == whole and all(parts), name
            size = [0, 0]
            ids = [i for chunk in encode_parts(tokenizer, parts, 50257, size) for i in chunk]
            assert size == [len(whole.encode("utf-8")), len(whole.split())], name
            if name == "prose":
                assert ids == tokenizer(whole)["input_ids"]


def test_a_foreign_tokenizer_found_in_a_later_part_is_the_same_one_line_error(tokenizer):
    """The first parts (two ids at least) are tokenized before the weights load; an id past the vocabulary that
    first shows up in a later part stops scoring there with the same error."""
    from hf_gpt.cli import UsageError
    from hf_gpt.evaluation import encode_parts

    chunks = encode_parts(tokenizer, [" the, the", " and the", " Gisburn"], vocab_size=1000)
    assert next(chunks) == tokenizer(" the, the")["input_ids"]
    next(chunks)
    with pytest.raises(UsageError, match="gives id .* but the model's vocabulary has 1000 tokens"):
        next(chunks)
    with pytest.raises(UsageError, match="gives id"):
        encode_parts(tokenizer, [" Gisburn", " the"], vocab_size=1000)


def test_a_pipe_is_read_once_in_parts(model, tokenizer, folder, text, small_parts, tmp_path):
    """`--text_file <(xzcat big.txt.xz)`: a pipe is not scanned ahead (it can be read once only)."""
    import threading

    from hf_gpt.evaluation import evaluate

    whole = _long_text(text)[:3000]
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(whole, encoding="utf-8"))
    writer.start()
    got = evaluate(folder, text_file=fifo, max_length=32, stride=16, device="cpu", progress=False)
    writer.join()
    nats, n, _ = strided_nll(model, tokenizer(whole)["input_ids"], max_length=32, stride=16, progress=False)
    assert got["tokens"] == n and got["loss"] == pytest.approx(nats / n, rel=1e-9)
    assert got["words"] == len(whole.split())


def _write_jsonl(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_a_dataset_is_read_in_parts_and_scores_as_its_joined_text(model, tokenizer, folder, text, small_parts,
                                                                   tmp_path, monkeypatch):
    """A dataset split is streamed off its Arrow file like a text file: its rows (empty ones kept, missing ones
    left out) joined with blank lines, tokenized about one part at a time, give the joined text's results."""
    import hf_gpt.evaluation as evaluation

    paragraphs = _long_text(text).split("\n\n")
    bodies = [*paragraphs[:20], "", None, " ".join(paragraphs), "", "  lead spaces", *paragraphs[-3:]]
    assert max(len(b or "") for b in bodies) > 5 * PART
    _write_jsonl(tmp_path / "data", [{"id": i, "body": b} for i, b in enumerate(bodies)])
    joined = "\n\n".join(b for b in bodies if b is not None)
    seen = []

    def counting(text, **kwargs):
        seen.append(len(text))
        return tokenizer(text, **kwargs)

    spec = evaluation.resolve_model(folder)
    spec.load_tokenizer = lambda: counting
    settings = dict(max_length=32, stride=12, batch_size=3, device="cpu", progress=False)
    got = evaluation.evaluate(folder, spec=spec, dataset_name=str(tmp_path / "data"), text_column="body", **settings)
    assert len(seen) > 25 and max(seen) < 2 * PART
    whole = evaluation.evaluate(folder, text=joined, **settings)
    assert got == {**whole, "seconds": got["seconds"], "tokens_per_second": got["tokens_per_second"]}
    nats, n, _ = strided_nll(model, tokenizer(joined)["input_ids"], max_length=32, stride=12, progress=False)
    assert (got["tokens"], got["words"]) == (n, len(joined.split()))
    assert got["loss"] == pytest.approx(nats / n, rel=1e-9)
    assert "".join(evaluation.read_parts(dataset_name=str(tmp_path / "data"), text_column="body")) == joined


DATASET_ERRORS = {
    "empty column": ([{"body": ""}], ["--text_column", "body"], "column 'body' of split 'test' of {data} is empty"),
    "two text columns": ([{"a": "x y", "b": "z"}], [], "has text columns ['a', 'b']; pick one with --text_column"),
    "no such column": ([{"a": "x y"}], ["--text_column", "body"], "has no text column 'body'; its text columns: ['a']"),
    "no such split": ([{"text": "x y"}], ["--split", "validation"], "cannot load split 'validation' of dataset {data}"),
}


@pytest.mark.parametrize("case", sorted(DATASET_ERRORS))
def test_bad_datasets_get_one_line_before_weights_load(main, case, broken_folder, tmp_path, capsys):
    rows, argv, message = DATASET_ERRORS[case]
    data = tmp_path / "data"
    _write_jsonl(data, rows)
    assert main([str(broken_folder), "--dataset_name", str(data), *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and message.format(data=data) in err


@pytest.mark.parametrize("reuse", ["true", "false"])
@pytest.mark.parametrize("data", ["text_file", "tasks"])
def test_scoring_on_cpu_keeps_freed_memory_for_reuse(folder, fresh_tensor_faults, local_task, tmp_path, data, reuse):
    """Each batch's logits are large tensors allocated again and again: after the script has scored on CPU, with
    our loop or lm-eval's, they fault their pages in once, not every batch (1.5x faster scoring per batch);
    `--cpu_reuse_freed_memory false` leaves glibc as it was. The script opts in for its own process."""
    if data == "tasks":
        pytest.importorskip("lm_eval")
    (tmp_path / "t.txt").write_text("Every effort moves you to the end. " * 30, encoding="utf-8")
    scored = ["--text_file", str(tmp_path / "t.txt")] if data == "text_file" else [
        "--tasks", "verdict_ppl", "--include_path", str(local_task[0])]
    argv = [str(folder), *scored, "--no_progress", "--cpu_reuse_freed_memory", reuse]
    code, scored, settled = fresh_tensor_faults(f"""
import runpy
main = runpy.run_path({str(SCRIPT)!r})["main"]
code = main({argv!r})
[faults_of_a_fresh_64mib_tensor() for _ in range(4)]
print(code, "scored", sum(faults_of_a_fresh_64mib_tensor() for _ in range(6)))
""")[-3:]
    assert (code, scored) == ("0", "scored")
    assert int(settled) < 100 if reuse == "true" else int(settled) >= 6 * 16_000


# ------------------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def broken_folder(folder, tmp_path_factory):
    """A complete folder whose weights cannot load: any error but ours means the check came after loading."""
    import shutil

    out = tmp_path_factory.mktemp("broken") / "model"
    shutil.copytree(folder, out)
    (out / "model.safetensors").write_bytes(b"not weights")
    return out


BAD_INPUTS = {
    "empty text": (["--text_file", "{empty}"], "is empty: nothing to score"),
    "one token": (["--text_file", "{one_token}"], "1 token(s) long; scoring needs at least 2"),
    "stride 0": (["--text_file", "{verdict}", "--stride", "0"], "stride must be a positive integer, got 0"),
    "stride > max_length": (["--text_file", "{verdict}", "--max_length", "16", "--stride", "17"],
                            "stride 17 is above max_length 16"),
    "max_length > context": (["--text_file", "{verdict}", "--max_length", "33"],
                             "max_length 33 is above the model's context of 32 tokens"),
    "no data": ([], "give the data to score"),
    "two data": (["--text_file", "{verdict}", "--dataset_name", "x"], "exactly one of --text_file"),
    "missing file": (["--text_file", "{missing}"], "cannot read --text_file"),
    "a folder": (["--text_file", "{folder}"], "cannot read --text_file"),
    "not UTF-8": (["--text_file", "{latin1}"], "cannot read --text_file {latin1}: UnicodeDecodeError: 'utf-8' codec "
                  "can't decode byte 0xe9 in position 11: invalid continuation byte\n"),  # Python's, as read whole
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_get_one_line_before_weights_load(main, case, broken_folder, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "one.txt").write_text("Hello")
    (tmp_path / "latin1.txt").write_bytes("Bonjour café au lait".encode("latin-1"))
    paths = {"empty": tmp_path / "empty.txt", "one_token": tmp_path / "one.txt", "verdict": THE_VERDICT,
             "missing": tmp_path / "missing.txt", "folder": tmp_path, "latin1": tmp_path / "latin1.txt"}
    argv, message = BAD_INPUTS[case]
    assert main([str(broken_folder), *[a.format(**paths) for a in argv]]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and message.format(**paths) in err, err


def test_bad_models_get_one_line(main, folder, book_reference, tmp_path, capsys):
    (tmp_path / "no_config").mkdir()
    verdict = ["--text_file", str(THE_VERDICT)]
    cases = [
        ([str(tmp_path / "nope"), *verdict], "no such model folder or file"),
        (["./nope", *verdict], "no such model folder or file"),
        (["no-such-model-id", *verdict], "the Hub is offline"),
        ([str(tmp_path / "no_config"), *verdict], "is not a model folder: it has no config.json"),
        ([str(book_reference / "book_tiny.pth"), *verdict], "needs its config: --config"),
        ([str(folder), "--config", str(book_reference / "book_tiny_config.json"), *verdict], "only for a book .pth"),
        # The book's tiny model has 1000 tokens: GPT-2's ids do not fit (found from the ids, before the weights).
        ([str(book_reference / "book_tiny.pth"), "--config", str(book_reference / "book_tiny_config.json"), *verdict],
         "the model's vocabulary has 1000 tokens"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and message in err, (argv, err)


@pytest.mark.slow
def test_script_bad_input_in_a_real_process_has_no_traceback(broken_folder):
    proc = _run(broken_folder, "--text_file", THE_VERDICT, "--stride", "0")
    assert proc.returncode == 2
    assert proc.stderr == "error: stride must be a positive integer, got 0\n" and proc.stdout == ""
    proc = _run(broken_folder, "--text_fil", THE_VERDICT)  # argparse's own errors: one line too, no abbreviations
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: unrecognized")


def test_no_script_shadows_a_library_its_siblings_import():
    """`python scripts/X.py` puts scripts/ first on sys.path: a scripts/evaluate.py was imported as Hugging Face's
    `evaluate` by pretrain.py (whose perplexity metric then failed)."""
    import importlib.util

    stems = {p.stem for p in SCRIPT.parent.glob("*.py")}
    assert not {s for s in stems if importlib.util.find_spec(s) is not None}


# ---------------------------------------------------------------------------------------------------- lm-eval


TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: loglikelihood_rolling
test_split: test
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
"""


@pytest.fixture(scope="module")
def local_task(tmp_path_factory, text):
    """A perplexity task over a local jsonl (the Hub is unreachable); each document fits one 32-token window."""
    root = tmp_path_factory.mktemp("lm_eval_task")
    docs = ["I had always thought Jack Gisburn rather a cheap genius.",
            "Every effort moves you.", text[120:230]]
    with open(root / "docs.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    (root / "tasks").mkdir()
    (root / "tasks" / "verdict_ppl.yaml").write_text(TASK.format(name="verdict_ppl", data=root / "docs.jsonl"))
    return root / "tasks", docs


def _lm_eval_expected(model, tokenizer, docs):
    """lm-eval scores every token of a document, the first given <|endoftext|>: our loop on eos + document."""
    nats = []
    for d in docs:
        ids = [tokenizer.eos_token_id, *tokenizer(d)["input_ids"]]
        assert len(ids) <= CONTEXT + 1
        nats.append(strided_nll(model, ids, max_length=CONTEXT, stride=CONTEXT, progress=False)[0])
    return nats, sum(nats) / math.log(2) / sum(len(d.encode("utf-8")) for d in docs)


@pytest.mark.slow
def test_lm_eval_hf_model_runs_hf_gpt_folders(model, tokenizer, folder, local_task):
    """What `lm_eval --model hf --model_args pretrained=FOLDER,trust_remote_code=True --tasks ...` runs."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    tasks_dir, docs = local_task
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={folder},trust_remote_code=True",
                                  tasks=["verdict_ppl"], device="cpu", batch_size=2, log_samples=True,
                                  task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False))
    nats, bits_per_byte = _lm_eval_expected(model, tokenizer, docs)
    got = sorted(out["samples"]["verdict_ppl"], key=lambda s: s["doc_id"])
    assert [-s["resps"][0][0] for s in got] == pytest.approx(nats, abs=1e-4)
    assert out["results"]["verdict_ppl"]["bits_per_byte,none"] == pytest.approx(bits_per_byte, rel=1e-5)


@pytest.mark.slow
def test_script_tasks_hand_a_book_checkpoint_to_lm_eval(main, model, tokenizer, local_task, tmp_path, capsys):
    pytest.importorskip("lm_eval")
    tasks_dir, docs = local_task
    torch.save(model.state_dict(), tmp_path / "model.pth")
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_book_dict()))
    out = tmp_path / "r.json"
    argv = [str(tmp_path / "model.pth"), "--config", str(tmp_path / "config.json"), "--tasks", "verdict_ppl",
            "--include_path", str(tasks_dir), "--device", "cpu", "--output_json", str(out)]
    assert main(argv) == 0
    got = json.loads(out.read_text())["lm_eval"]["verdict_ppl"]
    assert got["bits_per_byte,none"] == pytest.approx(_lm_eval_expected(model, tokenizer, docs)[1], rel=1e-5)
    assert main([*argv[:3], "--tasks", "no_such_task", "--include_path", str(tasks_dir)]) == 2
    assert "lm-eval knows no task no_such_task" in capsys.readouterr().err
