"""The incremental syntax check: can the bytes written so far still become valid JSON?"""

from __future__ import annotations

import codecs
import re

from sessionfs.errors import InvalidJSON

__all__ = ["DEFAULT_MAX_DEPTH", "PrefixChecker"]

DEFAULT_MAX_DEPTH = 512

# --------------------------------------------------------------------------------------------
# PrefixChecker
# --------------------------------------------------------------------------------------------

# Parser states.
_VALUE = 0  # a value must come (document start, after ':' or after ',' in an array)
_VALUE_OR_CLOSE = 1  # after '['
_KEY = 2  # after ',' in an object
_KEY_OR_CLOSE = 3  # after '{'
_COLON = 4
_AFTER = 5  # after a value inside a container: ',' or the closing bracket
_DONE = 6  # after the top-level value: only whitespace
_STRING = 7
_ESCAPE = 8  # after a backslash in a string
_HEX = 9  # inside \uXXXX
_LITERAL = 10  # inside true/false/null
_N_MINUS = 11  # number states: after '-'
_N_ZERO = 12  # leading 0 (complete)
_N_INT = 13  # integer digits (complete)
_N_DOT = 14  # after '.'
_N_FRAC = 15  # fraction digits (complete)
_N_E = 16  # after 'e'
_N_ESIGN = 17  # after 'e+' / 'e-'
_N_EXP = 18  # exponent digits (complete)

_EXPECTED = {
    _VALUE: "expected a JSON value",
    _VALUE_OR_CLOSE: "expected a JSON value or ']'",
    _KEY: "expected a string key",
    _KEY_OR_CLOSE: "expected a string key or '}'",
    _COLON: "expected ':' after the key",
    _DONE: "unexpected data after the JSON value",
    _N_MINUS: "expected a digit after '-'",
    _N_DOT: "expected a digit after '.'",
    _N_E: "expected a digit or sign in the exponent",
    _N_ESIGN: "expected a digit in the exponent",
    _HEX: "expected a hex digit in a \\u escape",
}

_WS_RUN = re.compile(rb"[ \t\n\r]*")
_STRING_BODY = re.compile(rb"[^\"\\\x00-\x1f]*")
_DIGITS = re.compile(rb"[0-9]*")
_HEX_RUN = re.compile(rb"[0-9a-fA-F]{0,4}")
_ESCAPE_FULL = re.compile(rb'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})')

_WS_B = rb"[ \t\n\r]*"
_STR_B = rb'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"'
_NUM_B = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_SCALAR_B = rb"(?:" + _STR_B + rb"|" + _NUM_B + rb"|true|false|null)"
# Runs of complete scalar members, each followed by ',' (or by the closing bracket: group 1).
_OBJECT_RUN = re.compile(
    rb"(?:" + _WS_B + _STR_B + _WS_B + rb":" + _WS_B + _SCALAR_B + _WS_B + rb",)*"
    rb"(" + _WS_B + _STR_B + _WS_B + rb":" + _WS_B + _SCALAR_B + _WS_B + rb"\})?"
)
_ARRAY_RUN = re.compile(
    rb"(?:" + _WS_B + _SCALAR_B + _WS_B + rb",)*(" + _WS_B + _SCALAR_B + _WS_B + rb"\])?"
)

# The start of a UTF-8 sequence that can still be completed (Python's incremental decoder
# waits on some impossible ones, such as the surrogate prefix ED A0).
_UTF8_INCOMPLETE = re.compile(
    rb"[\xc2-\xf4]|[\xe1-\xec\xee\xef\xf1-\xf3][\x80-\xbf]|\xe0[\xa0-\xbf]|\xed[\x80-\x9f]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]?|[\xf1-\xf3][\x80-\xbf]{2}|\xf4[\x80-\x8f][\x80-\xbf]?"
)

_LITERALS = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}
_ESCAPABLE = frozenset(b'"\\/bfnrtu')
_DIGIT_SET = frozenset(b"0123456789")
_WS_SET = frozenset(b" \t\n\r")


