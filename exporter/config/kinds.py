"""What a setting's value can be, written once for TOML and the command line alike.

A kind reads its value from a TOML table (recording a problem at the key's line and
keeping the default when it is wrong), parses it from a command-line argument (a
ValueError says what is wrong, argparse shows it), adds its argparse option, and writes
a value back as TOML spells it (the example and ``check`` show defaults so). What a value
means is the kind's too: a :class:`Count` or :class:`Seconds` made with ``zero_is_none``
reads 0 as "no limit" in both places (:meth:`Kind.land`).
"""

from __future__ import annotations

import argparse
import grp
import ipaddress
import math
import os
import pwd
import re
from collections.abc import Callable, Sequence
from typing import Any

from drivers.http import check_url, is_credential_header, printable_url
from exporter.catalog.versions import Version, format_version, parse_version
from exporter.config.toml import Table, hint
from exporter.delivery.destinations import (
    SCHEMES,
    Destination,
    parse_destination,
    printable_destination,
)
from exporter.errors import FilterSyntaxError, UsageError
from exporter.files import place_problem
from exporter.filter import EventFilter, compile_filter
from exporter.formats.spec import parse_fields, parse_include
from exporter.observe.text import printable
from exporter.secret import Secret


class Required:
    """The default of a setting that has none: the key must be written."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = Required()


class Kind:
    """What every kind has; where a kind says nothing else, its value is a string."""

    metavar: str | None = None

    def read(self, t: Table, key: str, default: Any) -> Any:
        """The value of ``key`` in ``t``, or ``default`` (absent, or a problem recorded)."""
        return t.text(key, None if default is REQUIRED else default)

    def parse(self, text: str) -> Any:
        """The value a command-line argument gives; ValueError says why it cannot."""
        return text

    def land(self, value: Any) -> Any:
        """What the setting's field holds for ``value``."""
        return value

    def literal(self, value: Any) -> str:
        """``value`` as TOML writes it."""
        return _toml_string(str(value))

    def shown(self, value: Any) -> str:
        """``value`` as ``check`` shows it (never a secret)."""
        return self.literal(value)

    def toml_keys(self, key: str) -> tuple[str, ...]:
        """The TOML keys of a setting named ``key``."""
        return (key,)

    def flags(self, flag: str) -> tuple[str, ...]:
        """The command-line options of a setting whose option is ``flag``."""
        return (flag,)

    def add_option(self, group: Any, flag: str, *, default: Any, help: str, **more: Any) -> None:
        group.add_argument(
            flag, type=self._argument, default=default, metavar=self.metavar, help=help, **more
        )

    def from_args(self, args: argparse.Namespace, dest: str) -> Any:
        """The value the command line gave (UsageError if it cannot be used)."""
        return getattr(args, dest)

    def _argument(self, text: str) -> Any:
        try:
            return self.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


class Text(Kind):
    """A string; with ``empty_is_none``, ``""`` means none (the field holds None)."""

    def __init__(
        self,
        *,
        nonempty: bool = False,
        empty_is_none: bool = False,
        max_bytes: int | None = None,
        metavar: str | None = None,
        file_we_write: bool = False,
    ) -> None:
        self.nonempty = nonempty
        self.empty_is_none = empty_is_none
        self.max_bytes = max_bytes
        self.metavar = metavar
        self.file_we_write = file_we_write
        """The path of a file we create or write: its place is checked (files.place_problem)."""

    def read(self, t: Table, key: str, default: Any) -> Any:
        if default is REQUIRED:
            value = t.text(key, None, nonempty=self.nonempty)
        else:
            value = t.text(key, "" if default is None else default, nonempty=self.nonempty)
        if self.max_bytes is not None and value and len(os.fsencode(value)) > self.max_bytes:
            t.problem(key, f"longer than {self.max_bytes} bytes")
        if self.file_we_write and value and key in t.data:
            problem = place_problem(value)
            if problem is not None:
                t.problem(key, problem)
        return self.land(value)

    def land(self, value: Any) -> Any:
        return None if self.empty_is_none and value == "" else value

    def literal(self, value: Any) -> str:
        return _toml_string("" if value is None else str(value))

    def shown(self, value: Any) -> str:
        return str(value) if value else "none"


