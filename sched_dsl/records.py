"""Tuning records: one JSON object per line, one line per tried config.

A line holds the workload key (operator + shapes + target + device), the config, its cost
(`cost_ms`, the minimum measured time) or its error class, the loop-IR features of the config
(so other shapes of the operator can seed a model without rebuilding), and its trial number.
Lines are appended, flushed and fsynced a batch at a time, so a tuner killed at any point
loses at most the batch it was measuring; a last line cut short by the kill is set aside
(in `<file>.partial`) with a warning when the file is next opened for appending. A file whose
name ends in `.gz` is read through gzip (for archived records); records are appended to plain
files only.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import math
import os
import stat
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from sched_dsl.dialects.sched import MAX_INT, knob_name_problem
from sched_dsl.tensor import Tensor, topological

ERROR_CLASSES = ("invalid", "compile_error", "runtime_error", "wrong_answer", "timeout")


class RecordsError(ValueError):
    """A records file that cannot be read or used (names the file and the problem)."""


@dataclass(frozen=True)
class Workload:
    """What a record applies to: the operator(s), the input shapes, target and device."""

    op: str
    shapes: str
    target: str
    device: str

    @property
    def key(self) -> str:
        return f"{self.op}|{self.shapes}|{self.target}|{self.device}"

    @property
    def family(self) -> str:
        """Workloads of one family differ only in shapes (for transfer between them)."""
        return f"{self.op}|{self.target}|{self.device}"


def _attr_text(v) -> str:
    return "x".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)


def workload_of(outputs: Sequence[Tensor], target: str, device: str) -> Workload:
    order = topological(list(outputs))
    ops = []
    for t in order:
        if t.kind == "placeholder":
            continue
        attrs = ",".join(f"{k}={_attr_text(v)}" for k, v in sorted(t.attrs.items()))
        ops.append(f"{t.kind}({attrs})" if attrs else t.kind)
    # element types other than f32 are part of the key (f32 keys stay as they were)
    shapes = ",".join(f"{t.name}={_attr_text(t.shape)}{'' if t.dtype == 'f32' else ':' + t.dtype}"
                      for t in order if t.kind == "placeholder")
    out_types = [t.dtype for t in outputs]
    if any(t.dtype != "f32" for t in order if t.kind == "placeholder") or {"f16", "bf16"} & set(out_types):
        shapes += "->" + ",".join(out_types)
    return Workload("+".join(ops), shapes, target, device)


@dataclass
class Record:
    workload: str
    config: dict[str, int]
    cost_ms: float | None = None
    error: str | None = None
    message: str = ""
    features: list[float] | None = None
    trial: int = 0
    time: float = field(default_factory=time.time)
    strategy: str = ""  # the search that proposed it ("xgb", "random"); "" in older files

    @property
    def ok(self) -> bool:
        return self.error is None and self.cost_ms is not None

    def config_key(self) -> tuple:
        return tuple(sorted(self.config.items()))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def record_problem(d) -> str | None:
    """Why the decoded JSON `d` is not a valid record, or None."""
    if not isinstance(d, dict) or not isinstance(d.get("workload"), str) or not isinstance(d.get("config"), dict):
        return "a record needs a 'workload' string and a 'config' object"
    for k, v in d["config"].items():
        if (problem := knob_name_problem(k)) is not None:
            return f"config: {problem}"
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_INT:
            return f"config: knob '{k}' has value {v!r}, not an int from 1 to 2**63-1"
    error, cost = d.get("error"), d.get("cost_ms")
    if error is not None and error not in ERROR_CLASSES:
        return f"unknown error class {error!r}; expected one of {', '.join(ERROR_CLASSES)}"
    if error is None and (isinstance(cost, bool) or not isinstance(cost, (int, float))):
        return f"a record without an error needs a numeric 'cost_ms', got {cost!r}"
    if cost is not None and not (_number(cost) and cost >= 0):
        return f"'cost_ms' must be a finite number >= 0, got {cost!r}"
    features = d.get("features")
    if features is not None and not (isinstance(features, list) and all(_number(f) for f in features)):
        return "'features' must be a list of finite numbers"
    if not isinstance(d.get("message", ""), str):
        return "'message' must be a string"
    trial = d.get("trial", 0)
    if not isinstance(trial, int) or isinstance(trial, bool) or trial < 0:
        return f"'trial' must be an int >= 0, got {trial!r}"
    if not _number(d.get("time", 0)):
        return f"'time' must be a finite number, got {d.get('time')!r}"
    return None


def _parse(line: str, where: str) -> Record:
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise RecordsError(f"{where}: not a JSON record ({e.msg})") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise RecordsError(f"{where}: not a JSON record ({e})") from None
    except RecursionError:
        raise RecordsError(f"{where}: not a record (JSON nested too deeply)") from None
    if (problem := record_problem(d)) is not None:
        raise RecordsError(f"{where}: {problem}")
    return Record(**{k: d[k] for k in Record.__dataclass_fields__ if k in d})


def check_record(r: Record, where: str) -> Record:
    """`r` itself when it is valid (the rules of a records file's lines), else a RecordsError."""
    if (problem := record_problem(asdict(r))) is not None:
        raise RecordsError(f"{where}: {problem}")
    return r


_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
          stat.S_IFSOCK: "a socket"}


