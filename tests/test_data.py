import json
import logging
import random
import re

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import hf_gpt.data as data
import hf_gpt.sources as sources
import hf_gpt.windows as windows
from hf_gpt.data import build_lm_datasets, count_windows, create_dataloader
from hf_gpt.tokenization import load_tokenizer, tiktoken_gpt2
from hf_gpt.resources import THE_VERDICT

EOT = "<|endoftext|>"
WORDS = ("every effort moves you forward , and the painter 's wife said : \" it was n't his best work .\n"
         "Gisburn 42 3.14 café naïve — yes!\n\n").split(" ")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def tik():
    return tiktoken_gpt2()


@pytest.fixture(autouse=True)
def quiet_progress():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def book_windows(ids, max_length, stride):
    """The book's GPTDatasetV1 loop, verbatim, on plain lists."""
    inputs, targets = [], []
    for i in range(0, len(ids) - max_length, stride):
        inputs.append(ids[i:i + max_length])
        targets.append(ids[i + 1:i + max_length + 1])
    return inputs, targets


def make_text(n_words, seed=0):
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def build(tok, tmp_path, **kwargs):
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    return build_lm_datasets(tok, **kwargs)


def assert_book(split, ids, max_length, stride):
    inputs, targets = book_windows(ids, max_length, stride)
    assert len(split) == len(inputs) == count_windows(len(ids), max_length, stride)
    assert split["input_ids"] == inputs
    assert split["shift_labels"] == targets


# --- window semantics -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_doc(tmp_path_factory, tik):
    path = tmp_path_factory.mktemp("one") / "doc.txt"
    path.write_text(make_text(700), encoding="utf-8")
    ids = tik.encode(path.read_text(encoding="utf-8"), allowed_special={EOT})
    return path, ids


@pytest.mark.parametrize("case", ["overlap", "no_overlap", "gaps", "exact_fit", "stride_fits_exactly", "stride_1"])
def test_windows_equal_the_books_loop(tok, one_doc, tmp_path, monkeypatch, case):
    path, ids = one_doc
    n = len(ids)
    max_length, stride = {"overlap": (64, 24), "no_overlap": (64, 64), "gaps": (40, 97), "exact_fit": (n - 1, 5),
                          "stride_fits_exactly": (n - 1 - 3 * 111, 111), "stride_1": (n - 9, 1)}[case]
    monkeypatch.setattr(windows, "ENCODE_PART_CHARS", 97)  # many parts and map batches: windows cross both
    ds = build(tok, tmp_path, text_files=path, max_length=max_length, stride=stride, validation_fraction=0)
    assert list(ds) == ["train"]
    assert_book(ds["train"], ids, max_length, stride)
    expected = {"overlap": (n - 64 + 23) // 24, "no_overlap": (n - 64 + 63) // 64, "gaps": (n - 40 + 96) // 97,
                "exact_fit": 1, "stride_fits_exactly": 4, "stride_1": 9}[case]
    assert len(ds["train"]) == expected
    assert ds["train"].features["input_ids"] == datasets.List(datasets.Value("int64"), length=max_length)


def test_one_token_short_is_a_clear_error(tok, one_doc, tmp_path):
    path, ids = one_doc
    with pytest.raises(ValueError, match=rf"the train split holds {len(ids)} tokens, fewer than max_length \+ 1 = "
                                         rf"{len(ids) + 1} .*lower max_length to at most {len(ids) - 1}"):
        build(tok, tmp_path, text_files=path, max_length=len(ids), stride=1, validation_fraction=0)


def test_book_counts_on_the_verdict(tok, tik, book_reference, tmp_path):
    """The book's ch. 5 setup: 90/10 character split, context 256, stride 256."""
    path = THE_VERDICT
    text = path.read_text(encoding="utf-8")
    ds = build(tok, tmp_path, text_files=path, max_length=256, stride=256)
    cut = int(0.9 * len(text))
    train_ids, val_ids = (tik.encode(t, allowed_special={EOT}) for t in (text[:cut], text[cut:]))
    assert (len(train_ids), len(val_ids)) == (4612, 534)
    assert (len(ds["train"]), len(ds["validation"])) == (18, 2)  # 9 and 1 batches of 2, as the book prints
    assert_book(ds["train"], train_ids, 256, 256)
    assert_book(ds["validation"], val_ids, 256, 256)


