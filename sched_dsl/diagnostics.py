"""Source locations for diagnostics: a parser that records where each op starts, and the
`file:line:col: ` prefix of an op that has one."""

from __future__ import annotations

import re

from xdsl.dialects.builtin import FileLineColLoc, IntAttr, StringAttr
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.utils.mlir_lexer import MLIRLexer
from xdsl.utils.exceptions import DiagnosticException, VerifyException


# xDSL's string-literal pattern nests `+` in `*`, so an unterminated string takes time
# exponential in its length to reject (a fuzzed 60-character input ran for minutes). The same
# language, one character per step, is rejected in linear time.
MLIRLexer._unescaped_characters_regex = re.compile(r'"(?:[^"\\\n\v\f]|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*"')


MAX_NESTING = 256  # ops inside ops; deeper input is refused where it gets too deep
MAX_INT_WIDTH = 16777215  # MLIR's limit on the width of iN; wider types cost memory without bound
_INT_TYPE = re.compile(r"^[su]?i(\d+)$")


class LocatingParser(Parser):
    """Attaches a FileLineColLoc to every op it parses; `line_offset` is the line of the
    input where the text starts (a chunk of `--split-input-file`). Refuses ops nested more
    than MAX_NESTING deep and integer types wider than MAX_INT_WIDTH, with their location."""

    def __init__(self, *args, line_offset: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.line_offset = line_offset
        self.depth = 0

    def parse_operation(self) -> Operation:
        span = self._current_token.span
        loc = span.get_location()
        if self.depth >= MAX_NESTING:
            self.raise_error(f"operations nested more than {MAX_NESTING} deep", span)
        self.depth += 1
        try:
            op = super().parse_operation()
        except (VerifyException, ValueError) as e:
            # checks that run while an op is built (a region's terminator, a value used
            # before it is defined): report them where the op starts
            self.raise_error(str(e), span)
        except RecursionError:  # attributes or types nested too deep for the parser
            self.raise_error("input nested too deeply to parse", span)
        finally:
            self.depth -= 1
        op.location = FileLineColLoc(StringAttr(loc.file), IntAttr(loc.line + self.line_offset), IntAttr(int(loc.col)))
        return op

    def _parse_optional_integer_or_float_type(self):
        match = _INT_TYPE.match(self._current_token.text)
        if match is not None and int(match.group(1)) > MAX_INT_WIDTH:
            self.raise_error(f"integer type {self._current_token.text} is wider than {MAX_INT_WIDTH} bits")
        return super()._parse_optional_integer_or_float_type()


def decode_source(data: bytes, name: str, line_offset: int = 0) -> str:
    """`data` as UTF-8 text; an invalid byte is a DiagnosticException at its file:line:col."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1 + line_offset
        col = len(data[line_start:e.start].decode("utf-8", "replace")) + 1
        raise DiagnosticException(f"{name}:{line}:{col}: error: invalid UTF-8 byte 0x{data[e.start]:02x}") from None


def check_defined_before_use(root: Operation) -> None:
    """A value used before its definition (or never defined) stays a parser placeholder
    that later checks trip over without a location: report it at the op that uses it."""
    from xdsl.parser.core import ForwardDeclaredValue

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
        except Exception as e:  # noqa: BLE001 - some xDSL verifiers raise plain exceptions (memref.load's index count)
            return op, str(e)
    for op in root.walk():  # the checks of an op's place, e.g. a block that ends without a terminator
        try:
            op.verify(verify_nested_ops=False)
        except VerifyException as e:
            return op, str(e)
    return None
