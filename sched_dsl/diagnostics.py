"""Source locations for diagnostics: a parser that records where each op starts, and the
`file:line:col: ` prefix of an op that has one."""

from __future__ import annotations

import re

from xdsl.dialects.builtin import FileLineColLoc, IntAttr, StringAttr
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.utils.mlir_lexer import MLIRLexer
from xdsl.utils.exceptions import VerifyException


# xDSL's string-literal pattern nests `+` in `*`, so an unterminated string takes time
# exponential in its length to reject (a fuzzed 60-character input ran for minutes). The same
# language, one character per step, is rejected in linear time.
MLIRLexer._unescaped_characters_regex = re.compile(r'"(?:[^"\\\n\v\f]|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*"')


class LocatingParser(Parser):
    """Attaches a FileLineColLoc to every op it parses; `line_offset` is the line of the
    input where the text starts (a chunk of `--split-input-file`)."""

    def __init__(self, *args, line_offset: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.line_offset = line_offset

    def parse_operation(self) -> Operation:
        span = self._current_token.span
        loc = span.get_location()
        try:
            op = super().parse_operation()
        except (VerifyException, ValueError) as e:
            # checks that run while an op is built (a region's terminator, a value used
            # before it is defined): report them where the op starts
            self.raise_error(str(e), span)
        op.location = FileLineColLoc(StringAttr(loc.file), IntAttr(loc.line + self.line_offset), IntAttr(int(loc.col)))
        return op


def check_defined_before_use(root: Operation) -> None:
    """A value used before its definition (or never defined) stays a parser placeholder
    that later checks trip over without a location: report it at the op that uses it."""
    from xdsl.parser.core import ForwardDeclaredValue
    from xdsl.utils.exceptions import DiagnosticException

    for op in root.walk():
        for k, v in enumerate(op.operands):
            if isinstance(v, ForwardDeclaredValue):
                name = f"%{v.name_hint}" if v.name_hint else f"operand {k}"
                raise DiagnosticException(f"{where(op)}error: {op.name}: {name} is used before it is defined")


def where(op: Operation | None) -> str:
    loc = getattr(op, "location", None)
    if isinstance(loc, FileLineColLoc):
        return f"{loc.filename.data}:{loc.line.data}:{loc.column.data}: "
    return ""


def failing_op(root: Operation) -> tuple[Operation, str] | None:
    """The first op under `root` whose own verifier fails, with its message; a verifier that
    names another op as the culprit (`e.op`, e.g. sched.schedule's checks) reports that one."""
    for op in root.walk():
        try:
            op.verify_()
        except VerifyException as e:
            return getattr(e, "op", op), str(e)
    for op in root.walk():  # the checks of an op's place, e.g. a block that ends without a terminator
        try:
            op.verify(verify_nested_ops=False)
        except VerifyException as e:
            return op, str(e)
    return None
