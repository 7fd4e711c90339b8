"""Streamed splits (`build_lm_datasets(streaming=True)`), and resuming one where training stopped without reading
the stream again from its start.

The Trainer resumes an `IterableDataset` by iterating it again and dropping the batches already trained on: for a
streamed corpus that re-reads and re-tokenizes everything up to the checkpoint. Instead, while the window
generator below runs, it notes every few thousand tokens where it stands: the source's own
`state_dict()` (datasets' resumable position: which file/shard and which row) before the next document, and the
token count and separator state at that point. At a checkpoint, `resume_point(dataset, windows_trained)` picks the
last note at or before the first untrained window; on resume, `resume_from(dataset, point)` makes the next pass
start there: the source jumps to that document, and only the tokens from it to the window are tokenized again.

Notes live in the process that made the datasets (the main process; with several processes accelerate's default
`dispatch_batches` has rank 0 read for all). A pass in a DataLoader worker (`dataloader_num_workers=1`; each pass
and each evaluation forks a fresh one) cannot reach them: it writes its records (its start, each note, its end) to
files in the cursor's temporary folder, and the main process reads them back when it needs a point, so the saved
position is the one a run without workers saves. The pending resume point waits in that folder too: the first pass
to start, in whichever process, takes it. A split is one shard, so one worker reads it; with more, datasets would
also give that worker only its share of the source's files, which `_check_one_worker` refuses.
"""

import atexit
import collections
import copy
import itertools
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .sources import PART_COLUMN
from .windows import book_cut, cut_texts, too_few_tokens, window_features, window_view

STATE_FILE = "stream_position.json"  # in a checkpoint folder
NOTE_EVERY_TOKENS = 8192  # a note at most this often: resuming re-tokenizes at most this plus one document
KEEP_NOTES = 4096  # how far (in notes) the trained position may lag the generator (prefetched batches)
RESUME_FILE = "resume.json"  # in a cursor's folder: the point the next pass starts at, until a pass takes it

_cursors = {}
_ids = itertools.count()
_lock = threading.Lock()