def test_parts_do_not_change_ids(tok, tik):
    """Cutting long texts before tokenizing must give the ids of the whole text, whatever the whitespace."""
    rng = random.Random(1)
    alphabet = ["a", "b", " ", " ", "\n", "\n\n", "'s", "'", "1", "2", ".", "!", "\t", "é", "\u00a0", "\r\n", "  ",
                EOT, "\x1c", "\x85", "\u2028", "\u3000", "\u180e", "\u200b", "\u0301", "漢", "🙂", "\x0b", "\u2009"]
    encoder = windows.Encoder(tok)
    for size in (1, 3, 8):
        for _ in range(60):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 120)))
            parts = list(sources.text_parts([text], size))
            assert "".join(parts) == text
            got = np.concatenate(encoder.encode(parts))
            assert got.tolist() == tik.encode(text, allowed_special={EOT}), repr(text)


def test_tiktoken_gives_the_tokenizers_ids_on_any_unicode(tok):
    """The default path tokenizes with tiktoken's GPT-2 BPE: the ids of hf_gpt's GPT-2 tokenizer, on any text."""
    rng = random.Random(5)
    ranges = [(0x20, 0x7E), (0x0, 0x20), (0xA0, 0x17F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x600, 0x6FF),
              (0x1680, 0x1680), (0x180E, 0x180E), (0x2000, 0x206F), (0x3000, 0x303F), (0x4E00, 0x4E80),
              (0xAC00, 0xAC80), (0x1F300, 0x1F64F), (0xFE00, 0xFE0F), (0x1C, 0x1F), (0x85, 0x85)]
    texts = ["".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randrange(1, 200))) for _ in range(400)]
    texts += [" " * 5 + "x\n\n\n y", "it's 'S 'LL 'll don't", "a" * 3000, EOT + " " + EOT + "\n"]
    fast, tik = windows.Encoder(tok), windows.Encoder(tiktoken_gpt2())
    for text, ours, theirs in zip(texts, fast.encode(texts), tik.encode(texts)):
        assert ours.tolist() == theirs.tolist(), repr(text)


def test_windows_of_the_default_tokenizer_equal_the_books_loop(one_doc, tmp_path, monkeypatch):
    path, ids = one_doc
    used = []
    encode = windows.Encoder.encode

    def spy(self, texts):
        used.append(self.kind)
        return encode(self, texts)

    monkeypatch.setattr(windows.Encoder, "encode", spy)
    monkeypatch.setattr(windows, "ENCODE_PART_CHARS", 211)
    ds = build(None, tmp_path, text_files=path, max_length=50, stride=33, validation_fraction=0)
    assert used and set(used) == {"tiktoken"}
    assert_book(ds["train"], ids, 50, 33)


# --- the model contract -----------------------------------------------------------------------------------------

def test_collated_batch_loss_is_the_books_calc_loss_batch(tok, tik, one_doc, tmp_path):
    from transformers import default_data_collator

    from hf_gpt import GPTConfig, GPTForCausalLM

    path, ids = one_doc
    ds = build(tok, tmp_path, text_files=path, max_length=32, stride=16, validation_fraction=0)
    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(vocab_size=50257, context_length=32, emb_dim=16, n_heads=2, n_layers=1,
                                     drop_rate=0.0, qkv_bias=False)).eval()
    batch = default_data_collator([ds["train"][i] for i in range(5, 9)])
    assert set(batch) == {"input_ids", "shift_labels"}
    assert batch["input_ids"].dtype == batch["shift_labels"].dtype == torch.long
    inputs, targets = book_windows(ids, 32, 16)
    input_batch, target_batch = torch.tensor(inputs[5:9]), torch.tensor(targets[5:9])
    assert torch.equal(batch["input_ids"], input_batch) and torch.equal(batch["shift_labels"], target_batch)
    with torch.no_grad():
        loss = model(**batch).loss
        logits = model(input_batch).logits  # the book's calc_loss_batch
        book_loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())
        hf_convention = model(input_ids=input_batch, labels=input_batch).loss
    torch.testing.assert_close(loss, book_loss, rtol=0, atol=1e-6)
    hf_expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), input_batch[:, 1:].flatten())
    torch.testing.assert_close(hf_convention, hf_expected)  # max_length - 1 predictions
    with_torch_format = default_data_collator([ds["train"].with_format("torch")[i] for i in range(5, 9)])
    assert with_torch_format["shift_labels"].dtype == torch.long


