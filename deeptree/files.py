"""Writing files safely: atomic writes, the temporary files a killed process leaves, and the
lock of an output folder.

* :func:`atomic_write` writes to a temporary name in the target folder and renames, so an
  interrupted write never leaves a partial file. The temporary name is
  ``.deeptree-<name>.<pid>-<random>.tmp<suffix>``: hidden (never read as an input), recognisable
  as this package's own (so :func:`clean_orphan_temporaries` never touches another tool's
  files), and carrying the writer's process id (so it tells the orphan of a killed process
  from the file of a process still writing).
* :class:`FolderLock`: one writer per output folder (``<folder>/.deeptree.lock``).
* :data:`TEST_KILL_ENV`: a test hook that kills the process in the middle of a write, at a
  deterministic point (``tests/test_kills.py``).

Nothing here imports the rest of the package (:mod:`deeptree.io` re-exports
:func:`atomic_write`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _temporary_sibling(path: Path) -> Path:
    """A unique temporary file name in the folder of ``path`` with the same suffixes:
    ``.deeptree-<name>.<pid>-<random>.tmp<suffix>`` (the prefix marks it as this package's own;
    the process id lets a later run tell an orphan, left by a killed process, from the file of
    a process still writing; see :func:`clean_orphan_temporaries`)."""
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(
        prefix=f"{TEMPORARY_PREFIX}{path.name}.{os.getpid()}-", suffix=f".tmp{suffix}",
        dir=path.parent,
    )  # fmt: skip
    os.close(fd)
    # mkstemp creates the file with mode 0o600; the output gets the mode an ordinary
    # open(path, "w") would give it
    os.chmod(tmp, 0o666 & ~current_umask())
    return Path(tmp)


def current_umask() -> int:
    """The process's file-mode creation mask (e.g. ``0o022``), read without changing it.

    Returns
    -------
    int
        The umask bits; a new file written with ``open(path, "w")`` gets ``0o666 & ~umask``.
    """
    try:  # Linux: read it, so that no other thread sees a changed umask
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Write a file through ``write(tmp_path)`` to a temporary name, then rename it.

    Parameters
    ----------
    path : path-like
        Final file name. Its folder is created if missing.
    write : callable
        ``write(tmp_path)`` writes the whole file to ``tmp_path``.

    Returns
    -------
    Path
        ``path``. If ``write`` raises, the temporary file is removed and ``path`` is
        left as it was.

    Raises
    ------
    OSError
        Writing failed (a full disk, ...): the error names ``path`` (a writer's error names
        no file, or the temporary one, which is gone).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        write(tmp)
        _test_kill_point(path, tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename is None or str(err.filename) == str(tmp):
            raise naming(err, path) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def naming(err: OSError, path: str | os.PathLike) -> OSError:
    """The same operating-system error, naming ``path`` (for the one-line message).

    Parameters
    ----------
    err : OSError
        E.g. ``OSError(errno.ENOSPC, "No space left on device")`` from a ``write``.
    path : path-like
        The file being written.

    Returns
    -------
    OSError
        Of the same class (``errno`` picks the subclass), with ``filename`` = ``path``.
    """
    return OSError(err.errno, err.strerror or str(err), str(path))


#: Test hook (for the kill tests, never for normal use): ``DEEPTREE_TEST_KILL_AT=<file name>``
#: or ``<file name>:<n>`` makes the process kill itself (SIGKILL) during its n-th (default
#: first) :func:`atomic_write` of a file of that name, after the temporary file was written and
#: cut to half its size, before the rename: exactly what a ``kill -9`` in the middle of that
#: write leaves behind, at a deterministic point.
TEST_KILL_ENV = "DEEPTREE_TEST_KILL_AT"

_test_kill_count = 0


def _test_kill_point(path: Path, tmp: Path) -> None:
    """The :data:`TEST_KILL_ENV` hook of :func:`atomic_write` (does nothing when unset)."""
    global _test_kill_count
    spec = os.environ.get(TEST_KILL_ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if path.name != name:
        return
    _test_kill_count += 1
    if _test_kill_count != (int(nth) if nth else 1):
        return
    import signal

    with open(tmp, "r+b") as f:  # torn: half of the file reached the disk
        f.truncate(os.fstat(f.fileno()).st_size // 2)
    os.kill(os.getpid(), signal.SIGKILL)


#: The start of every temporary name of :func:`atomic_write`: hidden, and this package's own.
TEMPORARY_PREFIX = ".deeptree-"

#: A temporary file of :func:`atomic_write`: ``.deeptree-<name>.<pid>-<random>.tmp<suffix>``;
#: group 1 is the pid. Only names of this form are ever removed: earlier versions named their
#: temporaries ``.<name>[.<pid>]-<random>.tmp<suffix>``, which other tools' hidden files can
#: match (``.report.md.tmp``, ``.cache.1234-abc.tmp``), so those are left alone (hidden, they
#: are never read as inputs).
_TEMPORARY = re.compile(
    r"^" + re.escape(TEMPORARY_PREFIX) + r".+\.(\d+)-[A-Za-z0-9_]+\.tmp(?:\.[A-Za-z0-9.]+)?$"
)


def _process_alive(pid: int) -> bool:
    """True if a process ``pid`` runs on this machine (or cannot be checked)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's), or we cannot tell: keep its files
    return True