class _SyntaxFail(Exception):
    def __init__(self, pos: int, what: str) -> None:
        super().__init__(pos, what)
        self.pos = pos
        self.what = what


class PrefixChecker:
    """Incremental check that the bytes written so far can still begin a valid JSON text.

    A FUSE filesystem cannot rely on close() to report a bad file (shells ignore close
    errors), so it feeds each sequential write here: :meth:`feed` raises InvalidJSON as soon
    as no continuation could make the data valid (syntax, invalid UTF-8, depth), and accepts
    data that is merely incomplete (``{"a": tr``, half a UTF-8 character, ``1e``). The state is
    kept between feeds, so the total cost is linear in the bytes fed. :meth:`finish` checks
    that the data is a complete JSON text.
    """

    def __init__(self, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.max_depth = max_depth
        self._state = _VALUE
        self._stack = bytearray()  # b"{" / b"[" per open container
        self._is_key = False
        self._hex_left = 0
        self._literal = b""
        self._literal_at = 0
        self._offset = 0
        self._utf8_tail = b""
        self._lines = 0  # newlines before self._offset
        self._line_start = 0
        self._error: InvalidJSON | None = None
        self._error_at: tuple[int, str] = (-1, "")

    @property
    def offset(self) -> int:
        """Bytes accepted so far."""
        return self._offset

    @property
    def depth(self) -> int:
        """Containers currently open."""
        return len(self._stack)

    @property
    def complete(self) -> bool:
        """Whether the bytes so far are a complete JSON text (more whitespace may follow)."""
        return (
            self._error is None
            and not self._utf8_tail
            and (
                self._state == _DONE
                or (not self._stack and self._state in (_N_ZERO, _N_INT, _N_FRAC, _N_EXP))
            )
        )

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Accept the next bytes, or raise InvalidJSON if the data can no longer be valid.

        After an error every further call raises the same error.
        """
        if self._error is not None:
            raise self._error
        data = bytes(chunk)
        if not data:
            return
        bad_utf8 = self._check_utf8(data)
        try:
            self._scan(data)
        except _SyntaxFail as fail:
            if bad_utf8 is None or fail.pos < bad_utf8:
                self._fail(data, fail.pos, fail.what)
        if bad_utf8 is not None:
            self._fail(data, bad_utf8, "not valid UTF-8")
        self._lines += data.count(b"\n")
        nl = data.rfind(b"\n")
        if nl >= 0:
            self._line_start = self._offset + nl + 1
        self._offset += len(data)

    def finish(self) -> None:
        """Raise InvalidJSON unless the bytes fed form one complete JSON text."""
        if self._error is not None:
            raise self._error
        if self.complete:
            return
        if self._utf8_tail:
            what = "truncated UTF-8 character"
            pos = self._offset - len(self._utf8_tail)
        elif self._state == _VALUE and not self._stack:  # only whitespace so far
            what, pos = "empty", -1
        else:
            what, pos = "unexpected end of data", self._offset
        self._error_at = (pos, what)
        self._error = InvalidJSON(what if pos < 0 else f"{what} at {self._where(pos)}")
        raise self._error

    # -- internals -----------------------------------------------------------------------------

    def _where(self, pos: int, data: bytes = b"") -> str:
        """'line L column C (byte N)'; here the column counts bytes (the checker keeps no
        text to count characters in; parse_document and loads report characters)."""
        rel = pos - self._offset  # position inside the current chunk (may be negative)
        lines = self._lines
        line_start = self._line_start
        if rel > 0 and data:
            lines += data.count(b"\n", 0, rel)
            nl = data.rfind(b"\n", 0, rel)
            if nl >= 0:
                line_start = self._offset + nl + 1
        return f"line {lines + 1} column {pos - line_start + 1} (byte {pos})"

    def _fail(self, data: bytes, rel: int, what: str) -> None:
        pos = self._offset + rel
        if 0 <= rel < len(data) and what.startswith(("expected", "unexpected")):
            b = data[rel]
            shown = repr(chr(b)) if 0x20 <= b < 0x7F else f"byte 0x{b:02x}"
            what = f"{what}, found {shown}"
        self._error_at = (pos, what)
        self._error = InvalidJSON(f"{what} at {self._where(pos, data)}")
        raise self._error

    def _check_utf8(self, data: bytes) -> int | None:
        """Chunk-relative offset of the first invalid UTF-8 byte, or None."""
        tail = self._utf8_tail
        if not tail and data.isascii():
            return None
        buf = tail + data if tail else data
        try:
            _, used = codecs.utf_8_decode(buf, "strict", False)
        except UnicodeDecodeError as exc:
            return exc.start - len(tail)
        rest = buf[used:]
        if rest and not _UTF8_INCOMPLETE.fullmatch(rest):
            return used - len(tail)
        self._utf8_tail = rest
        return None

    def _scan(self, data: bytes) -> None:
        n = len(data)
        pos = 0
        state = self._state
        stack = self._stack
        max_depth = self.max_depth
        try:
            while pos < n:
                if state == _STRING:
                    pos = _STRING_BODY.match(data, pos).end()  # type: ignore[union-attr]
                    if pos >= n:
                        break
                    c = data[pos]
                    if c == 0x22:  # closing quote
                        pos += 1
                        state = _COLON if self._is_key else _AFTER if stack else _DONE
                    elif c == 0x5C:
                        m = _ESCAPE_FULL.match(data, pos)
                        if m is not None:
                            pos = m.end()
                        else:
                            pos += 1
                            state = _ESCAPE
                    else:
                        raise _SyntaxFail(
                            pos, f"control character U+{c:04X} must be escaped in a string"
                        )
                    continue

                c = data[pos]
                if c in _WS_SET and state <= _DONE:
                    pos = _WS_RUN.match(data, pos).end()  # type: ignore[union-attr]
                    continue

                if state == _AFTER:
                    top = stack[-1]
                    if c == 0x2C:  # ,
                        pos += 1
                        if top == 0x7B:
                            state = _KEY
                            m = _OBJECT_RUN.match(data, pos)
                        else:
                            state = _VALUE
                            m = _ARRAY_RUN.match(data, pos)
                        pos, state = self._after_run(m, pos, state, stack)
                    elif (c == 0x7D and top == 0x7B) or (c == 0x5D and top == 0x5B):
                        pos += 1
                        stack.pop()
                        state = _AFTER if stack else _DONE
                    else:
                        raise _SyntaxFail(
                            pos, "expected ',' or '}'" if top == 0x7B else "expected ',' or ']'"
                        )
                elif state <= _VALUE_OR_CLOSE:
                    if c == 0x22:
                        pos += 1
                        state = _STRING
                        self._is_key = False
                    elif c == 0x7B or c == 0x5B:
                        if len(stack) >= max_depth:
                            raise _SyntaxFail(pos, f"nesting deeper than {max_depth} levels")
                        stack.append(c)
                        pos += 1
                        if c == 0x7B:
                            state = _KEY_OR_CLOSE
                            m = _OBJECT_RUN.match(data, pos)
                        else:
                            state = _VALUE_OR_CLOSE
                            m = _ARRAY_RUN.match(data, pos)
                        pos, state = self._after_run(m, pos, state, stack)
                    elif c == 0x2D:
                        pos += 1
                        state = _N_MINUS
                    elif c == 0x30:
                        pos += 1
                        state = _N_ZERO
                    elif c in _DIGIT_SET:
                        pos = _DIGITS.match(data, pos + 1).end()  # type: ignore[union-attr]
                        state = _N_INT
                    elif c in _LITERALS:
                        self._literal = _LITERALS[c]
                        self._literal_at = 1
                        pos += 1
                        state = _LITERAL
                    elif c == 0x5D and state == _VALUE_OR_CLOSE:
                        pos += 1
                        stack.pop()
                        state = _AFTER if stack else _DONE
                    else:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                elif state in (_KEY, _KEY_OR_CLOSE):
                    if c == 0x22:
                        pos += 1
                        state = _STRING
                        self._is_key = True
                    elif c == 0x7D and state == _KEY_OR_CLOSE:
                        pos += 1
                        stack.pop()
                        state = _AFTER if stack else _DONE
                    else:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                elif state == _COLON:
                    if c != 0x3A:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                    pos += 1
                    state = _VALUE
                elif state == _DONE:
                    raise _SyntaxFail(pos, _EXPECTED[state])
                elif state == _ESCAPE:
                    if c not in _ESCAPABLE:
                        raise _SyntaxFail(pos, "invalid escape in a string")
                    pos += 1
                    if c == 0x75:  # u
                        state = _HEX
                        self._hex_left = 4
                    else:
                        state = _STRING
                elif state == _HEX:
                    end = _HEX_RUN.match(data, pos, min(n, pos + self._hex_left)).end()  # type: ignore[union-attr]
                    self._hex_left -= end - pos
                    pos = end
                    if self._hex_left == 0:
                        state = _STRING
                    elif pos < n:
                        raise _SyntaxFail(pos, _EXPECTED[_HEX])
                elif state == _LITERAL:
                    lit = self._literal
                    i = self._literal_at
                    want = lit[i:]
                    got = data[pos : pos + len(want)]
                    if want.startswith(got):
                        pos += len(got)
                        self._literal_at = i + len(got)
                        if self._literal_at == len(lit):
                            state = _AFTER if stack else _DONE
                    else:
                        bad = next(j for j in range(len(got)) if got[j] != want[j])
                        raise _SyntaxFail(pos + bad, f"expected '{lit.decode()}'")
                # numbers
                elif state in (_N_INT, _N_FRAC, _N_EXP):
                    pos = _DIGITS.match(data, pos).end()  # type: ignore[union-attr]
                    if pos >= n:
                        break
                    c = data[pos]
                    if c == 0x2E and state == _N_INT:
                        pos += 1
                        state = _N_DOT
                    elif (c == 0x65 or c == 0x45) and state != _N_EXP:
                        pos += 1
                        state = _N_E
                    else:
                        state = _AFTER if stack else _DONE
                elif state == _N_ZERO:
                    if c == 0x2E:
                        pos += 1
                        state = _N_DOT
                    elif c == 0x65 or c == 0x45:
                        pos += 1
                        state = _N_E
                    else:
                        state = _AFTER if stack else _DONE
                elif state == _N_MINUS:
                    if c == 0x30:
                        state = _N_ZERO
                    elif c in _DIGIT_SET:
                        state = _N_INT
                    else:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                    pos += 1
                elif state == _N_DOT:
                    if c not in _DIGIT_SET:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                    pos += 1
                    state = _N_FRAC
                elif state == _N_E:
                    if c == 0x2B or c == 0x2D:
                        state = _N_ESIGN
                    elif c in _DIGIT_SET:
                        state = _N_EXP
                    else:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                    pos += 1
                else:  # _N_ESIGN
                    if c not in _DIGIT_SET:
                        raise _SyntaxFail(pos, _EXPECTED[state])
                    pos += 1
                    state = _N_EXP
        finally:
            self._state = state

    @staticmethod
    def _after_run(
        m: re.Match[bytes] | None, pos: int, state: int, stack: bytearray
    ) -> tuple[int, int]:
        """Apply a successful run of scalar members (see _OBJECT_RUN / _ARRAY_RUN)."""
        if m is None or m.end() == pos:
            return pos, state
        if m.group(1) is not None:  # the run ended with the closing bracket
            stack.pop()
            return m.end(), (_AFTER if stack else _DONE)
        return m.end(), (_KEY if state in (_KEY, _KEY_OR_CLOSE) else _VALUE)