def _check_path(path: str) -> None:
    if os.path.isdir(path):
        raise RecordsError(f"records path '{path}' is a directory, not a file")
    if os.path.exists(path):
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
            raise RecordsError(f"records path '{path}' is {kind}, not a regular file")


def load(path: str, missing_ok: bool = False) -> list[Record]:
    """Every record of the file, in order. A last line cut short (no newline, not JSON) is
    left out with a warning; any other malformed line is a RecordsError naming it."""
    _check_path(path)
    if not os.path.exists(path):
        if missing_ok:
            return []
        raise RecordsError(f"records file '{path}' does not exist")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
                text = f.read()
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise RecordsError(f"records file '{path}' cannot be read: {e}") from None
    lines = text.split("\n")
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        last = n == len(lines)  # no newline after it: possibly cut short by a kill
        try:
            records.append(_parse(line, f"{path}:{n}"))
        except RecordsError as e:
            if not last:
                raise
            warnings.warn(f"{e}; the last line looks cut short (killed while writing?) and is ignored",
                          stacklevel=2)
    return records


class RecordsWriter:
    """Appends records to a file, a batch at a time, flushed and fsynced. While open it holds
    `<path>.lock` (fcntl.flock), so one tuner at a time writes a records file: another gets a
    RecordsError naming the process that holds it. The path is checked for writing at once,
    before anything is measured. Use it as a context manager, or call close()."""

    _lock_fd: int | None = None

    def __init__(self, path: str):
        _check_path(path)
        if path.endswith(".gz"):
            raise RecordsError(f"records path '{path}': records are appended to plain files, not .gz "
                               "(gzip a finished file to archive it; it can still be read)")
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise RecordsError(f"records path '{path}': directory '{parent}' does not exist")
        self._lock()
        try:
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
            except OSError as e:
                raise RecordsError(f"records file '{path}' cannot be written ({e.strerror})") from None
            self._set_aside_partial_line()
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        lock = self.path + ".lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RecordsError(f"records file '{self.path}' cannot be written: its lock file '{lock}' "
                               f"cannot be created ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RecordsError(f"records file '{self.path}' is being written by another tuner (process {holder}, "
                               f"which holds '{lock}'); wait for it to finish or use another records file") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def close(self) -> None:
        """Releases the lock; appending after this is an error."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RecordsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _set_aside_partial_line(self) -> None:
        """A last line without its newline was cut short while being written: move it to
        `<path>.partial` (nothing written is thrown away) so appends start on a fresh line."""
        if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1
            with open(self.path + ".partial", "ab") as p:
                p.write(data[cut:] + b"\n")
                p.flush()
                os.fsync(p.fileno())
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
        warnings.warn(f"{self.path}: the last line was cut short (killed while writing?); "
                      f"moved it to {self.path}.partial", stacklevel=3)

    def append(self, records: Iterable[Record]) -> None:
        """Appends whole lines or nothing: a failed write (a full disk) is cut off again and
        is a RecordsError saying how many records were not written."""
        if self._lock_fd is None:
            raise RecordsError(f"records file '{self.path}': the writer is closed")
        records = [check_record(r, f"record for '{self.path}'") for r in records]
        data = "".join(r.to_json() + "\n" for r in records).encode()
        if not data:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as e:
                try:
                    os.ftruncate(fd, start)
                    os.fsync(fd)
                    state = "the file ends at its last whole record, as before"
                except OSError:
                    state = "the file may end in a cut-short line, set aside when it is next opened"
                raise RecordsError(f"records file '{self.path}': {e.strerror}; {len(records)} record(s) of this "
                                   f"batch were not written ({state})") from None
        finally:
            os.close(fd)


def best(records: Iterable[Record], workload: str | None = None) -> dict[str, Record]:
    """The fastest correct record of each workload (or of the one given)."""
    out: dict[str, Record] = {}
    for r in records:
        if not r.ok or (workload is not None and r.workload != workload):
            continue
        if r.workload not in out or r.cost_ms < out[r.workload].cost_ms:
            out[r.workload] = r
    return out


def best_config(path: str, workload: Workload, knobs: dict[str, Sequence[int]],
                records: Sequence[Record] | None = None) -> dict[str, int]:
    """The config of the fastest correct record for `workload` in `path` (or in `records`,
    that file's records already loaded) that fits the schedule's knobs; a RecordsError says
    why there is none."""
    records = load(path) if records is None else records
    if not records:
        raise RecordsError(f"records file '{path}' holds no records")
    mine = [r for r in records if r.workload == workload.key]
    if not mine:
        known = sorted({r.workload for r in records})
        raise RecordsError(f"records file '{path}' has no record for workload '{workload.key}'; "
                           f"it has: {'; '.join(known[:5])}{' ...' if len(known) > 5 else ''}")
    fits = [r for r in mine if r.ok and set(r.config) == set(knobs)
            and all(v in knobs[k] for k, v in r.config.items())]
    if not fits:
        raise RecordsError(f"records file '{path}' has {len(mine)} record(s) for workload '{workload.key}' "
                           f"but none is a correct measurement of a config of this schedule's knobs {sorted(knobs)}")
    return dict(min(fits, key=lambda r: r.cost_ms).config)


def merge(paths: Sequence[str], out: str) -> int:
    """Merges the records of `paths`, and of `out` itself when it exists, into `out`: one
    record per (workload, config), a correct measurement before an error and the faster before
    the slower, in the order first seen. Merging again, or a file into itself, changes nothing.
    `out` is replaced atomically (written beside it, then renamed): a kill leaves the old file
    or the new one, whole; a cut-short last line of `out` is first set aside in
    `<out>.partial`. Returns the number of records in `out`."""
    _check_path(out)
    # the writer locks `out` against tuners appending to it meanwhile, and moves a cut-short
    # last line to <out>.partial, so it is not lost
    writer = None if out.endswith(".gz") else RecordsWriter(out)
    try:
        chosen: dict[tuple, Record] = {}
        for p in ([out] if os.path.exists(out) else []) + list(paths):
            for r in load(p):
                k = (r.workload, r.config_key())
                old = chosen.get(k)
                if old is None or (r.ok and (not old.ok or r.cost_ms < old.cost_ms)):
                    chosen[k] = r
        write_atomically(out, "".join(r.to_json() + "\n" for r in chosen.values()))
    finally:
        if writer is not None:
            writer.close()
    return len(chosen)


def write_atomically(path: str, text: str) -> None:
    """Writes `text` to a temporary file beside `path` (gzipped when `path` ends in .gz),
    fsyncs it and renames it over `path`."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise RecordsError(f"records path '{path}': directory '{parent}' does not exist")
    try:
        _replace(path, parent, text)
    except OSError as e:  # a full disk, no permission: the old file stays as it was
        raise RecordsError(f"records file '{path}' cannot be written ({e.strerror or e}); it is left as it was") from None


def _replace(path: str, parent: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            data = text.encode("utf-8")
            f.write(gzip.compress(data) if path.endswith(".gz") else data)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:  # as open() would have made it
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
