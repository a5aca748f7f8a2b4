"""The persistent on-disk cache of compiled kernels (OpenCL program binaries, CUDA cubins) and
of lowered model segments, so that loading a model a second time compiles nothing.

Location: $SCHED_DSL_CACHE, else ~/.cache/sched-dsl; SCHED_DSL_CACHE=off turns it off.
Size bound: $SCHED_DSL_CACHE_MAX_MB (default 1024); after each write the oldest entries (by
last use: a read touches an entry) are removed until the cache fits.

Entries are flat files `<sha256 key>.<kind>`, each holding a short header (magic, the
payload's sha256) and the payload. A write goes to a temporary file in the same folder and is
moved into place with os.replace, so processes sharing the cache see either nothing or a whole
entry; an entry that fails its checksum (or vanishes while read) is a miss. Keys are made by
the callers from everything the payload depends on (source text, device, driver, compiler).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

MAGIC = b"sched-dsl-cache 1\n"
DEFAULT_MAX_MB = 1024

# what happened in this process, by "<kind> hit" / "<kind> miss" (tests count compiles with it)
COUNTS: Counter[str] = Counter()


def key_of(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


class DiskCache:
    def __init__(self, root: str | os.PathLike, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path(self, kind: str, key: str) -> Path:
        return self.root / f"{key}.{kind}"

    def get(self, kind: str, key: str) -> bytes | None:
        p = self.path(kind, key)
        try:
            data = p.read_bytes()
        except OSError:
            COUNTS[f"{kind} miss"] += 1
            return None
        head = len(MAGIC) + 32
        payload = data[head:]
        if data[:len(MAGIC)] != MAGIC or hashlib.sha256(payload).digest() != data[len(MAGIC):head]:
            COUNTS[f"{kind} miss"] += 1
            return None
        try:
            os.utime(p)  # the entry was used now: evicted last
        except OSError:
            pass
        COUNTS[f"{kind} hit"] += 1
        return payload

    def put(self, kind: str, key: str, payload: bytes) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(MAGIC + hashlib.sha256(payload).digest() + payload)
                os.replace(tmp, self.path(kind, key))
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError:
            return  # a cache that cannot be written (read-only, full) only costs compile time
        self.trim()

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every entry."""
        out = []
        try:
            with os.scandir(self.root) as it:
                for e in it:
                    if e.name.startswith(".tmp-") or not e.is_file():
                        continue
                    try:
                        st = e.stat()
                    except OSError:
                        continue  # removed by another process meanwhile
                    out.append((st.st_mtime, st.st_size, Path(e.path)))
        except OSError:
            pass
        return out

    def trim(self) -> None:
        """Removes the least recently used entries until the cache fits its bound."""
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            try:
                p.unlink()
            except OSError:
                pass  # another process removed it first
            total -= size

    def size(self) -> int:
        return sum(size for _, size, _ in self.entries())


def default_cache() -> DiskCache | None:
    """The cache the environment asks for, or None when SCHED_DSL_CACHE=off."""
    root = os.environ.get("SCHED_DSL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sched-dsl")
    if root.lower() == "off":
        return None
    mb = os.environ.get("SCHED_DSL_CACHE_MAX_MB", str(DEFAULT_MAX_MB))
    try:
        max_bytes = int(float(mb) * 2**20)
    except ValueError:
        raise ValueError(f"SCHED_DSL_CACHE_MAX_MB='{mb}' is not a number of megabytes") from None
    return DiskCache(root, max_bytes)


@lru_cache(maxsize=1)
def compiler_fingerprint() -> str:
    """A hash of this installation's compiler (every .py file of sched_dsl, its dialects and
    lowering, and xDSL's version): lowered segments cached by another version are not reused."""
    import importlib.util

    import xdsl

    parts: list[str | bytes] = [str(getattr(xdsl, "__version__", "?"))]
    packages = ("sched_dsl", "sched_dsl.dialects", "sched_dsl.lowering")
    for name in packages:
        for folder in importlib.util.find_spec(name).submodule_search_locations:
            root = Path(folder)
            for f in sorted(root.rglob("*.py")):
                rel = f.relative_to(root)
                # an installed sched_dsl/ holds the other packages (and the tuner) in subfolders
                if name == "sched_dsl" and rel.parts[0] in ("dialects", "lowering", "tuner"):
                    continue
                parts += [name, rel.as_posix(), f.read_bytes()]
    return key_of(*parts)


def cached_compile(kind: str, sources: list[str], key_parts: tuple[str, ...],
                   compile_one: Callable[[str], tuple[bytes, T]], load: Callable[[bytes], T | None],
                   workers: int) -> list[T]:
    """The compiled form of every source: cached entries loaded, the rest compiled (in a pool
    of `workers` threads, with a progress bar on a terminal) and written to the cache.
    `compile_one(source)` returns (the bytes to cache, the loaded form); `load(bytes)` returns
    the loaded form, or None when the bytes no longer load (then the source is compiled)."""
    cache = default_cache()
    keys = {s: key_of(kind, *key_parts, s) for s in dict.fromkeys(sources)}
    done: dict[str, T] = {}

    def from_cache(s: str) -> None:
        data = cache.get(kind, keys[s]) if cache is not None else None
        loaded = load(data) if data is not None else None
        if loaded is not None:
            done[s] = loaded

    todo = list(keys)
    with ThreadPoolExecutor(max(1, min(workers, len(todo)))) as pool:
        list(pool.map(from_cache, todo))
        todo = [s for s in todo if s not in done]
        if todo:
            from tqdm import tqdm

            with tqdm(total=len(todo), desc=f"compiling {len(todo)} kernels", unit="kernel", leave=False,
                      disable=None) as bar:
                futures = {pool.submit(compile_one, s): s for s in todo}
                try:
                    for f in as_completed(futures):
                        s = futures[f]
                        data, done[s] = f.result()
                        COUNTS[f"{kind} compiled"] += 1
                        if cache is not None:
                            cache.put(kind, keys[s], data)
                        bar.update()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    return [done[s] for s in sources]
