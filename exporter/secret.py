"""Secrets (tokens, passwords, signing keys) that never show up where text goes.

A :class:`Secret` prints as ``'***'`` in reprs, messages, ``check`` output and anything
else that formats it; only :meth:`Secret.reveal` gives the value, at the one place it is
used (a header, an HMAC key). It comes from the environment or from a file, so it need
not sit on a command line (visible in ``ps``) or in a config file shared with others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from exporter.errors import UsageError
from exporter.files import open_regular

SECRET_FILE_MAX_BYTES = 64 << 10
"""A token, password or key file is small; a larger file is a wrong path, not read whole."""


class Secret:
    """A value that is only ever revealed on purpose."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str = "a literal") -> None:
        if not value:
            raise UsageError(f"secret from {origin} is empty")
        self._value = value
        self.origin = origin
        """Where it came from (``environment variable TOKEN``), safe to print."""

    @classmethod
    def from_env(cls, name: str) -> Secret:
        value = os.environ.get(name)
        if value is None:
            raise UsageError(f"environment variable {name} is not set (it should hold a secret)")
        return cls(value, f"environment variable {name}")

    @classmethod
    def from_file(cls, path: str) -> Secret:
        """The file's text without its final newline (as ``echo token > file`` leaves it)."""
        try:  # a symlink is followed (mounted secrets are links), a FIFO never waited on
            with open(open_regular(path, os.O_RDONLY, follow=True), "rb") as f:
                data = f.read(SECRET_FILE_MAX_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read secret file {path}: {exc.strerror}") from None
        except ValueError:  # a NUL in the path
            raise UsageError(f"secret file path {path!r} is not a valid path") from None
        if len(data) > SECRET_FILE_MAX_BYTES:
            raise UsageError(
                f"secret file {path} is larger than {SECRET_FILE_MAX_BYTES} bytes: not a secret"
            )
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"secret file {path} is not UTF-8 text") from None
        return cls(value.removesuffix("\n").removesuffix("\r"), f"file {path}")

    @classmethod
    def load(cls, *, env: str | None = None, file: str | None = None) -> Secret | None:
        """From ``env`` or ``file`` (not both), or None when neither is given."""
        if env is not None and file is not None:
            raise UsageError("give a secret by environment variable or by file, not both")
        if env is not None:
            return cls.from_env(env)
        if file is not None:
            return cls.from_file(file)
        return None

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('***' from {self.origin})"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def stalwart_signature(key: Secret, body: bytes) -> str:
    """Stalwart's webhook ``X-Signature``: base64 of HMAC-SHA256(key, body). The http
    driver signs with it, the http source checks with it: one definition for both ends."""
    digest = hmac.new(key.reveal().encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")