# --- splits and sources -----------------------------------------------------------------------------------------

def docs(n, seed=0):
    return [make_text(random.Random(seed + i).randrange(20, 90), seed + i) for i in range(n)]


def joined_ids(tik, texts):
    return tik.encode(EOT.join(t for t in texts if t), allowed_special={EOT})


def test_single_document_split_by_characters(tok, tik, tmp_path):
    text = make_text(900)
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    ds = build(tok, tmp_path, text_files=tmp_path / "a.txt", max_length=20, stride=7, validation_fraction=0.25)
    cut = int(0.75 * len(text))
    assert_book(ds["train"], tik.encode(text[:cut]), 20, 7)
    assert_book(ds["validation"], tik.encode(text[cut:]), 20, 7)


def test_many_documents_split_by_document_and_joined_with_endoftext(tok, tik, tmp_path):
    texts = docs(10)
    texts[3] = ""  # an empty document adds nothing, not even a separator
    for i, t in enumerate(texts):
        (tmp_path / f"doc{i:02d}.txt").write_text(t, encoding="utf-8")
    ds = build(tok, tmp_path, text_files=tmp_path, max_length=16, stride=16)
    train_ids = joined_ids(tik, texts[:9])
    assert train_ids.count(50256) == 7
    assert_book(ds["train"], train_ids, 16, 16)
    assert_book(ds["validation"], joined_ids(tik, texts[9:]), 16, 16)
    globbed = build(tok, tmp_path, text_files=str(tmp_path / "doc*.txt"), max_length=16, stride=16)
    assert globbed["train"]["input_ids"] == ds["train"]["input_ids"]


@pytest.fixture
def small_parts(monkeypatch):
    """Text files are stored in rows of ~300 characters (4M by default), so a test's files span many rows."""
    import hf_gpt.sources as sources

    monkeypatch.setattr(sources, "PART_CHARS", 300)
    return sources


@pytest.mark.parametrize("streaming", [False, True])
def test_a_long_file_read_in_parts_gives_the_windows_of_the_whole_text(tok, tik, tmp_path, small_parts, streaming):
    """One text file longer than PART_CHARS is one document stored in several rows cut where GPT-2's ids stay the
    same: the book's 90/10 character split and the windows equal those of the whole text read at once. Windows
    and the split cut cross the rows' borders."""
    text = make_text(1500, seed=11).replace("\n", "\r\n")  # read with universal newlines, as open() does
    (tmp_path / "big.txt").write_bytes(text.encode())
    text = text.replace("\r\n", "\n")
    rows = small_parts.load_sources(tmp_path / "big.txt", None, None, None, False, str(tmp_path / "cache"))["train"]
    assert len(rows) > 10 and "".join(rows["text"]) == text
    assert rows[small_parts.PART_COLUMN] == [False] + [True] * (len(rows) - 1)
    ds = build(tok, tmp_path, text_files=tmp_path / "big.txt", max_length=40, stride=17, validation_fraction=0.1,
               streaming=streaming)
    cut = int(0.9 * len(text))
    for split, part in (("train", text[:cut]), ("validation", text[cut:])):
        windows = [list(r["input_ids"]) for r in ds[split]]
        assert windows == book_windows(tik.encode(part, allowed_special={EOT}), 40, 17)[0], split


@pytest.mark.parametrize("streaming", [False, True])
def test_long_files_in_parts_are_joined_with_endoftext_only_between_files(tok, tik, tmp_path, small_parts,
                                                                         streaming):
    """Several files, some spanning many rows: `<|endoftext|>` goes between files, never between a file's parts,
    and the by-document split counts files, not rows."""
    texts = [make_text(n, seed=20 + n) for n in (400, 30, 700, 0, 350, 60)]
    for i, t in enumerate(texts):
        (tmp_path / f"doc{i}.txt").write_text(t, encoding="utf-8")
    ds = build(tok, tmp_path, text_files=tmp_path, max_length=32, stride=32, validation_fraction=0.34,
               streaming=streaming)
    for split, part in (("train", texts[:3]), ("validation", texts[3:])):
        windows = [list(r["input_ids"]) for r in ds[split]]
        assert windows == book_windows(joined_ids(tik, part), 32, 32)[0], split


