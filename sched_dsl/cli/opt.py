"""sched-opt: xDSL's optimizer driver with sched-dsl's dialects, passes and targets.

    sched-opt conv.mlir -p tensorop-to-loops,apply-schedule,loops-to-gpu -t opencl
    sched-opt conv.mlir -p tensorop-to-loops,apply-schedule,loops-to-gpu --check-each-pass

Bad input ends in a diagnostic on stderr and exit code 1; an error inside sched-dsl itself
ends in a one-line report and exit code 2 (SCHED_DSL_DEBUG=1 shows the traceback)."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import warnings
from collections.abc import Sequence

from xdsl.utils.exceptions import ArgSpecParseError, DiagnosticException, ParseError, VerifyException
from xdsl.xdsl_opt_main import xDSLOptMain

from sched_dsl.testing.check import EquivalenceError
from sched_dsl.testing.interp import DEFAULT_BUDGET
from sched_dsl.diagnostics import LocatingParser, check_defined_before_use, decode_source, failing_op, where
from sched_dsl.lowering.pipeline import DEFAULT_PIPELINE
from sched_dsl.lowering.targets.c_family import VectorizeRemark


TARGETS = ("mlir", "opencl", "cuda")


class LocatedVerifyError(DiagnosticException):
    """A verifier error, reported as `file:line:col: error: message` of the failing op."""


class SchedOptMain(xDSLOptMain):
    version_format = "sched-opt built on xdsl {xdsl_version}"

    def __init__(self, args: Sequence[str] | None = None):
        super().__init__(description=f"sched-dsl optimizer driver (default pipeline: {DEFAULT_PIPELINE})", args=args)

    line_offset = 0  # of the chunk being parsed, with --split-input-file

    def parse_chunk(self, chunk, file_extension, start_offset=0):
        self.line_offset = start_offset
        return super().parse_chunk(chunk, file_extension, start_offset)

    def register_all_targets(self):
        # xDSL's own targets (llvm, mps, riscv...) cannot print our IR: offer the text of the
        # IR itself and our kernel printers only
        super().register_all_targets()
        self.available_targets = {n: self.available_targets[n] for n in TARGETS}

    def register_all_arguments(self, arg_parser):
        super().register_all_arguments(arg_parser)
        arg_parser.add_argument(
            "--check-each-pass", action="store_true",
            help="after every pass, run the IR on small random inputs and compare it with the "
                 "input's reference meaning (and run the emitted OpenCL text at the end); report "
                 "the first pass that changes the result")
        arg_parser.add_argument("--check-seed", type=int, default=0,
                                help="seed of the random inputs of --check-each-pass")
        arg_parser.add_argument("--check-budget", type=int, default=DEFAULT_BUDGET, metavar="STEPS",
                                help="interpreter steps --check-each-pass may spend running one stage's IR "
                                     f"(default {DEFAULT_BUDGET}); a stage that needs more is reported as "
                                     "not checked, not as broken")

    def apply_passes(self, prog):
        try:
            if self.args.check_each_pass:
                from sched_dsl.testing.check import check_each_pass, summary

                results = check_each_pass(prog, self.pipeline.passes, ctx=self.ctx, seed=self.args.check_seed,
                                          budget=self.args.check_budget,
                                          log=lambda r: print(f"check-each-pass: {r}", file=sys.stderr))
                if summary(results):
                    print(f"check-each-pass: {summary(results)}", file=sys.stderr)
            else:
                super().apply_passes(prog)
        except Exception as e:
            # an op that fails to verify: report it, where it was written, instead of the whole
            # module (also for verifiers raising other exceptions); anything else is re-raised
            found = failing_op(prog)
            if found is None:
                raise
            op, msg = found
            raise LocatedVerifyError(f"{where(op)}error: {msg}") from e

    def register_all_frontends(self):
        def parse_mlir(io):
            name = self.get_input_name()
            text = decode_source(io.read(), name, self.line_offset)
            parser = LocatingParser(self.ctx, text, name, line_offset=self.line_offset)
            module = parser.parse_module(not self.args.no_implicit_module)
            check_defined_before_use(module)
            self.module = module
            return module

        self.available_frontends["mlir"] = parse_mlir


# Parsing, verifying and printing recurse once or more per level of nesting: the driver runs
# on a thread with room for the deepest input the parser accepts (MAX_NESTING).
STACK_BYTES = 512 * 1024 * 1024
RECURSION_LIMIT = 50_000


def run_with_deep_stack(fn, *args):
    """fn(*args) on a thread with a large stack and recursion limit; its result or exception."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn(*args)
        except BaseException as e:  # re-raised on the calling thread
            outcome["error"] = e

    old_stack, old_limit = threading.stack_size(STACK_BYTES), sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(old_limit, RECURSION_LIMIT))
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
    finally:
        threading.stack_size(old_stack)
    try:
        thread.join()
    except BaseException as e:
        # the waiting thread was interrupted (Ctrl-C, a caller's time limit): stop the work too
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(type(e)))
        thread.join(5)
        raise
    finally:
        if not thread.is_alive():
            sys.setrecursionlimit(old_limit)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    kind = "remark" if issubclass(category, VectorizeRemark) else "warning"
    print(f"sched-opt: {kind}: {message}", file=sys.stderr)


def sched_opt_main(args: Sequence[str] | None = None) -> int:
    return run_with_deep_stack(_sched_opt_main, args)


def _sched_opt_main(args: Sequence[str] | None) -> int:
    main = None
    try:
        main = SchedOptMain(args)
        with warnings.catch_warnings():
            warnings.simplefilter("always", VectorizeRemark)
            warnings.showwarning = _show_warning
            main.run()
    except VerifyException as e:
        found = failing_op(main.module) if main is not None and hasattr(main, "module") else None
        if found is None:
            print(f"error: {e}", file=sys.stderr)
        else:
            op, msg = found
            print(f"{where(op)}error: {msg}", file=sys.stderr)
        return 1
    except (ParseError, DiagnosticException) as e:
        print(e, file=sys.stderr)
        return 1
    except EquivalenceError as e:
        print(e, file=sys.stderr)
        return 1
    except RecursionError:
        print("sched-opt: error: the IR is nested too deeply to process", file=sys.stderr)
        return 1
    except (ArgSpecParseError, ValueError, KeyError, OSError) as e:
        if os.environ.get("SCHED_DSL_DEBUG"):
            raise
        print(f"sched-opt: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug of ours: report it in one line, not a traceback
        if os.environ.get("SCHED_DSL_DEBUG"):
            raise
        print(f"sched-opt: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    return 0


def main() -> None:
    sys.exit(sched_opt_main())


if __name__ == "__main__":
    main()
