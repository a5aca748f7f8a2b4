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

import gzip
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

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
    shapes = ",".join(f"{t.name}={_attr_text(t.shape)}" for t in order if t.kind == "placeholder")
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


def _parse(line: str, where: str) -> Record:
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise RecordsError(f"{where}: not a JSON record ({e.msg})") from None
    if not isinstance(d, dict) or not isinstance(d.get("workload"), str) or not isinstance(d.get("config"), dict):
        raise RecordsError(f"{where}: a record needs a 'workload' string and a 'config' object")
    if d.get("error") is not None and d["error"] not in ERROR_CLASSES:
        raise RecordsError(f"{where}: unknown error class {d['error']!r}; expected one of {', '.join(ERROR_CLASSES)}")
    if d.get("error") is None and not isinstance(d.get("cost_ms"), (int, float)):
        raise RecordsError(f"{where}: a record without an error needs a numeric 'cost_ms'")
    try:
        return Record(**{k: d[k] for k in Record.__dataclass_fields__ if k in d})
    except TypeError as e:
        raise RecordsError(f"{where}: {e}") from None


def _check_path(path: str) -> None:
    if os.path.isdir(path):
        raise RecordsError(f"records path '{path}' is a directory, not a file")


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
    """Appends records to a file, a batch at a time, flushed and fsynced."""

    def __init__(self, path: str):
        _check_path(path)
        if path.endswith(".gz"):
            raise RecordsError(f"records path '{path}': records are appended to plain files, not .gz "
                               "(gzip a finished file to archive it; it can still be read)")
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise RecordsError(f"records path '{path}': directory '{parent}' does not exist")
        self._set_aside_partial_line()

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
        lines = "".join(r.to_json() + "\n" for r in records)
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())


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
    if os.path.exists(out) and not out.endswith(".gz"):
        RecordsWriter(out)  # moves a cut-short last line to <out>.partial, so it is not lost
    chosen: dict[tuple, Record] = {}
    for p in ([out] if os.path.exists(out) else []) + list(paths):
        for r in load(p):
            k = (r.workload, r.config_key())
            old = chosen.get(k)
            if old is None or (r.ok and (not old.ok or r.cost_ms < old.cost_ms)):
                chosen[k] = r
    write_atomically(out, "".join(r.to_json() + "\n" for r in chosen.values()))
    return len(chosen)


def write_atomically(path: str, text: str) -> None:
    """Writes `text` to a temporary file beside `path` (gzipped when `path` ends in .gz),
    fsyncs it and renames it over `path`."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise RecordsError(f"records path '{path}': directory '{parent}' does not exist")
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