def test_text_parts_cut_only_where_ids_stay_the_same(small_parts, tmp_path):
    """Rows end at the first place past PART_CHARS that is before a space or after a newline between two non-space
    characters. With no such place within 8 parts' worth, at the first one before; with none at all, anywhere."""
    text = "x" * 1000 + " " + "y" * 50 + "\n" + "z" * 3000
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    parts = [r["text"] for r in small_parts._text_parts([tmp_path / "a.txt"], 300)]
    assert [len(p) for p in parts] == [1000, 52, 2548, 452]
    assert "".join(parts) == text and parts[1] == " " + "y" * 50 + "\n"


def test_explicit_validation_file_wins(tok, tik, tmp_path):
    texts = docs(4)
    for i, t in enumerate(texts):
        (tmp_path / f"{i}.txt").write_text(t, encoding="utf-8")
    files = [tmp_path / f"{i}.txt" for i in range(3)]
    a = build(tok, tmp_path, text_files=files, validation_file=tmp_path / "3.txt", max_length=8, stride=8,
              validation_fraction=0.5)
    b = build(tok, tmp_path, text_files={"train": files, "validation": [tmp_path / "3.txt"]}, max_length=8, stride=8)
    for ds in (a, b):
        assert_book(ds["train"], joined_ids(tik, texts[:3]), 8, 8)
        assert_book(ds["validation"], joined_ids(tik, texts[3:]), 8, 8)


def write_table(path, texts, fmt):
    rows = [{"id": i, "content": t} for i, t in enumerate(texts)]
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif fmt == "csv":
        import csv

        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "content"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_table_formats_with_a_text_column(tok, tik, tmp_path, fmt):
    texts = docs(20, seed=7)
    texts[5] = 'quotes " and, commas\nand lines'
    write_table(tmp_path / f"data.{fmt}", texts, fmt)
    ds = build(tok, tmp_path, text_files=tmp_path / f"data.{fmt}", text_column="content", max_length=12, stride=5)
    assert_book(ds["train"], joined_ids(tik, texts[:18]), 12, 5)
    assert_book(ds["validation"], joined_ids(tik, texts[18:]), 12, 5)


def test_hub_dataset_goes_to_load_dataset_and_uses_its_validation_split(tok, tik, tmp_path, monkeypatch):
    texts = docs(6, seed=3)
    calls = []
    fake = datasets.DatasetDict({name: datasets.Dataset.from_dict({"text": part}) for name, part in
                                 (("train", texts[:4]), ("validation", texts[4:5]), ("test", texts[5:]))})

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return fake

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    ds = build(tok, tmp_path, dataset_name="wikitext", dataset_config_name="wikitext-2-raw-v1", max_length=8, stride=4)
    assert calls == [(("wikitext", "wikitext-2-raw-v1"), {"cache_dir": str(tmp_path / "cache"), "streaming": False})]
    assert list(ds) == ["train", "validation"]
    assert_book(ds["train"], joined_ids(tik, texts[:4]), 8, 4)
    assert_book(ds["validation"], joined_ids(tik, texts[4:5]), 8, 4)


def test_hub_dataset_offline_fails_at_the_loader(tok, tmp_path):
    with pytest.raises(ConnectionError, match="wikitext"):
        build(tok, tmp_path, dataset_name="wikitext", dataset_config_name="wikitext-2-raw-v1", max_length=8, stride=4)


def test_default_corpus_is_pythons_help_topics_as_prose(tok, tik, tmp_path):
    """Every word of the help topics stays, in order; the indentation, line wraps, space runs, heading underlines,
    dunder underscores and code quotes go: a topic is one line of single-spaced words."""
    from pydoc_data.topics import topics

    from hf_gpt.sources import default_corpus_texts

    texts = default_corpus_texts()
    assert len(texts) == len(topics)
    for raw, text in zip(topics.values(), texts):
        kept = [line for line in raw.splitlines() if not re.fullmatch(r"\s*([*=~^-])\1{3,}\s*", line)]
        assert text.split() == re.sub(r'\b__|__\b|"', "", " ".join(kept)).split()
        assert text == " ".join(text.split())
    ds = build(tok, tmp_path, max_length=256, stride=256)
    n_train = int(0.9 * len(texts))
    train_ids, val_ids = joined_ids(tik, texts[:n_train]), joined_ids(tik, texts[n_train:])
    assert len(train_ids) + len(val_ids) > 90_000
    assert len(ds["train"]) == count_windows(len(train_ids), 256, 256)
    assert ds["validation"]["input_ids"] == book_windows(val_ids, 256, 256)[0]
    assert ds["train"][len(ds["train"]) - 1]["shift_labels"] == book_windows(train_ids, 256, 256)[1][-1]


