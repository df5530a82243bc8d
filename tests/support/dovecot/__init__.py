"""A throwaway Dovecot 2.3 for tests/e2e/test_dovecot_interop.py: found, configured, run as a
child process and stopped by PID, and the IMAP traffic that makes it export events.

* :func:`find_dovecot`: the ``dovecot`` and ``doveadm`` binaries (Debian's ``dovecot-core``),
  or None when they are not installed.
* :class:`DovecotSetup`: a private directory holding the configuration (rendered from
  ``dovecot.conf.template``), a passwd-file with the test users, their homes, and
  Dovecot's base_dir, state_dir and log. Nothing of the system's Dovecot is used: no
  /etc/dovecot, no /run/dovecot, no port 143.
* :class:`Dovecot`: ``dovecot -F -c CONFIG`` (the master in the foreground) as a child
  process. ``stop()`` sends SIGTERM to the master by its PID, then SIGKILL, by PID, to any
  of its processes still alive (each checked by PID and start time, never by name).
* :func:`drive_imap`: logins (one failed) and commands with :mod:`imaplib`, some of them
  with arguments full of bytes that need escaping.

Run as root (as in CI containers) the master and its privileged services run as root, the
internal services as ``dovecot``, the login processes as ``dovenull`` (the users the
Debian package creates) and the mail sessions as ``nobody``: Dovecot refuses mail access
for UID 0. Run as another user, every process runs as that user.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import wait_until

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "dovecot.conf.template"
HOST = "127.0.0.1"
OTHER_HOST = "127.0.0.2"
"""The failed login comes from here: Dovecot's auth penalty (2 s and more before every
later login) is kept per client IP, so the logins from 127.0.0.1 are not delayed."""
PASSWORD = "interop-secret"
USERS = ("testuser", "lastuser")
"""``lastuser`` logs in last: its ``mail_user_session_finished`` event tells that the
traffic has reached the stats process."""


# -- the binaries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Binaries:
    dovecot: str
    doveadm: str

    def version(self) -> str:
        done = subprocess.run(
            [self.dovecot, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip() or done.stderr.strip()


def _find(name: str, *fallbacks: str) -> str | None:
    found = shutil.which(name)
    if found is not None:
        return found
    return next((path for path in fallbacks if os.access(path, os.X_OK)), None)


def find_dovecot() -> Binaries | None:
    """Dovecot's master and doveadm (both in dovecot-core), wherever PATH leaves sbin."""
    dovecot = _find("dovecot", "/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
    doveadm = _find("doveadm", "/usr/bin/doveadm", "/usr/local/bin/doveadm")
    if dovecot is None or doveadm is None:
        return None
    return Binaries(dovecot, doveadm)


# -- users ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identities:
    """Who Dovecot's processes run as; the values of the template's user placeholders."""

    internal_user: str
    internal_group: str
    login_user: str
    mail_uid: int
    mail_gid: int
    login_chroot: str
    anvil_chroot: str
    auth_worker_user: str

    @classmethod
    def for_this_process(cls) -> Identities:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid())
            group = grp.getgrgid(os.getegid()).gr_name
            return cls(me.pw_name, group, me.pw_name, me.pw_uid, me.pw_gid, "", "", me.pw_name)
        internal = _user("dovecot", "nobody")
        login = _user("dovenull", "nobody")
        mail = _user("nobody")
        return cls(
            internal.pw_name,
            grp.getgrgid(internal.pw_gid).gr_name,
            login.pw_name,
            mail.pw_uid,
            mail.pw_gid,
            "login",  # the defaults
            "empty",
            "root",
        )


def _user(*names: str) -> pwd.struct_passwd:
    for name in names:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise LookupError(f"none of the users {names} exists")


# -- the configuration ----------------------------------------------------------------------


