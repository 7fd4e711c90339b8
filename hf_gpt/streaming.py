"""Streamed splits (`build_lm_datasets(streaming=True)`): the book's windows from a generator over the source.
It notes the source's `state_dict()` as it goes, so a resume starts there instead of re-reading the stream."""

import array
import collections
import copy
import json
import logging
import sys
from pathlib import Path

import numpy as np

from .sources import PART_COLUMN
from .windows import cut_texts, plan_splits, too_few_tokens, window_features, window_view

logger = logging.getLogger(__name__)

STATE_FILE = "stream_position.json"  # in a checkpoint folder
NOTE_EVERY_TOKENS = 8192  # a note at most this often: a resume tokenizes again at most this plus one row
KEEP_NOTES = 4096  # how far (in notes) the trained position may lag the generator (prefetched batches)
START = {"end": 0, "started": False, "source_state": None, "row": 0}  # a note: tokens so far, a document begun,
# the source's state_dict before the next row (None: its start), that row's index


class StreamNotes:
    """Positions in one streamed split where a pass can start, and the point the next pass starts at."""

    def __init__(self, stride):
        self.stride = stride
        self.notes = collections.deque(maxlen=KEEP_NOTES)
        self.pass_windows = None  # windows in a whole pass, once one has ended
        self.next_point = None  # set by `resume_from`, taken by the next pass
        self.rows_read = 0  # rows read from the source (for tests and logs)

    def point(self, windows_trained):
        """Where a pass must start for its first window to be the first untrained one, or None if unknown."""
        window = windows_trained % self.pass_windows if self.pass_windows else windows_trained
        before = [n for n in self.notes if n["end"] <= window * self.stride]
        return {"window": window, **max(before, key=lambda n: n["end"])} if before else None


def resume_point(dataset, windows_trained):
    """A JSON-able point to resume a streamed split after `windows_trained` windows, or None when none is noted."""
    notes = getattr(dataset, "_hf_gpt_notes", None)
    return notes.point(windows_trained) if notes is not None else None


def resume_from(dataset, point):
    """Makes the next pass over `dataset` start at `point` (from `resume_point`); True when it will."""
    notes = getattr(dataset, "_hf_gpt_notes", None)
    if notes is not None and point is not None:
        notes.next_point = point
    return notes is not None and point is not None


def resume_from_checkpoint(dataset, checkpoint):
    """Sets `dataset` to continue from `checkpoint`'s position; the windows trained, or None when it holds none."""
    path = Path(checkpoint) / STATE_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return saved["windows_trained"] if resume_from(dataset, saved["point"]) else None


def rows_read(dataset):
    """Rows the split's passes have read from its source (for tests and logs)."""
    return getattr(getattr(dataset, "_hf_gpt_notes", None), "rows_read", None)


def _stream_windows(source, encoder, text_column, char_cut, max_length, stride, split, validation_fraction, notes):
    """Window rows from `notes.next_point` (else the start), noting positions between the source's rows."""
    if "torch" in sys.modules:
        from torch.utils.data import get_worker_info

        if get_worker_info() is not None:
            raise RuntimeError("a streamed split is read in the process that built it, where its resume positions "
                               "are noted: use num_workers=0")
    point, notes.next_point = notes.next_point or {"window": 0, **START}, None
    source = copy.deepcopy(source)  # its own iteration state: another pass (an evaluation) may run meanwhile
    if point["source_state"] is not None:
        source.load_state_dict(point["source_state"])
    notes.notes.append({k: point[k] for k in START})
    end = noted = buf_start = point["end"]
    started, row_index, next_start = point["started"], point["row"], point["window"] * stride
    buf, eos = np.empty(0, dtype=np.int32), np.array([encoder.eos_id], dtype=np.int32)
    for row in source:
        notes.rows_read += 1
        first = True
        for _, ids in encoder.iter_encoded(cut_texts([row[text_column]], char_cut, [row_index])):
            if first and started and not row.get(PART_COLUMN):
                ids = np.concatenate([eos, ids])
            first, started = False, True
            buf, end = np.concatenate([buf, ids]), end + len(ids)
            count = max(0, (end - max_length - 1 - next_start) // stride + 1)
            for w in window_view(buf, next_start - buf_start, count, max_length, stride).astype(np.int64):
                yield {"input_ids": w[:-1], "shift_labels": w[1:]}
            next_start += count * stride
            keep_from = min(next_start, end)
            buf, buf_start = buf[keep_from - buf_start:], keep_from
        row_index += 1
        if end - noted >= NOTE_EVERY_TOKENS:
            notes.notes.append({"end": end, "started": started, "source_state": source.state_dict(),
                                "row": row_index})
            noted = end
    if end < max_length + 1:
        raise too_few_tokens(split, end, max_length, validation_fraction)
    notes.pass_windows = next_start // stride


def _scan_documents(source, text_column):
    """The rows where documents start, and for a lone document its rows' lengths (the book's split needs them)."""
    continued = PART_COLUMN in (source.column_names or ())
    starts, lengths = array.array("q"), []
    for i, row in enumerate(source.select_columns([text_column, PART_COLUMN] if continued else [text_column])):
        if not (continued and row[PART_COLUMN]):
            starts.append(i)
        if len(starts) == 1:
            lengths.append(len(row[text_column] or ""))
    return starts, lengths


def build_streaming(splits, encoder, text_column, max_length, stride, validation_fraction):
    """`build_lm_datasets(streaming=True)`: the same splits as the prepared path, as `IterableDataset`s."""
    import datasets

    plan = plan_splits(splits, validation_fraction, lambda train: _scan_documents(train, text_column))
    out = datasets.IterableDatasetDict()
    for split, (source, char_cut) in plan.items():
        notes = StreamNotes(stride)
        kwargs = {"source": source, "encoder": encoder, "text_column": text_column, "char_cut": char_cut,
                  "max_length": max_length, "stride": stride, "split": split,
                  "validation_fraction": validation_fraction}
        next(_stream_windows(**kwargs, notes=StreamNotes(stride)), None)  # a split too short for a window fails now
        out[split] = datasets.IterableDataset.from_generator(
            _stream_windows, features=window_features(max_length), gen_kwargs={**kwargs, "notes": notes})
        out[split]._hf_gpt_notes = notes  # for resume_point / resume_from
        logger.info(f"{split}: streaming windows of {max_length} (stride {stride}); counts are known once iterated")
    return out