def test_logs_tokens_and_windows_per_split(tok, one_doc, tmp_path, caplog):
    path, _ = one_doc
    with caplog.at_level(logging.INFO, logger="hf_gpt"):
        build(tok, tmp_path, text_files=path, max_length=64, stride=64)
    lines = [r.getMessage() for r in caplog.records if r.name == "hf_gpt.data"]
    assert [line.split(":")[0] for line in lines[-2:]] == ["train", "validation"]
    assert "tokens ->" in lines[-1] and "windows of 64 (stride 64)" in lines[-1]


# --- streaming --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["one_txt", "many_jsonl", "default"])
def test_streaming_yields_the_same_windows(tok, tmp_path, monkeypatch, source):
    monkeypatch.setattr(windows, "ENCODE_PART_CHARS", 101)
    if source == "one_txt":
        (tmp_path / "a.txt").write_text(make_text(800, seed=4), encoding="utf-8")
        kwargs = {"text_files": tmp_path / "a.txt"}
    elif source == "many_jsonl":
        write_table(tmp_path / "d.jsonl", docs(15, seed=9), "jsonl")
        kwargs = {"text_files": tmp_path / "d.jsonl", "text_column": "content"}
    else:
        kwargs = {}
    max_length, stride = (48, 19) if source != "default" else (256, 256)
    mapped = build(tok, tmp_path, max_length=max_length, stride=stride, **kwargs)
    streamed = build(tok, tmp_path, max_length=max_length, stride=stride, streaming=True, **kwargs)
    assert isinstance(streamed, datasets.IterableDatasetDict)
    for split in ("train", "validation"):
        rows = list(streamed[split])
        assert [list(r["input_ids"]) for r in rows] == mapped[split]["input_ids"]
        assert [list(r["shift_labels"]) for r in rows] == mapped[split]["shift_labels"]


def test_streaming_feeds_a_dataloader(tok, one_doc, tmp_path):
    from transformers import default_data_collator

    path, ids = one_doc
    streamed = build(tok, tmp_path, text_files=path, max_length=32, stride=32, validation_fraction=0, streaming=True)
    batch = next(iter(torch.utils.data.DataLoader(streamed["train"], batch_size=3, collate_fn=default_data_collator)))
    assert batch["input_ids"].dtype == torch.long
    assert batch["shift_labels"].tolist() == book_windows(ids, 32, 32)[1][:3]


@pytest.mark.parametrize("split", ["many_files", "long_file_train", "long_file_validation"])
def test_streaming_resumes_at_a_window_without_reading_from_the_start(tok, tmp_path, monkeypatch, split):
    """A pass stopped after k windows resumes at window k from a noted position: the same windows follow, and only
    the rows from that note on are read again. One long file is one document in ~40 rows, cut by the book's
    character split: the cut row is found again after a resume."""
    from hf_gpt import sources, streaming

    monkeypatch.setattr(streaming, "NOTE_EVERY_TOKENS", 64)
    if split == "many_files":
        for i, t in enumerate(docs(40, seed=3)):
            (tmp_path / f"doc{i:02d}.txt").write_text(t, encoding="utf-8")
        kwargs = {"text_files": tmp_path, "validation_fraction": 0}
    else:
        monkeypatch.setattr(sources, "PART_CHARS", 60)
        (tmp_path / "long.txt").write_text(make_text(500 if split == "long_file_train" else 4000, seed=3))
        kwargs = {"text_files": tmp_path / "long.txt", "validation_fraction": 0.1}
    train = build(tok, tmp_path, max_length=16, stride=12, streaming=True, **kwargs)[
        "validation" if split.endswith("validation") else "train"]
    full = [list(r["input_ids"]) for r in train]
    k = int(0.7 * len(full))
    it = iter(train)
    for _ in range(k + 5):  # the generator runs ahead of what was trained, as a prefetching DataLoader does
        next(it)
    point = streaming.resume_point(train, k)
    assert point is not None and point["end"] <= k * 12 and point["source_state"] is not None
    json.dumps(point)  # goes into a checkpoint as JSON
    del it
    reads = streaming.rows_read(train)
    assert streaming.resume_from(train, point)
    resumed = [list(r["input_ids"]) for r in train]
    assert resumed == full[k:]
    assert 0 < streaming.rows_read(train) - reads <= 40 - int(0.6 * 40)  # not the first 60% again
    assert [list(r["input_ids"]) for r in train] == full  # the pass after starts from the beginning again
    it = iter(train)
    for _ in range(5):
        next(it)
    assert streaming.resume_point(train, len(full) + 3)["window"] == 3  # a later pass: the window within it