def clean_orphan_temporaries(
    folder: str | os.PathLike, subfolders: Sequence[str] = ()
) -> list[Path]:
    """Remove the temporary files that a killed process of this package left in ``folder``.

    A temporary file of :func:`atomic_write` is only ever renamed to its final name when
    whole, so one that is still there belongs either to a process that is writing it now or
    to one that was killed. It is removed when the process id in its name no longer runs; a
    file of a running process is left alone. Only names of :func:`atomic_write`'s own form
    (``.deeptree-<name>.<pid>-<random>.tmp<suffix>``) are considered, and only in the folders
    the caller writes (``folder`` and the named ``subfolders``, not below them): another
    tool's hidden files, and anything deeper, are never touched.

    Parameters
    ----------
    folder : path-like
        A missing folder is fine (nothing to clean).
    subfolders : sequence of str
        Sub-folders of ``folder`` (relative names) that the caller also writes files into,
        e.g. ``("imagesTr", "labelsTr")``; each is cleaned at its own level only.

    Returns
    -------
    list of Path
        The files removed.
    """
    folder = Path(folder)
    removed = []
    for level in (folder, *(folder / sub for sub in subfolders)):
        if not level.is_dir():
            continue
        for path in sorted(level.glob(f"{TEMPORARY_PREFIX}*")):
            match = _TEMPORARY.match(path.name)
            if match is None or not path.is_file():
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or _process_alive(pid):
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed


#: The lock file of an output folder (:class:`FolderLock`).
LOCK_NAME = ".deeptree.lock"


class FolderLocked(BlockingIOError):
    """Another running process holds the lock of an output folder (an ``OSError``: its
    ``filename`` is the folder, its ``strerror`` says who holds it and what to do)."""

    def __init__(self, folder: Path, text: str):
        super().__init__(errno.EWOULDBLOCK, text, str(folder))


class FolderLock:
    """An exclusive lock on an output folder, so that two processes never write one folder.

    ``with FolderLock(folder, "deeptree predict"):`` creates ``folder`` if needed and the lock
    file ``folder/.deeptree.lock`` (holding the process id, host and command), locked with
    ``flock``; it is removed on exit. The kernel releases the lock when a process dies, even
    by ``kill -9``: the stale file of a dead process is then taken over (with a notice). A
    second process refuses at once with :class:`FolderLocked`, naming the folder and the
    process that holds it.

    Parameters
    ----------
    folder : path-like
    command : str
        What this process is, for the other process's message.
    """

    def __init__(self, folder: str | os.PathLike, command: str = "deeptree"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self._fd: int | None = None
        #: the holder of a stale lock that was taken over (its file's text), or None
        self.taken_over: str | None = None

    def acquire(self) -> FolderLock:
        """Take the lock (see the class). Raises :class:`FolderLocked` if it is held."""
        import json
        import socket

        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(10):  # retried while another process removes the file under us
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                held = not _flock(fd)
                previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
                if held:
                    raise FolderLocked(self.folder, _locked_message(previous))
                if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                    os.close(fd)  # the holder removed the file as we opened it: again
                    continue
            except FileNotFoundError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            if previous and not _flock_supported(fd):
                # no flock on this file system: trust the process id in the file
                holder = _lock_holder(previous)
                if holder.get("pid") not in (None, os.getpid()) and _process_alive(
                    int(holder["pid"])
                ):
                    os.close(fd)
                    raise FolderLocked(self.folder, _locked_message(previous))
            self.taken_over = previous or None
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": self.command,
                "since": _now(),
            }
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps(record).encode())
            except OSError as err:  # a full disk: leave no empty lock file behind
                self.path.unlink(missing_ok=True)
                os.close(fd)
                raise naming(err, self.path) from err
            self._fd = fd
            return self
        raise FolderLocked(self.folder, f"could not take the lock {self.path}")

    def release(self) -> None:
        """Remove the lock file and release the lock."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


_NO_FLOCK: set[int] = set()


def _flock(fd: int) -> bool:
    """Try an exclusive non-blocking ``flock`` on ``fd``: False if another process holds it;
    True if taken, or if this file system has no ``flock`` (then remembered, see
    :func:`_flock_supported`)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        _NO_FLOCK.add(fd)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # e.g. ENOLCK on some network file systems
        _NO_FLOCK.add(fd)
        return True
    _NO_FLOCK.discard(fd)
    return True


def _flock_supported(fd: int) -> bool:
    return fd not in _NO_FLOCK


def _lock_holder(text: str) -> dict:
    import json

    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _locked_message(text: str) -> str:
    holder = _lock_holder(text)
    who = (
        f"`{holder.get('command', 'deeptree')}` (process {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
        if holder
        else "another process"
    )
    return (
        f"{who} is writing to this folder; wait until it has finished, or give another "
        f"output folder (the lock is its {LOCK_NAME})"
    )