class StreamCursor:
    """The notes of the live passes over one streamed split, and where its next pass is to start. A pass in another
    process (a DataLoader worker) writes its records to `folder`; `owner`, the process that made the cursor, reads
    them back (`_gather`)."""

    def __init__(self, stride, folder, owner=None):
        self.stride, self.folder, self.owner, self.pass_windows, self.reads = stride, Path(folder), owner, None, 0
        self.runs = []  # run records of passes, oldest first
        self._tracked = {}  # name -> run record of a pass in another process whose records are still read
        self._seen = set()  # names of such passes already taken in
        self._reads_elsewhere = {}  # name -> documents that pass read (as last reported)

    def _here(self):
        return os.getpid() == self.owner

    def set_resume(self, point):
        """The point the next pass to start (here or in a worker forked or spawned later) begins at."""
        return _write_json(self.folder / RESUME_FILE, point)

    def _take_resume(self):
        mine = self.folder / f"taken-{os.getpid()}-{next(_ids)}.json"
        try:
            os.rename(self.folder / RESUME_FILE, mine)  # atomic: one pass takes it, even in several workers
        except OSError:
            return None
        point = json.loads(mine.read_text())
        mine.unlink()
        return point

    def start_run(self):
        """Called by the generator as a pass starts: returns (resume point or None, the run's record)."""
        if not self._here():
            _check_one_worker()
        point = self._take_resume()
        run = {"notes": collections.deque(maxlen=KEEP_NOTES), "open": True, "last_end": None, "first_window": 0,
               "t0": time.time_ns()}
        start = {"window": 0, "end": 0, "started": False, "source_state": None, "row": 0, **(point or {})}
        run["first_window"] = start["window"]
        run["notes"].append({k: start[k] for k in ("end", "started", "source_state", "row")})  # where it begins
        run["last_end"] = start["end"]
        if self._here():
            with _lock:
                self.runs = [r for r in self.runs if r["open"]][-3:] + [run]
        else:
            run.update(name=f"{run['t0']:020d}-{os.getpid()}-{next(_ids)}", reads0=self.reads, seg=0, lines=0,
                       forked=os.getppid() == self.owner)
            _write_json(self.folder / f"{run['name']}.start.json",
                        {"t0": run["t0"], "first_window": run["first_window"], "note": run["notes"][0]})
        return point, run

    def note(self, run, end, started, source, row):
        """After a row: the position before the next one (row `row` of the source), every NOTE_EVERY_TOKENS tokens
        at most."""
        if run["last_end"] is None or end - run["last_end"] >= NOTE_EVERY_TOKENS:
            run["notes"].append({"end": int(end), "started": bool(started), "source_state": source.state_dict(),
                                 "row": int(row)})
            run["last_end"] = end
            if "name" in run:
                self._write_note(run)

    def end_run(self, run, n_windows, exhausted):
        run["open"] = False
        if exhausted:
            self.pass_windows = n_windows
        if "name" in run:
            _write_json(self.folder / f"{run['name']}.end.json",
                        {"windows": n_windows, "exhausted": exhausted, "reads": self.reads - run["reads0"]})
            if run["forked"] and os.getppid() != self.owner:  # the owner was killed: no one reads or removes it
                shutil.rmtree(self.folder, ignore_errors=True)

    def _write_note(self, run):
        """Appends the run's last note to its file, a new file every KEEP_NOTES notes; the one before the previous
        is deleted, so the files hold at least the last KEEP_NOTES notes and no more than twice that."""
        if run["lines"] == KEEP_NOTES:
            run["seg"], run["lines"] = run["seg"] + 1, 0
            (self.folder / f"{run['name']}.{run['seg'] - 2}.notes").unlink(missing_ok=True)
        line = json.dumps([self.reads - run["reads0"], run["notes"][-1]]) + "\n"
        try:
            with open(self.folder / f"{run['name']}.{run['seg']}.notes", "a", encoding="utf-8") as f:
                f.write(line)
        except OSError:  # the folder is gone (the main process ended): nothing to report to
            return
        run["lines"] += 1

    def _gather(self):
        """Takes in the records that passes in other processes wrote since the last call."""
        if not self._here():
            return
        try:
            names = sorted(p.name[:-len(".start.json")] for p in self.folder.glob("*.start.json"))
        except OSError:
            names = []
        for name in names:
            if name in self._seen:
                continue
            self._seen.add(name)
            start = json.loads((self.folder / f"{name}.start.json").read_text())
            run = {"notes": collections.deque([start["note"]], maxlen=KEEP_NOTES), "open": True,
                   "first_window": start["first_window"], "t0": start["t0"], "name": name, "seg": 0, "offset": 0}
            self._tracked[name] = run
            with _lock:
                self.runs.append(run)
        for name, run in list(self._tracked.items()):
            self._read_notes(run)
            end = self.folder / f"{name}.end.json"
            if end.is_file():
                self._read_notes(run)  # the last notes, written before the end
                record = json.loads(end.read_text())
                run["open"] = False
                if record["exhausted"]:
                    self.pass_windows = record["windows"]
                self._reads_elsewhere[name] = record["reads"]
                del self._tracked[name]
                for path in self.folder.glob(f"{name}.*"):
                    path.unlink(missing_ok=True)
        with _lock:
            self.runs = [r for r in sorted(self.runs, key=lambda r: r["t0"]) if r["open"]][-4:]
        kept = {r.get("name") for r in self.runs}
        self._tracked = {name: run for name, run in self._tracked.items() if name in kept}

    def _read_notes(self, run):
        """The run's notes written since the last read: whole lines only (its worker may be writing the last)."""
        name = run["name"]
        segs = sorted(int(p.name[len(name) + 1:-len(".notes")]) for p in self.folder.glob(f"{name}.*.notes"))
        for seg in segs:
            if seg < run["seg"]:
                continue
            if seg > run["seg"]:
                run["seg"], run["offset"] = seg, 0
            try:
                with open(self.folder / f"{name}.{seg}.notes", "rb") as f:
                    f.seek(run["offset"])
                    data = f.read()
            except FileNotFoundError:  # its worker deleted it (KEEP_NOTES newer notes follow)
                continue
            data = data[:data.rfind(b"\n") + 1]
            run["offset"] += len(data)
            for line in data.splitlines():
                reads, note = json.loads(line)
                run["notes"].append(note)
                self._reads_elsewhere[name] = reads

    def documents_read(self):
        """Documents read from the source since the cursor was made, here and (as last reported) in workers."""
        self._gather()
        return self.reads + sum(self._reads_elsewhere.values())

    def point_for(self, windows_trained):
        """Where a pass must start for its first window to be the first untrained one, or None if unknown."""
        self._gather()
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


def _check_one_worker():
    """A split is one shard, so one DataLoader worker reads it; with more, datasets would also hand that worker only
    its share of the source's own shards (files), and the windows would silently skip the rest."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    if info is not None and info.num_workers > 1:
        raise RuntimeError(f"a streamed split is read by one DataLoader worker, and with {info.num_workers} it would "
                           f"miss part of the text: use num_workers=1 (or 0)")


def _write_json(path, value):
    """Whole or not at all: a reader in another process never sees half of it."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(value))
        os.replace(tmp, path)
    except OSError:  # the folder is gone (the main process ended)
        return False
    return True


FOLDER_PREFIX = "hf_gpt-stream-"  # then the owner's pid and a dash


