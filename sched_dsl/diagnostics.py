"""Source locations for diagnostics: a parser that records where each op starts, and the
`file:line:col: ` prefix of an op that has one."""

from __future__ import annotations

from xdsl.dialects.builtin import FileLineColLoc, IntAttr, StringAttr
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.utils.exceptions import VerifyException


class LocatingParser(Parser):
    """Attaches a FileLineColLoc to every op it parses; `line_offset` is the line of the
    input where the text starts (a chunk of `--split-input-file`)."""

    def __init__(self, *args, line_offset: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.line_offset = line_offset

    def parse_operation(self) -> Operation:
        loc = self._current_token.span.get_location()
        op = super().parse_operation()
        op.location = FileLineColLoc(StringAttr(loc.file), IntAttr(loc.line + self.line_offset), IntAttr(int(loc.col)))
        return op


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
    return None
