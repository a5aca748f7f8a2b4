"""Fuzz cases for sched-opt: malformed IR text, random mutations of valid IR, and illegal
schedules, as Hypothesis strategies, and `run_case`, which runs one through sched-opt's
main in-process and says how it ended.

Every case must end in exit code 0 (the input was fine after all) or in a diagnostic and
exit code 1; an internal error (exit 2), an exception escaping the driver or a run past the
time limit is a bug. Used by tests/test_fuzz.py (a fast slice) and scripts/fuzz.py (long runs).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import tempfile
from dataclasses import dataclass

from hypothesis import strategies as st

from sched_dsl.cli.opt import sched_opt_main
from sched_dsl.lowering.pipeline import DEFAULT_PIPELINE

LOCATED = re.compile(r"\.mlir:\d+:\d+")
KINDS = ("malformed", "mutation", "schedule")

# names meant to break out of a C identifier, a comment or a string
HOSTILE = ["a b", "x*/y", "/*", "a\\nb", "#define", "int", "v_A", "0a", "a.b", "a-b", "a$b", "",
           "kernel(", "x;}", "\\\"", "__global", "A\\u00e9"]


class Hang(BaseException):
    """A case ran past its time limit (a BaseException, so no `except Exception` hides it)."""


@dataclass
class Outcome:
    kind: str  # "ok" (exit 0), "diagnostic" (exit 1 and a message), "traceback" or "hang"
    rc: int | None
    output: str
    located: bool = False

    @property
    def bad(self) -> bool:
        return self.kind in ("traceback", "hang")


def _alarm(signum, frame):
    raise Hang()


def run_case(text: str, args: list[str], timeout: float = 20.0) -> Outcome:
    """Runs `sched-opt <file with text> *args` in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "case.mlir")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(text)
        out = io.StringIO()
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                rc = sched_opt_main([path, *args])
        except Hang:
            return Outcome("hang", None, out.getvalue())
        except BaseException as e:  # noqa: BLE001 - anything escaping the driver is a bug
            import traceback
            return Outcome("traceback", None, out.getvalue() + "".join(traceback.format_exception(e)))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    output = out.getvalue()
    if rc == 0:
        return Outcome("ok", rc, output)
    if rc == 1 and output.strip() and "Traceback" not in output:
        return Outcome("diagnostic", rc, output, bool(LOCATED.search(output)))
    return Outcome("traceback", rc, output)


# ---- valid IR to start from ---------------------------------------------------------------------


@st.composite
def valid_modules(draw) -> str:
    """s.ir() of a random small operator and a legal random schedule."""
    from sched_dsl.testing import strategies as sdt

    out = draw(sdt.operators())
    return draw(sdt.schedules(out)).ir()


# ---- malformed text -----------------------------------------------------------------------------

TOKENS = ["builtin.module", "{", "}", "(", ")", "func.func", "@main", "%A", "%B", "%0", "%i", "=", ":", ",",
          "->", "tensor<8x8xf32>", "tensor<?x8xf32>", "tensor<0x8xf32>", "memref<4xf32>", "f32", "index",
          "tensorop.matmul", "tensorop.conv2d", "tensorop.unary", "tensorop.reduce", "tensorop.softmax",
          '{name = "C"}', '{name = "C", fn = "relu"}', "func.return", "sched.schedule", "sched.loop",
          '"C"', '"i"', '"k"', "sched.split", "by", "4", "0", "-1", "99999999999999999999", "sched.bind",
          '"block.x"', '"thread.x"', "sched.cache_read", '"shared"', "at", "sched.knob", "[4, 8]",
          "!sched.loop", "scf.for", "to", "step", "arith.constant", "#memspace.addr<shared>", "\n", "<", ">",
          "[", "]", '"', "//", "^bb0", "attributes", "dense<1.0>", "1e999", "0x7fc00000", "\\", "%%", "@@"]


def malformed_texts() -> st.SearchStrategy[str]:
    """Token soup from the IR's vocabulary, and raw text."""
    soup = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=60).map(" ".join)
    return st.one_of(soup, st.text(max_size=200))


# ---- mutations of valid IR ------------------------------------------------------------------------

NUMBERS = ["0", "1", "2", "3", "-1", "-7", "64", "1025", "2147483648", "9223372036854775808", "1e30", "0.5"]
STRINGS = ["i", "j", "k", "d0", "r0", "n", "rc", "io", "ii", "block.x", "block.y", "block.z", "thread.x",
           "thread.z", "thread.w", "shared", "local", "global", "relu", "matmul", "sum", "max", "avg",
           *HOSTILE]


