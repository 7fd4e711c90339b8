"""Streamed splits (`build_lm_datasets(streaming=True)`), and resuming one where training stopped without reading
the stream again from its start.

The Trainer resumes an `IterableDataset` by iterating it again and dropping the batches already trained on: for a
streamed corpus that re-reads and re-tokenizes everything up to the checkpoint. Instead, while the window
generator below runs, it notes every few thousand tokens where it stands: the source's own
`state_dict()` (datasets' resumable position: which file/shard and which row) before the next document, and the
token count and separator state at that point. At a checkpoint, `resume_point(dataset, windows_trained)` picks the
last note at or before the first untrained window; on resume, `resume_from(dataset, point)` makes the next pass
start there: the source jumps to that document, and only the tokens from it to the window are tokenized again.

Notes live in the process that iterates (the main process: `dataloader_num_workers=0`, and with several
processes accelerate's default `dispatch_batches` makes rank 0 read for all). In a DataLoader worker process they
are out of reach, and resuming falls back to the Trainer's skipping.
"""

import collections
import copy
import itertools
import threading

import numpy as np

from .data import _texts, _too_few_tokens, _window_features, _window_view, book_cut
from .sources import PART_COLUMN

STATE_FILE = "stream_position.json"  # in a checkpoint folder
NOTE_EVERY_TOKENS = 8192  # a note at most this often: resuming re-tokenizes at most this plus one document
KEEP_NOTES = 4096  # how far (in notes) the trained position may lag the generator (prefetched batches)

_cursors = {}
_ids = itertools.count()
_lock = threading.Lock()


class StreamCursor:
    """The notes of the live pass over one streamed split, and where its next pass is to start."""

    def __init__(self, stride):
        self.stride, self.resume, self.pass_windows, self.reads = stride, None, None, 0
        self.runs = []  # [(notes deque, state dict)] of passes, newest last

    def start_run(self):
        """Called by the generator as a pass starts: returns (resume point or None, the run's record)."""
        point, self.resume = self.resume, None
        run = {"notes": collections.deque(maxlen=KEEP_NOTES), "open": True, "last_end": None, "first_window": 0}
        start = {"window": 0, "end": 0, "started": False, "source_state": None, "row": 0, **(point or {})}
        run["first_window"] = start["window"]
        run["notes"].append({k: start[k] for k in ("end", "started", "source_state", "row")})  # where it begins
        run["last_end"] = start["end"]
        with _lock:
            self.runs = [r for r in self.runs if r["open"]][-3:] + [run]
        return point, run

    def note(self, run, end, started, source, row):
        """After a row: the position before the next one (row `row` of the source), every NOTE_EVERY_TOKENS tokens
        at most."""
        if run["last_end"] is None or end - run["last_end"] >= NOTE_EVERY_TOKENS:
            run["notes"].append({"end": int(end), "started": bool(started), "source_state": source.state_dict(),
                                 "row": int(row)})
            run["last_end"] = end

    def end_run(self, run, n_windows, exhausted):
        run["open"] = False
        if exhausted:
            self.pass_windows = n_windows

    def point_for(self, windows_trained):
        """Where a pass must start for its first window to be the first untrained one, or None if unknown."""
        window = windows_trained % self.pass_windows if self.pass_windows else windows_trained
        start = window * self.stride
        for run in reversed(self.runs):
            if not run["open"] or run["first_window"] > window:
                continue
            best = None
            for n in run["notes"]:
                if n["end"] <= start:
                    best = n
                else:
                    break
            if best is not None:
                return {"window": window, **best}
        return None


def new_cursor(stride):
    key = f"stream-{next(_ids)}"
    _cursors[key] = StreamCursor(stride)
    return key


def cursor(key):
    return _cursors.get(key)


def _cursor_of(dataset):
    key = getattr(dataset, "_hf_gpt_cursor", None)
    return _cursors.get(key) if key else None


def resume_point(dataset, windows_trained):
    """A JSON-able point to resume `dataset` (a split from `build_lm_datasets(streaming=True)`) after
    `windows_trained` windows, or None when this process holds no note for it."""
    c = _cursor_of(dataset)
    return c.point_for(windows_trained) if c is not None else None


def resume_from(dataset, point):
    """Makes the next pass over `dataset` start at `point` (from `resume_point`); True when it will."""
    c = _cursor_of(dataset)
    if c is None or point is None:
        return False
    c.resume = point
    return True


def reads_since_start(dataset):
    """Documents the generator has read from the source since the cursor was made (for tests and logs)."""
    c = _cursor_of(dataset)
    return c.reads if c is not None else None


def resume_from_checkpoint(dataset, checkpoint):
    """Sets `dataset` to continue from the position saved in `checkpoint`; the number of windows trained, or None
    when the checkpoint holds no position (then the Trainer's skipping re-reads the stream)."""
    import json
    from pathlib import Path

    path = Path(checkpoint) / STATE_FILE
    if _cursor_of(dataset) is None or not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return saved["windows_trained"] if resume_from(dataset, saved["point"]) else None


