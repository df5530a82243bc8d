"""The one way to open a file we write (or read back, like the tail state): ours, or refused.

Every file the program creates or writes goes through here: the file destination, the
dead-letter file, the tail source's state file and its temporary, a spool (SQLite opens it
itself: see :func:`exporter.delivery.spool.claim_spool_files`), the ``--output`` of ``export`` and
of ``spool export``. Whoever can write the directory must not be able to make us write
somewhere else or wait forever:

* no symlink at the path is followed (``O_NOFOLLOW``): a link to a victim file is
  refused and the victim stays as it was;
* only a regular file is taken. The open is non-blocking (``O_NONBLOCK``), so a FIFO,
  a device or a socket is refused at the open, never waited on (a FIFO without a reader
  fails there with ENXIO, one with a reader at the ``fstat``), then the descriptor is made
  blocking again;
* a file we create gets mode 0600 (or its setting's mode; the umask can only take bits
  away);
* a temporary file is created exclusively (``O_EXCL``, a name of its own) beside its
  target and renamed over it.

A refusal is a :class:`RefusedFileError`, an OSError whose ``strerror`` says what was
found and why it is refused, so every ``except OSError`` that reports ``strerror`` tells
the operator the real reason.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat

CREATED_MODE = 0o600
"""The mode of every file we create, unless a setting says otherwise (``file_mode``)."""
STDOUT_NAMES = frozenset({"-", "/dev/stdout"})
"""``--output`` names that mean standard output, written as it is (a pipe, a terminal:
what the caller set up). ``/dev/stdout`` is a symlink, which any other path would not
be allowed to be."""

_ALWAYS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAYBE_REFUSED = frozenset({errno.ELOOP, errno.ENXIO, errno.EISDIR})
"""What ``open`` says for a symlink (with O_NOFOLLOW), a FIFO without a reader or a
socket (with O_NONBLOCK), a directory (for writing): the refusal then says which."""
_KINDS = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


class RefusedFileError(OSError):
    """The path names something that is not a regular file of ours: a symlink, a FIFO,
    a socket, a device or a directory."""


def open_regular(
    path: str | os.PathLike[str], flags: int, mode: int = CREATED_MODE, *, follow: bool = False
) -> int:
    """``os.open`` of a regular file that is not a symlink, without ever waiting on a FIFO
    or a device; ``flags``: the access and creation flags (``O_WRONLY | O_APPEND |
    O_CREAT``, ``O_RDONLY``, ...). Never pass ``O_TRUNC`` (it would act before the check):
    :func:`open_output` truncates once the file is known to be regular. ``follow``: a
    symlink at the path is followed, to a regular file still (a file we only read that
    its owner publishes by link, as Kubernetes mounts secrets)."""
    assert not flags & os.O_TRUNC, "truncate after the check: open_output"
    always = _ALWAYS & ~os.O_NOFOLLOW if follow else _ALWAYS
    try:
        fd = os.open(path, flags | always, mode)
    except OSError as exc:
        refused = _refusal(path) if exc.errno in _MAYBE_REFUSED else None
        if refused is not None:
            raise refused from None
        raise
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise _refused(path, found.st_mode)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_output(path: str | os.PathLike[str], mode: int = CREATED_MODE) -> int:
    """A regular file opened for writing from its start (created ``mode``, emptied once
    it is known to be regular): ``--output FILE``."""
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT, mode)
    try:
        os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def means_stdout(output: str | None) -> bool:
    """Whether ``--output`` (None: not given) names standard output."""
    return output is None or output in STDOUT_NAMES


def check_regular(path: str | os.PathLike[str]) -> None:
    """Nothing at ``path``, or a regular file (not followed): else RefusedFileError. For a
    file another program opens (SQLite's -wal and -shm) and a target about to be renamed
    over."""
    refused = _refusal(path)
    if refused is not None:
        raise refused


def replace_file(target: str, data: bytes) -> None:
    """Put ``data`` at ``target`` atomically: written to a temporary file created
    exclusively beside it, renamed over it. A ``target`` that is there and not a regular
    file (a symlink, a FIFO) is refused, not replaced."""
    check_regular(target)
    fd, temporary = create_beside(target)
    try:
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def create_beside(target: str, mode: int = CREATED_MODE) -> tuple[int, str]:
    """A new temporary file in ``target``'s directory, created exclusively under a name
    nobody could have planted (``O_EXCL | O_NOFOLLOW``, random): its fd and name."""
    for _ in range(100):
        name = f"{target}.{secrets.token_hex(6)}.tmp"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(name, flags, mode), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", target)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until all of ``data`` is written (a short write is not an error)."""
    with memoryview(data) as view:
        while view:
            view = view[os.write(fd, view) :]


def place_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a file we are to write cannot live at ``path``, said before we try (``check``,
    start-up): its directory is missing or a kernel interface (``/proc``, ``/sys``), or
    what is there is not a regular file. None where it can."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"its directory {folder} does not exist"
    real = os.path.realpath(folder)
    if any(real == top or real.startswith(top + "/") for top in _KERNEL_TREES):
        return f"{real} is a kernel interface, not a place for files"
    refused = _refusal(path)
    return None if refused is None else f"{os.fspath(path)}: {refused.strerror}"


_KERNEL_TREES = ("/proc", "/sys")


def same_place(path: str) -> str:
    """What ``path`` names, for telling whether two paths are one file: links followed as
    far as they exist, so a file not yet created compares too."""
    return os.path.realpath(path)


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` is, for messages: ``a FIFO``."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def _refusal(path: str | os.PathLike[str]) -> RefusedFileError | None:
    """The refusal for what is at ``path`` (not followed); None for a regular file or
    nothing there."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISREG(found.st_mode):
        return None
    return _refused(path, found.st_mode)


def _refused(path: str | os.PathLike[str], mode: int) -> RefusedFileError:
    kind = file_kind(mode)
    if stat.S_ISLNK(mode):
        why, code = f"it is {kind}, which is not followed (O_NOFOLLOW)", errno.ELOOP
    elif stat.S_ISDIR(mode):
        why, code = f"it is {kind}, not a regular file", errno.EISDIR
    else:  # never opened for writing, never waited on
        why, code = f"it is {kind}, not a regular file: refused", errno.ENXIO
    return RefusedFileError(code, why, os.fspath(path))