class Choice(Kind):
    """One of ``allowed``; ``make`` turns the word into what the field holds (an enum)."""

    def __init__(self, allowed: Sequence[str], make: Callable[[str], Any] = str) -> None:
        self.allowed = tuple(allowed)
        self.make = make

    def read(self, t: Table, key: str, default: Any) -> Any:
        return self.land(t.choice(key, str(default), self.allowed))

    def land(self, value: Any) -> Any:
        return self.make(value)

    def shown(self, value: Any) -> str:
        return str(value)

    def add_option(self, group: Any, flag: str, *, default: Any, help: str, **more: Any) -> None:
        group.add_argument(flag, choices=self.allowed, default=default, help=help, **more)


class _Number(Kind):
    """At least ``minimum``; with ``zero_is_none``, 0 means no limit (the field holds None)."""

    what = "a number"

    def __init__(
        self,
        minimum: float,
        *,
        maximum: float | None = None,
        positive: bool = False,
        zero_is_none: bool = False,
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.positive = positive
        """0 itself is refused (a timeout of 0 s would never let anything through)."""
        self.zero_is_none = zero_is_none

    def parse(self, text: str) -> Any:
        try:
            value = self._make(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {self.what}") from None
        if not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite number")
        if value < self.minimum:
            raise ValueError(f"{text!r} must be at least {self.minimum:g}")
        beyond = self._beyond(value)
        if beyond is not None:
            raise ValueError(f"{text!r} {beyond}")
        return value

    def _beyond(self, value: float) -> str | None:
        """What is wrong with ``value`` past its minimum (the table's reader checks that)."""
        if self.positive and value <= 0:
            return "must be more than 0"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum:g}"
        return None

    def checked(self, t: Table, key: str, value: Any, default: Any) -> Any:
        """``value`` as read, or ``default`` with a problem at ``key``'s own line."""
        beyond = None if value is default else self._beyond(value)
        if beyond is None:
            return value
        t.problem(key, f"{beyond}, not {value:g}")
        return default

    def _make(self, text: str) -> float:
        return float(text)

    def land(self, value: Any) -> Any:
        return None if self.zero_is_none and value == 0 else value


class Count(_Number):
    """A whole number."""

    what = "a whole number"

    def __init__(
        self,
        minimum: int,
        *,
        maximum: int | None = None,
        zero_is_none: bool = False,
        metavar: str = "N",
    ) -> None:
        super().__init__(minimum, maximum=maximum, zero_is_none=zero_is_none)
        self.metavar = metavar

    def read(self, t: Table, key: str, default: Any) -> Any:
        value = t.integer(key, default, int(self.minimum))
        return self.land(self.checked(t, key, value, default))

    def _make(self, text: str) -> float:
        return int(text)

    def literal(self, value: Any) -> str:
        return "0" if value is None else str(value)

    def shown(self, value: Any) -> str:
        return "none" if value is None else str(value)


class Seconds(_Number):
    """A number of seconds."""

    metavar = "SECONDS"
    what = "a number of seconds"

    def read(self, t: Table, key: str, default: Any) -> Any:
        value = t.number(key, default, minimum=self.minimum)
        return self.land(self.checked(t, key, value, default))

    def literal(self, value: Any) -> str:
        return "0" if value is None else repr(float(value))

    def shown(self, value: Any) -> str:
        return "none" if value is None else f"{value:g} s"


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*([0-9]+)\s*(?:([kmgt])(?:i?b)?|b)?\s*", re.IGNORECASE)
SIZE_UNITS = "a whole number of bytes, or with a unit: 64k, 1MiB, 2G (k = 1024)"


def parse_size(text: str) -> int:
    """``1048576``, ``1MiB``, ``64k``, ``64 KB``, ``2G``: bytes, in powers of 1024 as
    Dovecot reads sizes (a ``B`` or ``iB`` after the unit is optional)."""
    found = _SIZE.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a size ({SIZE_UNITS})")
    return int(found[1]) * _UNITS[(found[2] or "").lower()]


class Bytes(Kind):
    """A size in bytes, at least ``minimum``: a whole number, or a string with a unit."""

    metavar = "BYTES"

    def __init__(self, minimum: int = 1) -> None:
        self.minimum = minimum

    def read(self, t: Table, key: str, default: Any) -> Any:
        value = t.whole_or_text(key, "a whole number of bytes or a string with a unit")
        if value is None:
            return default
        if isinstance(value, str):
            try:
                value = parse_size(value)
            except ValueError:
                t.problem(key, f"{value!r} is not allowed (allowed: {SIZE_UNITS})")
                return default
        if value < self.minimum:
            t.problem(key, f"must be at least {self.minimum}, not {value}")
            return default
        return value

    def parse(self, text: str) -> Any:
        value = parse_size(text)
        if value < self.minimum:
            raise ValueError(f"{text!r} must be at least {self.minimum}")
        return value

    def literal(self, value: Any) -> str:
        return str(value)


class Switch(Kind):
    """true or false; its option, without a value, sets the other one than the default."""

    def read(self, t: Table, key: str, default: Any) -> Any:
        return t.boolean(key, default)

    def literal(self, value: Any) -> str:
        return "true" if value else "false"

    def add_option(self, group: Any, flag: str, *, default: Any, help: str, **more: Any) -> None:
        group.add_argument(
            flag, action="store_const", const=not default, default=default, help=help, **more
        )


class SecretFrom(Kind):
    """A secret, never written in the file or on a command line: ``KEY_env`` names the
    variable that holds it, ``KEY_file`` the file (``--FLAG-env``, ``--FLAG-file``)."""

    def read(self, t: Table, key: str, default: Any) -> Any:
        return t.secret(key)

    def literal(self, value: Any) -> str:
        return '""'

    def shown(self, value: Any) -> str:
        return "none" if value is None else f"*** ({value.origin})"

    def toml_keys(self, key: str) -> tuple[str, ...]:
        return (f"{key}_env", f"{key}_file")

    def flags(self, flag: str) -> tuple[str, ...]:
        return (f"{flag}-env", f"{flag}-file")

    def add_option(self, group: Any, flag: str, *, default: Any, help: str, **more: Any) -> None:
        env, file = self.flags(flag)
        group.add_argument(env, metavar="VAR", help=f"{help} from this variable")
        group.add_argument(file, metavar="PATH", help=f"{help} from this file")

    def from_args(self, args: argparse.Namespace, dest: str) -> Any:
        return Secret.load(env=getattr(args, f"{dest}_env"), file=getattr(args, f"{dest}_file"))


def parse_file_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise ValueError(f"{text!r} is not an octal mode like 0600") from None
    if not 0 <= mode <= 0o777:
        raise ValueError(f"{text!r} is not a file mode (0000 to 0777)")
    return mode


class FileMode(Kind):
    """Permission bits, in octal as chmod takes them: ``"0600"``."""

    metavar = "OCTAL"

    def read(self, t: Table, key: str, default: Any) -> Any:
        mode = t.parse(key, parse_file_mode, default=f"{default:04o}", allowed="0000 to 0777")
        return default if mode is None else mode

    def parse(self, text: str) -> Any:
        return parse_file_mode(text)

    def literal(self, value: Any) -> str:
        return f'"{value:04o}"'

    def shown(self, value: Any) -> str:
        return f"{value:04o}"


_ID_MAX = (1 << 32) - 2
"""The largest uid or gid: 4294967295 is (uid_t) -1, chown's "leave it"."""


class Account(Kind):
    """A user (or, with ``group``, a group): its name or numeric id, a string or a whole
    number in TOML. A name is resolved to its id when the configuration is read (pwd,
    grp), so that an unknown one is a problem at the key's line, not a failure at start;
    a numeric id is taken as it is (it need not have a name). ``""`` is none: the
    process's own."""

    metavar = "NAME|ID"

    def __init__(self, *, group: bool = False) -> None:
        self.group = group

    @property
    def _what(self) -> str:
        return "group" if self.group else "user"

    def read(self, t: Table, key: str, default: Any) -> Any:
        value = t.whole_or_text(key, f"a {self._what} name or a numeric id")
        if value is None:
            return default
        try:
            return self.parse(str(value))
        except ValueError as exc:
            t.problem(key, str(exc))
            return default

    def parse(self, text: str) -> int | None:
        if not text:
            return None
        if text.isascii() and text.lstrip("-").isdigit():
            if not 0 <= int(text) <= _ID_MAX:
                raise ValueError(f"{text} is not a {self._what} id (0 to {_ID_MAX})")
            return int(text)
        try:
            if self.group:
                return grp.getgrnam(text).gr_gid
            return pwd.getpwnam(text).pw_uid
        except (KeyError, ValueError):  # ValueError: a NUL in the name
            kind = "group" if self.group else "user"
            raise ValueError(
                f"no {kind} {printable(text)!r} on this system (a name in "
                f"{'/etc/group' if self.group else '/etc/passwd'} or its NSS, or a numeric id)"
            ) from None

    def land(self, value: Any) -> Any:
        return self.parse(value) if isinstance(value, str) else value

    def literal(self, value: Any) -> str:
        return '""' if value is None else str(value)

    def shown(self, value: Any) -> str:
        """``dovecot (97)``; a bare id without a name; ``this process's`` for none."""
        if value is None:
            return "this process's"
        try:
            name = grp.getgrgid(value).gr_name if self.group else pwd.getpwuid(value).pw_name
        except (KeyError, OverflowError):
            return str(value)
        return f"{printable(name)} ({value})"


class Statuses(Kind):
    """HTTP statuses: a TOML list of numbers, a comma-separated list on a command line."""

    metavar = "LIST"

    def read(self, t: Table, key: str, default: Any) -> Any:
        return frozenset(t.integers(key, sorted(default)))

    def parse(self, text: str) -> Any:
        try:
            return frozenset(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise ValueError(
                f"{text!r} is not a comma-separated list of statuses like 429,503"
            ) from None

    def literal(self, value: Any) -> str:
        return f"[{', '.join(map(str, sorted(value)))}]"

    def shown(self, value: Any) -> str:
        return ",".join(map(str, sorted(value)))


class Headers(Kind):
    """Extra request headers: a TOML table of strings, ``--FLAG 'NAME: VALUE'`` repeated.

    A credential is refused in both, for its own reason: Authorization in a file read by
    whoever reads it, any credential on a command line that ``ps`` shows every user."""

    metavar = "'NAME: VALUE'"

    def read(self, t: Table, key: str, default: Any) -> Any:
        headers = t.strings_table(key)
        for name in headers:
            if name.lower() in ("authorization", "proxy-authorization"):
                t.problem(
                    key,
                    f"{name!r} is refused here (a secret in the config file is read by "
                    "whoever reads the file): use bearer_token_env / bearer_token_file, or "
                    "basic_user with basic_password_env / basic_password_file",
                )
        return headers

    def parse(self, text: str) -> Any:
        name, sep, value = text.partition(":")
        if not sep or not name.strip():
            raise ValueError(  # not repeated: it may be a secret, colon missing
                "a header is 'NAME: VALUE', like 'X-Source: imap01'"
            )
        if is_credential_header(name.strip()):
            raise ValueError(
                f"{printable(name.strip())!r} carries a credential, and a command line is "
                "visible to every user (ps): give it with --http-bearer-token-env/-file, or "
                "--http-basic-user with --http-basic-password-env/-file"
            )
        return name.strip(), value.strip()

    def literal(self, value: Any) -> str:
        pairs = ", ".join(f"{_toml_string(k)} = {_toml_string(v)}" for k, v in value.items())
        return f"{{ {pairs} }}" if pairs else "{}"

    def shown(self, value: Any) -> str:
        return ", ".join(sorted(value)) or "none"  # names only: a value may be a credential

    def add_option(self, group: Any, flag: str, *, default: Any, help: str, **more: Any) -> None:
        group.add_argument(
            flag,
            type=self._argument,
            action="append",
            default=[],
            metavar=self.metavar,
            help=f"{help} (repeatable)",
        )

    def from_args(self, args: argparse.Namespace, dest: str) -> Any:
        return dict(getattr(args, dest))


class Labels(Kind):
    """Loki's labels: a TOML table of label -> template, ``--FLAG NAME=TEMPLATE`` repeated
    (the options given replace the default set). Each label is judged by ``problem``
    (name, template) -> why not, a problem at ``KEY.NAME``'s line."""

    metavar = "NAME=TEMPLATE"

    def __init__(
        self, problem: Callable[[str, object], str | None], default: dict[str, str]
    ) -> None:
        self.problem = problem
        self.default = default

    def read(self, t: Table, key: str, default: Any) -> Any:
        if key not in t.data:
            return default
        labels = t.strings_table(key)
        if not labels:
            if isinstance(t.data[key], dict) and not t.data[key]:
                t.problem(key, "a stream needs at least one label")
            return default
        bad = False
        for name, template in labels.items():
            problem = self.problem(name, template)
            if problem is not None:
                t.problem(f"{key}.{name}", problem)
                bad = True
        return default if bad else labels

    def parse(self, text: str) -> Any:
        name, sep, template = text.partition("=")
        if not sep or not name.strip():
            raise ValueError("a label is NAME=TEMPLATE, like job=dovecot or host={hostname}")
        problem = self.problem(name.strip(), template)
        if problem is not None:
            raise ValueError(f"label {printable(name.strip())}: {problem}")
        return name.strip(), template

    def literal(self, value: Any) -> str:
        pairs = ", ".join(f"{k} = {_toml_string(v)}" for k, v in value.items())
        return f"{{ {pairs} }}" if pairs else "{}"

    def shown(self, value: Any) -> str:
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"

    def add_option(self, group: Any, flag: str, *, default: Any, help: str, **more: Any) -> None:
        group.add_argument(
            flag,
            type=self._argument,
            action="append",
            default=None,
            metavar=self.metavar,
            help=f"{help} (repeatable; replaces the default set)",
        )

    def from_args(self, args: argparse.Namespace, dest: str) -> Any:
        given = getattr(args, dest)
        return dict(self.default) if given is None else dict(given)


class Urls(Kind):
    """More http(s) URLs: a TOML list of strings, each checked where it is written
    (``urls[1]``); ``--FLAG URL`` repeated on a command line. Shown without queries."""

    metavar = "URL"

    def read(self, t: Table, key: str, default: Any) -> Any:
        found = t.strings(key, None)
        if found is None:
            return default
        good = []
        for index, text in enumerate(found):
            try:
                check_url(text)
            except UsageError as exc:
                t.problem(f"{key}[{index}]", str(exc))
                continue
            good.append(text)
        return tuple(good)

    def parse(self, text: str) -> Any:
        try:
            check_url(text)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return text

    def literal(self, value: Any) -> str:
        return _toml_list(value)

    def shown(self, value: Any) -> str:
        return " ".join(printable_url(text) for text in value) or "none"

    def add_option(self, group: Any, flag: str, *, default: Any, help: str, **more: Any) -> None:
        group.add_argument(
            flag,
            type=self._argument,
            action="append",
            default=[],
            metavar=self.metavar,
            help=f"{help} (repeatable)",
        )

    def from_args(self, args: argparse.Namespace, dest: str) -> Any:
        return tuple(getattr(args, dest))


class HostPort(Kind):
    """``HOST:PORT`` (a field pair); with ``off``, ``""`` means none."""

    def __init__(self, *, off: bool = False) -> None:
        self.off = off

    def read(self, t: Table, key: str, default: Any) -> Any:
        allowed = 'HOST:PORT, or "" for none' if self.off else "HOST:PORT"
        found = t.parse(key, self.parse, default=self._text(default), allowed=allowed)
        return default if found is None and key in t.data else found

    def parse(self, text: str) -> Any:
        if self.off and not text:
            return None
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(text)
        host = host.strip("[]")
        if not _is_host(host):
            raise ValueError(text)
        return host, int(port)

    def literal(self, value: Any) -> str:
        return _toml_string(self._text(value))

    @staticmethod
    def _text(value: tuple[str, int] | None) -> str:
        if value is None:
            return ""
        host, port = value
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _is_host(host: str) -> bool:
    """An IP address, or a host name of letters, digits and hyphens (``256.1.1.1``, which
    only looks like an address, is neither)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return not host.replace(".", "").isdigit() and _HOST_NAME.fullmatch(host) is not None
    return True


class DovecotVersion(Kind):
    """A Dovecot version such as ``2.3.21``; ``""`` for none."""

    metavar = "VERSION"
    ALLOWED = 'a Dovecot version such as "2.3.21" or "2.4.1", or "" for none'

    def read(self, t: Table, key: str, default: Any) -> Any:
        return t.parse(key, self.parse, default="", allowed=self.ALLOWED)

    def parse(self, text: str) -> Version | None:
        if not text:
            return None
        version = parse_version(text)
        if version is None:
            raise ValueError(text)
        return version

    def literal(self, value: Any) -> str:
        return _toml_string("" if value is None else format_version(value))


class DestinationText(Kind):
    """Where events go: ``file:PATH``, ``http://...``, ... (see :mod:`.destinations`). A
    file destination's place is checked (:func:`~exporter.files.place_problem`) in TOML
    and on the command line alike: a missing directory or a FIFO is refused at start."""

    metavar = "DEST"

    def read(self, t: Table, key: str, default: Any) -> Any:
        destination = t.parse(
            key, parse_destination, allowed=", ".join(SCHEMES), shown=printable_destination
        )
        if destination is not None:
            problem = self.problem(destination)
            if problem is not None:
                t.problem(key, problem)
        return destination

    def parse(self, text: str) -> Any:
        try:
            destination = parse_destination(text)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        problem = self.problem(destination)
        if problem is not None:
            raise ValueError(f"{printable_destination(text)}: {problem}")
        return destination

    @staticmethod
    def problem(destination: Destination) -> str | None:
        """Why events cannot go to ``destination``, said before the first batch."""
        return place_problem(destination.target) if destination.kind == "file" else None

    def land(self, value: Any) -> Any:
        return parse_destination(value) if isinstance(value, str) else value

    def literal(self, value: Any) -> str:
        if value.is_http or value.is_nats or not value.target:
            return _toml_string(value.target or value.kind)
        return _toml_string(f"{value.kind}:{value.target}")


class NatsServers(Kind):
    """``nats://HOST:PORT[,HOST:PORT...]``: the servers of a NATS cluster (a tuple)."""

    metavar = "URL"

    def read(self, t: Table, key: str, default: Any) -> Any:
        from drivers.nats import parse_servers

        text = t.text(key, None if default is REQUIRED else ",".join(default), nonempty=True)
        if text is None:
            return None
        try:
            return parse_servers(text)
        except UsageError as exc:
            t.problem(key, str(exc))
            return None

    def literal(self, value: Any) -> str:
        return _toml_string("nats://" + ",".join(v.split("://", 1)[1] for v in value))


class Words(Kind):
    """A set of words from ``allowed``: a TOML list, a comma or space separated list on a
    command line (where :class:`~exporter.formats.FormatSpec` names a wrong one)."""

    metavar = "LIST"

    def __init__(self, allowed: Sequence[str]) -> None:
        self.allowed = tuple(allowed)

    def read(self, t: Table, key: str, default: Any) -> Any:
        words = t.strings(key, None)
        if words is None:
            return default
        unknown = [word for word in words if word not in self.allowed]
        if unknown:
            t.problem(
                key,
                f"{unknown[0]!r} is not allowed (allowed: {', '.join(self.allowed)})"
                + hint(unknown[0], self.allowed),
            )
            return default
        return frozenset(words)

    def parse(self, text: str) -> Any:
        return parse_include(text)

    def literal(self, value: Any) -> str:
        return _toml_list([word for word in self.allowed if word in value])

    def shown(self, value: Any) -> str:
        return " ".join(word for word in self.allowed if word in value) or "(nothing)"


class Names(Kind):
    """Names in order: a TOML list, a comma or space separated list on a command line."""

    metavar = "LIST"

    def read(self, t: Table, key: str, default: Any) -> Any:
        return tuple(t.strings(key, default))

    def parse(self, text: str) -> Any:
        return parse_fields(text)

    def literal(self, value: Any) -> str:
        return _toml_list(value)

    def shown(self, value: Any) -> str:
        return " ".join(value) or "all"


class Filter(Kind):
    """A Dovecot event filter; a command line's is compiled where it is used, which says
    ``--filter:`` in its message."""

    metavar = "EXPR"

    def read(self, t: Table, key: str, default: Any) -> Any:
        source = t.text(key, None, nonempty=True)
        if source is None:
            return None
        try:
            return compile_filter(source)
        except FilterSyntaxError as exc:
            t.problem(key, f"{exc}\n{exc.caret()}")
            return None

    def land(self, value: Any) -> Any:
        return compile_filter(value) if isinstance(value, str) else value

    def literal(self, value: Any) -> str:
        return _toml_string(value.source if isinstance(value, EventFilter) else str(value))


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_list(words: Sequence[str]) -> str:
    return "[" + ", ".join(map(_toml_string, words)) + "]"