@st.composite
def mutate(draw, text: str) -> str:
    """1 to 3 random edits of `text`: lines deleted, duplicated or swapped, numbers, strings,
    value names or shapes replaced, characters inserted, the text cut short."""
    for _ in range(draw(st.integers(1, 3))):
        lines = text.split("\n")
        how = draw(st.sampled_from(["delete", "duplicate", "swap", "number", "string", "value", "shape",
                                    "char", "truncate"]))
        k = draw(st.integers(0, len(lines) - 1))
        if how == "delete":
            del lines[k]
        elif how == "duplicate":
            lines.insert(k, lines[k])
        elif how == "swap":
            m = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[m] = lines[m], lines[k]
        elif how == "truncate":
            return text[:draw(st.integers(0, len(text)))]
        elif how == "char":
            pos = draw(st.integers(0, len(text)))
            return text[:pos] + draw(st.sampled_from(list("{}()<>[]%@\"=:,-x0 \n\\"))) + text[pos:]
        else:
            pattern = {"number": r"(?<![%\w])-?\d+(\.\d+)?(e[+-]?\d+)?", "string": r'"[^"\n]*"',
                       "value": r"%[\w.$-]+", "shape": r"\d+(x\d+)*xf32"}[how]
            found = list(re.finditer(pattern, text))
            if not found:
                continue
            hit = draw(st.sampled_from(found))
            if how == "number":
                new = draw(st.sampled_from(NUMBERS))
            elif how == "string":
                new = '"' + draw(st.sampled_from(STRINGS)) + '"'
            elif how == "value":
                new = draw(st.sampled_from(sorted({m.group() for m in re.finditer(pattern, text)} | {"%zz"})))
            else:
                new = "x".join(draw(st.sampled_from(["1", "2", "3", "8", "0"])) for _ in range(draw(st.integers(1, 4)))) + "xf32"
            text = text[:hit.start()] + new + text[hit.end():]
            continue
        text = "\n".join(lines)
    return text


# ---- illegal schedules ---------------------------------------------------------------------------------

SCHED_OPS = [
    'sched.split {h} by {n}', 'sched.split {h} by {knob}', 'sched.reorder {h}, {h2}', 'sched.bind {h} "{tag}"',
    'sched.unroll {h}', 'sched.vectorize {h}', 'sched.fuse {h}, {h2}', 'sched.tile {h}, {h2} by {n}, {n}',
    'sched.cache_read "{tensor}" "{scope}" at {h}', 'sched.cache_write "{scope}" at {h}',
    'sched.compute_at "{stage}" at {h}', 'sched.loop "{stage}" "{axis}"', 'sched.knob "t" [{n}, {n}]',
]


@st.composite
def illegal_schedules(draw, text: str) -> str:
    """`text` (a module with a schedule) with 1 to 4 random sched ops added to its schedule,
    on its loop handles and names, most of which make no sense."""
    schedule = text[text.find("sched.schedule"):]
    handles = sorted(set(re.findall(r"%[\w.]+", schedule))) or ["%i"]
    names = sorted(set(re.findall(r'"([^"]*)"', text))) or ["C"]
    lines = []
    for k in range(draw(st.integers(1, 4))):
        form = draw(st.sampled_from(SCHED_OPS))
        fill = {
            "h": draw(st.sampled_from(handles)), "h2": draw(st.sampled_from(handles)),
            "n": draw(st.sampled_from(["0", "1", "2", "3", "4", "7", "64", "1024", "-1"])),
            "knob": draw(st.sampled_from(["%t", "%nope"])),
            "tag": draw(st.sampled_from(["block.x", "block.y", "block.z", "thread.x", "thread.y", "thread.z",
                                         "warp.x", ""])),
            "tensor": draw(st.sampled_from(names + ["nope"])), "stage": draw(st.sampled_from(names + ["nope"])),
            "axis": draw(st.sampled_from(names + ["i", "k", "d0", "zz"])),
            "scope": draw(st.sampled_from(["shared", "local", "global"])),
        }
        op = form.format(**fill)
        if op.startswith(("sched.split", "sched.tile")):
            op = f"%s{k}a, %s{k}b = " + op if "tile" not in op else f"%s{k}a, %s{k}b, %s{k}c, %s{k}d = " + op
        elif op.startswith(("sched.loop", "sched.fuse")):
            op = f"%s{k}a = " + op
        elif op.startswith("sched.knob"):
            op = "%t = " + op
        lines.append("    " + op)
    end = text.rfind("  }")
    if "sched.schedule" not in text or end < 0:
        return text
    return text[:end] + "\n".join(lines) + "\n" + text[end:]


# the passes still to run on IR lowered by the ones before
REST = {0: DEFAULT_PIPELINE, 1: "apply-schedule,loops-to-gpu", 2: "loops-to-gpu", 3: ""}


def lowered(text: str, n_passes: int) -> str:
    """`text` after the first `n_passes` passes of the default pipeline."""
    from xdsl.parser import Parser

    from sched_dsl.context import make_context
    from sched_dsl.lowering.pipeline import PASSES

    ctx = make_context()
    module = Parser(ctx, text).parse_module()
    for name in DEFAULT_PIPELINE.split(",")[:n_passes]:
        PASSES[name]().apply(ctx, module)
    return str(module)


@st.composite
def mutated_cases(draw) -> tuple[str, list[str]]:
    """A valid module, lowered by 0 to 3 passes, mutated, with the rest of the pipeline."""
    level = draw(st.integers(0, 3))
    text = draw(mutate(lowered(draw(valid_modules()), level)))
    rest = REST[level]
    return text, (["-p", rest] if rest else []) + ["-t", "opencl"]


def cases(kind: str) -> st.SearchStrategy[tuple[str, list[str]]]:
    """(IR text, sched-opt arguments) of one fuzz case of `kind`."""
    full = ["-p", DEFAULT_PIPELINE, "-t", "opencl"]
    if kind == "malformed":
        return malformed_texts().map(lambda t: (t, full))
    if kind == "mutation":
        return mutated_cases()
    if kind == "schedule":
        return valid_modules().flatmap(illegal_schedules).map(lambda t: (t, full))
    raise ValueError(f"unknown fuzz kind '{kind}'; choose from {', '.join(KINDS)}")