def free_port() -> int:
    """An unusual port nothing listens on right now, below Linux's ephemeral range (32768
    and up) so that no outgoing connection takes it before Dovecot binds it."""
    rng = random.Random()
    for _ in range(50):
        port = rng.randrange(20000, 30000)
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind((HOST, port))
            return port
    with socket.socket() as sock:  # all 50 taken: let the kernel choose
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class DovecotSetup:
    """Dovecot's private directory. It is made under the system's temporary directory
    (0755, not under pytest's 0700 one) so that the unprivileged processes (login, mail
    sessions) can reach the sockets in its base_dir."""

    top: Path
    config: Path
    log: Path
    imap_port: int

    @classmethod
    def create(
        cls,
        *,
        ours_json_url: str,
        ours_tabtext_url: str,
        capture_url: str,
        event_filter: str,
        identities: Identities | None = None,
    ) -> DovecotSetup:
        ids = identities or Identities.for_this_process()
        top = Path(tempfile.mkdtemp(prefix="ee-dovecot-", dir="/tmp"))
        top.chmod(0o755)
        lines = []
        for user in USERS:
            home = top / "home" / user
            home.mkdir(parents=True)
            os.chown(home, ids.mail_uid, ids.mail_gid)
            lines.append(f"{user}:{{PLAIN}}{PASSWORD}:{ids.mail_uid}:{ids.mail_gid}::{home}::\n")
        (top / "home").chmod(0o755)
        passwd = top / "passwd"
        passwd.write_text("".join(lines))
        passwd.chmod(0o644)
        imap_port = free_port()
        values = {
            "DIR": str(top),
            "INTERNAL_USER": ids.internal_user,
            "INTERNAL_GROUP": ids.internal_group,
            "LOGIN_USER": ids.login_user,
            "MAIL_UID": str(ids.mail_uid),
            "LOGIN_CHROOT": ids.login_chroot,
            "ANVIL_CHROOT": ids.anvil_chroot,
            "AUTH_WORKER_USER": ids.auth_worker_user,
            "IMAP_PORT": str(imap_port),
            "OURS_JSON_URL": ours_json_url,
            "OURS_TABTEXT_URL": ours_tabtext_url,
            "CAPTURE_URL": capture_url,
            "FILTER": event_filter,
        }
        text = TEMPLATE.read_text()
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        settings = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        left = re.findall(r"@[A-Z_]+@", "\n".join(settings))
        assert not left, f"placeholders left unfilled: {left}"
        config = top / "dovecot.conf"
        config.write_text(text)
        return cls(top, config, top / "dovecot.log", imap_port)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def remove(self) -> None:
        shutil.rmtree(self.top, ignore_errors=True)


# -- the processes --------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot): with the PID, it names one
    process, so a PID reused later is never signalled by mistake."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rpartition(")")[2].split()[19])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