def test_streaming_resumes_through_a_dataloader_and_refuses_its_workers(tok, tmp_path, monkeypatch):
    """Read through a DataLoader in the main process (as pretraining reads it), a pass notes the same positions and
    takes the pending resume point. A worker process is refused: the notes live where the split was built."""
    from transformers import default_data_collator
    from hf_gpt import streaming

    monkeypatch.setattr(streaming, "NOTE_EVERY_TOKENS", 64)
    for i, t in enumerate(docs(40, seed=3)):
        (tmp_path / f"doc{i:02d}.txt").write_text(t, encoding="utf-8")
    train = build(tok, tmp_path, text_files=tmp_path, max_length=16, stride=12, validation_fraction=0,
                  streaming=True)["train"]
    full = [list(r["input_ids"]) for r in train]
    k = int(0.7 * len(full)) // 4 * 4
    it = iter(train)
    for _ in range(k + 5):
        next(it)
    expected = streaming.resume_point(train, k)
    del it

    def loaded(num_workers=0):
        loader = torch.utils.data.DataLoader(train, batch_size=4, num_workers=num_workers,
                                             collate_fn=default_data_collator)
        return (w for batch in loader for w in batch["input_ids"].tolist())

    it = loaded()
    for _ in range(k + 8):
        next(it)
    assert streaming.resume_point(train, k) == expected
    del it
    reads = streaming.rows_read(train)
    assert streaming.resume_from(train, expected)
    assert list(loaded()) == full[k:]
    assert streaming.rows_read(train) - reads <= 40 - int(0.6 * 40)
    assert list(loaded()) == full  # the point was taken: this pass starts from the beginning
    with pytest.raises(RuntimeError, match="use num_workers=0"):
        list(loaded(num_workers=1))

# --- caching ----------------------------------------------------------------------------------------------------

def test_second_identical_call_tokenizes_nothing(tok, one_doc, tmp_path, monkeypatch):
    path, _ = one_doc
    calls = []
    encode = windows.Encoder.encode

    def counting(self, texts):
        calls.append(len(texts))
        return encode(self, texts)

    monkeypatch.setattr(windows.Encoder, "encode", counting)
    first = build(tok, tmp_path, text_files=path, max_length=64, stride=32)
    assert calls
    calls.clear()
    second = build(tok, tmp_path, text_files=path, max_length=64, stride=32)
    assert calls == []
    assert second["train"].cache_files == first["train"].cache_files
    assert second["train"]["input_ids"] == first["train"]["input_ids"]
    build(tok, tmp_path, text_files=path, max_length=64, stride=31)
    assert calls == []  # a new stride re-windows the cached tokens
    build(tok, tmp_path, text_files=path, max_length=64, stride=32, validation_fraction=0.2)
    assert calls  # a new split re-tokenizes


# --- bad input, all before tokenizing ---------------------------------------------------------------------------

@pytest.fixture
def no_tokenizing(monkeypatch):
    def refuse(self, texts):
        raise AssertionError("tokenized before rejecting bad input")

    monkeypatch.setattr(windows.Encoder, "encode", refuse)