def new_cursor(stride):
    """A cursor for one streamed split; its key (the generator's `cursor_key`) is its folder, so that a worker
    started afresh (spawn) finds it too. The folder's name holds its owner's pid: the first cursor of a process
    removes the folders of owners that are gone (a killed run never reaches its atexit)."""
    if not _cursors:
        _remove_orphaned_folders()
        atexit.register(_remove_folders)
    folder = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")
    _cursors[folder] = StreamCursor(stride, folder, owner=os.getpid())
    return folder


def _remove_orphaned_folders():
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name[len(FOLDER_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive, and not ours to judge
        pass
    return True


def _remove_folders():
    for c in _cursors.values():
        if c._here():
            shutil.rmtree(c.folder, ignore_errors=True)


def cursor(key):
    c = _cursors.get(key)
    if c is None and os.path.isdir(key):  # a worker process started afresh (spawn): it only writes records
        c = _cursors[key] = StreamCursor(None, key)
    return c


def _cursor_of(dataset):
    key = getattr(dataset, "_hf_gpt_cursor", None)
    c = _cursors.get(key) if key else None
    return c if c is not None and c._here() else None


def resume_point(dataset, windows_trained):
    """A JSON-able point to resume `dataset` (a split from `build_lm_datasets(streaming=True)`) after
    `windows_trained` windows, or None when no pass has noted one (here or in a DataLoader worker)."""
    c = _cursor_of(dataset)
    return c.point_for(windows_trained) if c is not None else None


def resume_from(dataset, point):
    """Makes the next pass over `dataset` start at `point` (from `resume_point`); True when it will."""
    c = _cursor_of(dataset)
    if c is None or point is None:
        return False
    return c.set_resume(point)


def reads_since_start(dataset):
    """Documents the generator has read from the source since the cursor was made, in this process and its DataLoader
    workers (for tests and logs)."""
    c = _cursor_of(dataset)
    return c.documents_read() if c is not None else None


def resume_from_checkpoint(dataset, checkpoint):
    """Sets `dataset` to continue from the position saved in `checkpoint`; the number of windows trained, or None
    when the checkpoint holds no position (then the Trainer's skipping re-reads the stream)."""
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
    source a row at a time (a document, or part of a long text file) so that the cursor (hf_gpt.streaming) can note
    resumable positions."""
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
            for _, ids in encoder.iter_encoded(cut_texts([row[text_column]], char_cut, [row_index])):
                if first and started and not row.get(PART_COLUMN):
                    ids = np.concatenate([eos, ids])
                first, started = False, True
                buf, end = np.concatenate([buf, ids]), end + len(ids)
                count = max(0, (end - max_length - 1 - next_start) // stride + 1)
                for w in window_view(buf, next_start - buf_start, count, max_length, stride).astype(np.int64):
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
        raise too_few_tokens(split, end, max_length, validation_fraction)


def _scan_documents(source, text_column):
    """The rows where the stream's documents start, and while it holds one document, its rows' lengths in
    characters (the book's split needs them)."""
    import array

    continued = PART_COLUMN in (source.column_names or ())
    starts, lengths = array.array("q"), []
    for i, row in enumerate(source.select_columns([text_column, PART_COLUMN] if continued else [text_column])):
        if not (continued and row[PART_COLUMN]):
            starts.append(i)
        if len(starts) == 1:
            lengths.append(len(row[text_column] or ""))
    return starts, lengths


def build_streaming(splits, encoder, text_column, max_length, stride, validation_fraction, verbose):
    import datasets

    train = splits["train"]
    if "validation" in splits:
        plan = {"train": (train, None), "validation": (splits["validation"], None)}
    elif validation_fraction == 0:
        plan = {"train": (train, None)}
    else:
        starts, lengths = _scan_documents(train, text_column)  # one pass, no tokenizing
        if len(starts) == 0:
            raise ValueError("the corpus is empty: it holds no documents")
        if len(starts) == 1:
            row, offset = book_cut(lengths, 1 - validation_fraction)
            plan = {"train": (train.take(row + 1), ("head", row, offset)),
                     "validation": (train.skip(row), ("tail", 0, offset))}
        else:
            n_train = min(max(int((1 - validation_fraction) * len(starts)), 1), len(starts) - 1)
            plan = {"train": (train.take(starts[n_train]), None), "validation": (train.skip(starts[n_train]), None)}
    out = datasets.IterableDatasetDict()
    for split, (source, char_cut) in plan.items():
        key = new_cursor(stride)
        out[split] = datasets.IterableDataset.from_generator(
            _stream_windows, features=window_features(max_length),
            gen_kwargs={"source": source, "encoder": encoder, "text_column": text_column, "char_cut": char_cut,
                        "max_length": max_length, "stride": stride, "split": split,
                        "validation_fraction": validation_fraction, "cursor_key": key})
        out[split]._hf_gpt_cursor = key  # for hf_gpt.streaming.resume_point / resume_from
        if verbose:
            print(f"{split}: streaming windows of {max_length} (stride {stride}); counts are known once iterated")
    return out