@dataclass
class Dovecot:
    """The master as a child process; ``dovecot -F`` keeps it in the foreground."""

    binaries: Binaries
    setup: DovecotSetup
    proc: subprocess.Popen[bytes]
    family: dict[int, int | None] = field(default_factory=dict)
    """Every process of this Dovecot seen so far: PID -> start time."""

    @classmethod
    @contextlib.contextmanager
    def running(cls, binaries: Binaries, setup: DovecotSetup) -> Iterator[Dovecot]:
        output = (setup.top / "master.out").open("wb")
        proc = subprocess.Popen(
            [binaries.dovecot, "-F", "-c", str(setup.config)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        output.close()
        dovecot = cls(binaries, setup, proc)
        try:
            yield dovecot
        finally:
            dovecot.stop()

    def output(self) -> str:
        path = self.setup.top / "master.out"
        text = path.read_text(errors="replace") if path.exists() else ""
        return f"master output:\n{text}\nlog:\n{self.setup.log_text()}"

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Until IMAP accepts connections (or the master died: then False)."""

        def accepting() -> bool:
            if self.proc.poll() is not None:
                return True
            with (
                contextlib.suppress(OSError),
                socket.create_connection((HOST, self.setup.imap_port), timeout=1),
            ):
                return True
            return False

        return wait_until(accepting, timeout=timeout, step=0.05) and self.proc.poll() is None

    def note_family(self) -> None:
        """Remember the master's descendants, to be sure they are gone after stop()."""
        tree = _children()
        todo = [self.proc.pid]
        for _ in range(10_000):  # bounded walk of the process tree
            if not todo:
                break
            pid = todo.pop()
            self.family.setdefault(pid, _start_time(pid))
            todo.extend(tree.get(pid, []))

    def stats_counts(self) -> dict[str, int]:
        """How many events each metric matched (= exported), from ``doveadm stats dump``."""
        done = subprocess.run(
            [self.binaries.doveadm, "-c", str(self.setup.config), "stats", "dump"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"doveadm stats dump: {done.returncode}: {done.stderr}")
        rows = [line.split("\t") for line in done.stdout.splitlines() if line]
        header = rows[0]
        name, count = header.index("metric_name"), header.index("count")
        return {row[name]: int(row[count]) for row in rows[1:]}

    def _alive(self) -> dict[int, int | None]:
        return {
            pid: started
            for pid, started in self.family.items()
            if pid != self.proc.pid and started is not None and _start_time(pid) == started
        }

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the master (it stops its processes), then SIGKILL to stragglers."""
        if self.proc.poll() is None:
            self.note_family()
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        if not wait_until(lambda: not self._alive(), timeout=timeout, step=0.05):
            for pid in self._alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            left = self._alive()
            assert wait_until(lambda: not self._alive(), timeout=timeout, step=0.05), (
                f"Dovecot processes still alive after SIGKILL: {sorted(left)}"
            )


# -- IMAP traffic ---------------------------------------------------------------------------


class Imap(imaplib.IMAP4):
    """imaplib's client, connecting from ``source`` (an address of the loopback)."""

    def __init__(self, port: int, source: str = HOST) -> None:
        self.source = source
        super().__init__(HOST, port, timeout=10)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(self.source, 0)
        )


ODD_BYTES = (
    b'tab\there \x01ctl\x1b esc "quotes" back\\slash cr\rlf\n'
    b"\xc3\xbc\xe2\x82\xac \xe2\x80\xa8 bad:\xff\xfe\xc0\xaf\xed\xa0\x80 lone\xc3"
)
"""A search key sent as a literal: Dovecot puts it in ``cmd_args``, where json and tab-text
must escape it (control bytes, quotes, U+2028, invalid UTF-8)."""

LONG = b"x" * 1500 + b"\xc3\xbc"
"""Longer than the 1000 bytes the log transport would cut (http-post cuts nothing)."""

MESSAGE = (
    b"From: Interop <interop@example.org>\r\n"
    b'Subject: caf\xc3\xa9 "interop"\r\n'
    b"\r\n"
    b"Hello from the interop test.\r\n"
)


def _search_literal(client: Imap, key: bytes) -> None:
    client.literal = key  # type: ignore[assignment]  # bytes are sent as they are
    with contextlib.suppress(imaplib.IMAP4.error):  # a BAD answer is an event too
        client.search("UTF-8", "SUBJECT")


def drive_imap(port: int) -> list[str]:
    """Logins and commands that make Dovecot emit events; what happened, for messages."""
    notes: list[str] = []
    # 1. A failed login, from another loopback address when there is one.
    try:
        bad = Imap(port, OTHER_HOST)
    except OSError as exc:
        notes.append(f"no {OTHER_HOST} ({exc}): the failed login comes from {HOST}")
        bad = Imap(port)
    try:
        bad.login(USERS[0], "wrong password")
    except imaplib.IMAP4.error as exc:
        notes.append(f"failed login: {exc}")
    bad.logout()
    # 2. A session with a bit of everything.
    client = Imap(port)
    client.login(USERS[0], PASSWORD)
    client.select("INBOX")
    client.append("INBOX", None, None, MESSAGE)
    client.append("INBOX", "(\\Flagged)", None, MESSAGE.replace(b"interop", b"second"))
    _search_literal(client, ODD_BYTES)
    _search_literal(client, LONG)
    client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    client.store("1", "+FLAGS", "(\\Seen)")
    client.status("INBOX", "(MESSAGES UNSEEN)")
    client.create('"Odd \\"name\\""')
    client.list('""', "*")
    client.noop()
    with contextlib.suppress(imaplib.IMAP4.error):
        client.xatom("XNOSUCHCOMMAND", "arg")
    client.close()
    client.logout()
    # 3. The last session: its end tells that the traffic is over.
    last = Imap(port)
    last.login(USERS[1], PASSWORD)
    last.noop()
    last.logout()
    return notes