def test_missing_file(tok, tmp_path, no_tokenizing):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        build(tok, tmp_path, text_files=[tmp_path / "nope.txt"], max_length=8, stride=8)
    (tmp_path / "ok.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="missing_val.txt"):
        build(tok, tmp_path, text_files=tmp_path / "ok.txt", validation_file=tmp_path / "missing_val.txt",
              max_length=8, stride=8)


@pytest.mark.parametrize("fmt, streaming", [("txt", False), ("txt", True), ("jsonl", False), ("csv", False)])
def test_non_utf8_file_names_file_and_byte(tok, tmp_path, no_tokenizing, fmt, streaming):
    head = {"txt": "naïve café\n", "jsonl": '{"id": 0, "content": "naïve café', "csv": "id,content\n0,naïve café"}[fmt]
    tail = {"txt": "", "jsonl": '"}\n', "csv": "\n"}[fmt]
    write_table(tmp_path / f"good.{fmt}", ["fine text"], fmt) if fmt != "txt" else (
        tmp_path / "good.txt").write_text("fine text", encoding="utf-8")
    (tmp_path / f"latin.{fmt}").write_bytes(head.encode("utf-8") + "déjà vu".encode("latin-1") + tail.encode())
    offset = len(head.encode("utf-8")) + 1
    with pytest.raises(ValueError, match=rf"latin\.{fmt}' is not UTF-8 text: byte {offset} cannot be decoded"):
        build(tok, tmp_path, text_files=[tmp_path / f"good.{fmt}", tmp_path / f"latin.{fmt}"], max_length=8,
              stride=8, streaming=streaming, text_column="content" if fmt != "txt" else "text")


def test_empty_corpus(tok, tmp_path, no_tokenizing):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "also.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="corpus is empty"):
        build(tok, tmp_path, text_files=[tmp_path / "empty.txt", tmp_path / "also.txt"], max_length=8, stride=8)


@pytest.mark.parametrize("kwargs, message", [
    ({"stride": 0}, "stride must be a positive int"),
    ({"stride": -3}, "stride must be a positive int"),
    ({"max_length": 0}, "max_length must be a positive int"),
    ({"max_length": 2.5}, "max_length must be a positive int"),
    ({"max_length": 300, "context_length": 256}, r"max_length=300 is longer than the model's context \(256"),
    ({"validation_fraction": 1.0}, r"validation_fraction must be in \[0, 1\)"),
])
def test_bad_window_arguments(tok, tmp_path, no_tokenizing, kwargs, message):
    (tmp_path / "a.txt").write_text("some text", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        build(tok, tmp_path, text_files=tmp_path / "a.txt", **{"max_length": 8, "stride": 8, **kwargs})


def test_context_length_from_a_model_config(tok, tmp_path, no_tokenizing):
    from hf_gpt import GPTConfig

    (tmp_path / "a.txt").write_text("some text", encoding="utf-8")
    with pytest.raises(ValueError, match=r"context \(128 tokens\): lower max_length to at most 128"):
        build(tok, tmp_path, text_files=tmp_path / "a.txt", max_length=129, stride=8,
              context_length=GPTConfig(context_length=128))


def test_unknown_text_column_lists_the_columns(tok, tmp_path, no_tokenizing):
    write_table(tmp_path / "d.jsonl", docs(3), "jsonl")
    with pytest.raises(ValueError, match=r"no column 'text'; its columns are \['id', 'content'\]"):
        build(tok, tmp_path, text_files=tmp_path / "d.jsonl", max_length=8, stride=8)
    with pytest.raises(ValueError, match="column 'id' holds"):
        build(tok, tmp_path, text_files=tmp_path / "d.jsonl", text_column="id", max_length=8, stride=8)


def test_unknown_format_and_two_sources(tok, tmp_path, no_tokenizing):
    (tmp_path / "a.docx").write_bytes(b"PK")
    with pytest.raises(ValueError, match="unknown format"):
        build(tok, tmp_path, text_files=tmp_path / "a.docx", max_length=8, stride=8)
    with pytest.raises(ValueError, match="not both"):
        build(tok, tmp_path, text_files=tmp_path / "a.docx", dataset_name="wikitext", max_length=8, stride=8)


def test_too_small_validation_split_says_what_to_lower(tok, tik, tmp_path):
    text = make_text(400, seed=2)
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    n_val = len(tik.encode(text[int(0.9 * len(text)):]))
    with pytest.raises(ValueError, match=rf"the validation split holds {n_val} tokens, fewer than max_length \+ 1 = "
                                         rf"201 .*lower max_length to at most {n_val - 1}, or raise "
                                         rf"validation_fraction \(now 0.1\)"):
        build(tok, tmp_path, text_files=tmp_path / "a.txt", max_length=200, stride=200)


# --- the book's DataLoader --------------------------------------------------------------------------------------

def test_create_dataloader_matches_the_books(tok, tik, book_reference):
    from torch.utils.data import DataLoader, Dataset

    class GPTDatasetV1(Dataset):
        def __init__(self, txt, tokenizer, max_length, stride):
            self.input_ids, self.target_ids = [], []
            token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
            for i in range(0, len(token_ids) - max_length, stride):
                self.input_ids.append(torch.tensor(token_ids[i:i + max_length]))
                self.target_ids.append(torch.tensor(token_ids[i + 1: i + max_length + 1]))

        def __len__(self):
            return len(self.input_ids)

        def __getitem__(self, idx):
            return self.input_ids[idx], self.target_ids[idx]

    text = THE_VERDICT.read_text(encoding="utf-8")
    for tokenizer, max_length, stride, shuffle, drop_last in [(tok, 4, 1, False, True), (tok, 256, 128, True, True),
                                                               (tik, 64, 100, True, False)]:
        torch.manual_seed(123)
        book = list(DataLoader(GPTDatasetV1(text, tik, max_length, stride), batch_size=8, shuffle=shuffle,
                               drop_last=drop_last))
        torch.manual_seed(123)
        ours = list(create_dataloader(text, tokenizer, batch_size=8, max_length=max_length, stride=stride,
                                      shuffle=shuffle, drop_last=drop_last))
        assert len(ours) == len(book)
        for (x, y), (bx, by) in zip(ours, book):
            assert x.dtype == y.dtype == torch.long
            assert torch.equal(x, bx) and torch.equal(y, by)
    first = next(iter(create_dataloader(text, tok, batch_size=1, max_length=4, stride=1, shuffle=False)))
    assert first[0].tolist() == [[40, 367, 2885, 1464]] and first[1].tolist() == [[367, 2885, 1464, 1807]]


def test_trainer_evaluates_the_books_loss(tok, one_doc, tmp_path):
    """The rows go to the Trainer as they are; `label_names=["shift_labels"]` makes it report the loss."""
    from transformers import Trainer, TrainingArguments

    from hf_gpt import GPTConfig, GPTForCausalLM

    path, ids = one_doc
    ds = build(tok, tmp_path, text_files=path, max_length=32, stride=32, validation_fraction=0)
    torch.manual_seed(0)
    model = GPTForCausalLM(GPTConfig(vocab_size=50257, context_length=32, emb_dim=16, n_heads=2, n_layers=1,
                                     drop_rate=0.0, qkv_bias=False))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_eval_batch_size=len(ds["train"]),
                             label_names=["shift_labels"], report_to=[], use_cpu=True)
    metrics = Trainer(model=model, args=args, eval_dataset=ds["train"]).evaluate()
    inputs, targets = map(torch.tensor, book_windows(ids, 32, 32))
    with torch.no_grad():
        logits = model.eval()(inputs).logits
    book_loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    assert metrics["eval_loss"] == pytest.approx(book_loss.item(), rel=1e-5)


def test_num_proc_gives_the_same_windows(tok, tmp_path):
    texts = docs(30, seed=11)
    write_table(tmp_path / "d.jsonl", texts, "jsonl")
    kwargs = dict(text_files=tmp_path / "d.jsonl", text_column="content", max_length=24, stride=10)
    one = build(tok, tmp_path, **kwargs)
    two = build(tok, tmp_path, cache_dir=str(tmp_path / "cache2"), num_proc=2, **kwargs)
    for split in ("train", "validation"):
        assert two[split]["input_ids"] == one[split]["input_ids"]
        assert two[split]["shift_labels"] == one[split]["shift_labels"]
    assert_book(two["train"], joined_ids(tiktoken_gpt2(), texts[:27]), 24, 10)


def test_memory_bounds_keep_the_windows(tok, tik, tmp_path, monkeypatch):
    """Byte-sized tokenizing batches (here one document each) give the same windows."""
    texts = docs(12, seed=5)
    for i, t in enumerate(texts):
        (tmp_path / f"doc{i:02d}.txt").write_text(t, encoding="utf-8")
    monkeypatch.setattr(data, "BATCH_BYTES", 1)
    ds = build(tok, tmp_path, text_files=tmp_path, max_length=16, stride=5)
    assert_book(ds["train"], joined_ids(tik, texts[:10]), 16, 5)
    assert_book(ds["validation"], joined_ids(tik, texts[10:]), 16, 5)