# ---------------------------------------------------------------------------------------------------------------
# The streamed windows: the same windows from a generator that carries the stream's tail between documents.


def _stream_windows(source, encoder, text_column, char_cut, max_length, stride, split, validation_fraction,
                    cursor_key=None):
    """Yields window rows; `buf` holds the stream from token `buf_start` on: at most one window's worth. Reads the
    source a document at a time so that the cursor (hf_gpt.streaming) can note resumable positions."""
    cur = cursor(cursor_key) if cursor_key else None
    try:
        source = copy.deepcopy(source)  # its own iteration state: another pass (an evaluation) may run meanwhile
    except Exception:  # a source that cannot be copied is read as it is, without notes (no resume position)
        cur = None
    point, run = cur.start_run() if cur is not None else (None, None)
    buf, buf_start, end, next_start, started = np.empty(0, dtype=np.int32), 0, 0, 0, False
    source_state, row_index = None, 0  # the source's position before the next row; None = its start
    if point is not None:
        row_index = point.get("row", 0)
        source_state = point["source_state"]
        if source_state is not None:
            source.load_state_dict(source_state)
        buf_start = end = point["end"]
        started, next_start = point["started"], point["window"] * stride
    eos = np.array([encoder.eos_id], dtype=np.int32)
    n_windows, exhausted = next_start // stride, False
    try:
        for row in source:
            if run is not None:
                cur.reads += 1
            first = True
            for _, ids in encoder.iter_encoded(_texts([row[text_column]], char_cut, [row_index])):
                if first and started and not row.get(PART_COLUMN):
                    ids = np.concatenate([eos, ids])
                first, started = False, True
                buf, end = np.concatenate([buf, ids]), end + len(ids)
                count = max(0, (end - max_length - 1 - next_start) // stride + 1)
                for w in _window_view(buf, next_start - buf_start, count, max_length, stride).astype(np.int64):
                    yield {"input_ids": w[:-1], "shift_labels": w[1:]}
                n_windows += count
                next_start += count * stride
                keep_from = min(next_start, end)
                buf, buf_start = buf[keep_from - buf_start:], keep_from
            row_index += 1
            if run is not None:
                cur.note(run, end, started, source, row_index)
        exhausted = True
    finally:
        if run is not None:
            cur.end_run(run, n_windows, exhausted)
    if end < max_length + 1:
        raise _too_few_tokens(split, end, max_length, validation_fraction)


def _scan_documents(source, text_column):
    """The rows where the stream's documents start, and while it holds one document, its rows' lengths in
    characters (the book's split needs them)."""
    import array

    parts = PART_COLUMN in (source.column_names or ())
    starts, lengths = array.array("q"), []
    for i, row in enumerate(source.select_columns([text_column, PART_COLUMN] if parts else [text_column])):
        if not (parts and row[PART_COLUMN]):
            starts.append(i)
        if len(starts) == 1:
            lengths.append(len(row[text_column] or ""))
    return starts, lengths


def build_streaming(splits, encoder, text_column, max_length, stride, validation_fraction, verbose):
    import datasets

    train = splits["train"]
    if "validation" in splits:
        parts = {"train": (train, None), "validation": (splits["validation"], None)}
    elif validation_fraction == 0:
        parts = {"train": (train, None)}
    else:
        starts, lengths = _scan_documents(train, text_column)  # one pass, no tokenizing
        if len(starts) == 0:
            raise ValueError("the corpus is empty: it holds no documents")
        if len(starts) == 1:
            row, offset = book_cut(lengths, 1 - validation_fraction)
            parts = {"train": (train.take(row + 1), ("head", row, offset)),
                     "validation": (train.skip(row), ("tail", 0, offset))}
        else:
            n_train = min(max(int((1 - validation_fraction) * len(starts)), 1), len(starts) - 1)
            parts = {"train": (train.take(starts[n_train]), None), "validation": (train.skip(starts[n_train]), None)}
    out = datasets.IterableDatasetDict()
    for split, (source, char_cut) in parts.items():
        key = new_cursor(stride)
        out[split] = datasets.IterableDataset.from_generator(
            _stream_windows, features=_window_features(max_length),
            gen_kwargs={"source": source, "encoder": encoder, "text_column": text_column, "char_cut": char_cut,
                        "max_length": max_length, "stride": stride, "split": split,
                        "validation_fraction": validation_fraction, "cursor_key": key})
        out[split]._hf_gpt_cursor = key  # for hf_gpt.streaming.resume_point / resume_from
        if verbose:
            print(f"{split}: streaming windows of {max_length} (stride {stride}); counts are known once iterated")
    return out
