"""Errors the engine raises; the server maps each class to one HTTP status, so callers never guess."""

from __future__ import annotations


class AONodeError(Exception):
    """Base class: `str(err)` is a message fit to show a user."""

    status = 500


class NotFound(AONodeError):
    status = 404


class BadInput(AONodeError):
    status = 400


class Unauthorized(AONodeError):
    status = 401


class TooLarge(AONodeError):
    status = 413


class Busy(AONodeError):
    status = 503


class DamagedRecord(AONodeError):
    """A stored record does not match its checksum, signature or id: the store was damaged or edited.
    Never computed on as if it were right; the message names the record."""

    status = 500


class ModuleError(AONodeError):
    """An image cannot be found, verified, translated or linked."""

    status = 400


class WasmError(AONodeError):
    """A message could not be evaluated; the process keeps its state from before the message."""

    status = 422


class ComputeLimitExceeded(WasmError):
    pass


class MemoryLimitExceeded(WasmError):
    pass


class WasmTrap(WasmError):
    pass


class DataUnavailable(WasmError):
    """Data a message needs (WeaveDrive through a gateway) cannot be had right now. The message is not
    computed: its slot stays pending and a later compute retries it, so no node ever records an answer
    that depends on a gateway's outage."""

    status = 503


class StartupRefused(AONodeError):
    """The node cannot start as configured (a wallet other than its database's, an unreachable bucket):
    `aonode serve` prints the message as one line and exits non-zero."""


class SchemaTooNew(StartupRefused):
    """The store was written by a newer aonode (a schema version this one does not know): it would misread it."""
