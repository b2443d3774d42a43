"""Exceptions: every library failure is a rhizos.Error carrying the status
name ("RZ_ECYCLE"), the numeric status and rz_error_last()'s detail."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Type

from ._lib import dec, lib

if TYPE_CHECKING:
    from .flow import Diagnostic


class Error(Exception):
    """A failure reported by librhizos.

    Attributes: code ("RZ_E..."), status (the negative rz_status), message,
    file/line/column/pointer where the library located the problem, and
    diagnostics (a list of Diagnostic, for parse/validate/plan failures).
    """

    code = "RZ_EINTERNAL"
    status = -26

    def __init__(self, message: str, *, code: Optional[str] = None,
                 status: Optional[int] = None, file: str = "", line: int = 0,
                 column: int = 0, pointer: str = "",
                 diagnostics: Optional[List[Diagnostic]] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.file, self.line, self.column, self.pointer = file, line, column, pointer
        self.diagnostics: List[Diagnostic] = diagnostics or []
        self.http_status = 0     # the HTTP status of a Client call that failed, else 0

    def __str__(self) -> str:
        where = ""
        if self.file and self.line:
            where = "%s:%d:%d: " % (self.file, self.line, self.column)
        return "%s%s (%s)" % (where, self.message, self.code)


class InvalidArgument(Error, ValueError):
    code, status = "RZ_EINVAL", -2


class NotFound(Error, LookupError):
    code, status = "RZ_ENOENT", -4


class ParseError(Error):
    code, status = "RZ_ESYNTAX", -5


class ValidationError(Error):
    code, status = "RZ_EINVALID", -6


class CycleError(ValidationError):
    code, status = "RZ_ECYCLE", -7


class StateError(Error):
    code, status = "RZ_ESTATE", -17


class ClosedError(StateError):
    """The object was closed; its C handle is gone."""


class ExecError(Error):
    code, status = "RZ_EEXEC", -19


class AlreadyExists(Error):
    code, status = "RZ_EEXISTS", -21


class AuthError(Error):
    code, status = "RZ_EAUTH", -27


class InsufficientFunds(Error):
    code, status = "RZ_EFUNDS", -30


class PermissionDenied(Error, PermissionError):
    """The server refused a route this key may never use (HTTP 403)."""
    code, status = "RZ_EDENIED", -36


class ConnectError(Error, ConnectionError):
    """The orchestrator could not be reached (refused, DNS, timeout)."""
    code, status = "RZ_ECONNECT", -37


class ProtocolError(Error):
    """The server's reply is not what the API promises."""
    code, status = "RZ_EPROTOCOL", -38


_BY_NAME: Dict[str, Type[Error]] = {
    "RZ_EINVAL": InvalidArgument, "RZ_ENOENT": NotFound,
    "RZ_ESYNTAX": ParseError, "RZ_EINVALID": ValidationError,
    "RZ_ECYCLE": CycleError, "RZ_ESTATE": StateError, "RZ_EEXEC": ExecError,
    "RZ_EEXISTS": AlreadyExists, "RZ_EAUTH": AuthError,
    "RZ_EFUNDS": InsufficientFunds, "RZ_EDENIED": PermissionDenied,
    "RZ_ECONNECT": ConnectError, "RZ_EPROTOCOL": ProtocolError,
}


def status_name(status: int) -> str:
    """"RZ_ECYCLE" for -7."""
    return dec(lib.rz_status_name(status))


def from_status(status: int, diagnostics: Optional[List[Diagnostic]] = None,
                context: str = "") -> Error:
    """The exception for a negative status, with rz_error_last()'s detail
    when it is about this failure (else the status's generic text)."""
    name = status_name(status)
    last = lib.rz_error_last().contents
    if last.code == status and last.message:
        msg = dec(last.message)
        file, line, col, ptr = dec(last.file), last.line, last.column, dec(last.pointer)
    else:
        msg = dec(lib.rz_strerror(status))
        file, line, col, ptr = "", 0, 0, ""
    if context:
        msg = "%s: %s" % (context, msg)
    cls = _BY_NAME.get(name, Error)
    return cls(msg, code=name, status=status, file=file, line=line, column=col,
               pointer=ptr, diagnostics=diagnostics)


def check(status: int, context: str = "") -> int:
    """Raise for a negative status; return it otherwise."""
    if status < 0:
        raise from_status(status, context=context)
    return status
