"""One writer per output folder: an advisory lock in ``DIR/.iconmat/lock``.

On POSIX the lock is an ``flock`` on that file: the kernel drops it when the
holder exits, however it dies (even SIGKILL), so a lock file left by a dead
process is simply taken over. The file also names its holder (pid, host,
start time) for the message shown to a second run. Where ``fcntl`` is missing
(Windows) the file itself is the lock, created exclusively; one naming a
process that no longer runs on this host is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path

from ..errors import InputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderLock", "LOCK_FILE"]

#: the lock file, relative to the output folder
LOCK_FILE = Path(".iconmat") / "lock"


class FolderLock:
    """Exclusive use of an output folder by one writer.

    Parameters
    ----------
    folder : str or path-like
        The output folder; ``folder/.iconmat/`` is created on :meth:`acquire`.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     first = FolderLock(tmp); first.acquire()
    ...     try:
    ...         FolderLock(tmp).acquire()
    ...     except InputError as exc:
    ...         print("refused")
    ...     first.release()
    refused
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(os.fspath(folder)).expanduser()
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise InputError naming the run that holds it.

        Raises
        ------
        InputError
            Another live process (or another FolderLock in this process) holds
            the folder, or the lock file cannot be created.
        """
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create {self.path.parent}: {exc.strerror or exc}") from exc
        if fcntl is not None:
            self._acquire_flock()
        else:
            self._acquire_exclusive()

    def release(self) -> None:
        """Give the lock back and remove the lock file (safe to call when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Unlink while still holding it: a waiting process then finds no file, or a new one.
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        try:
            self.path.parent.rmdir()  # only when nothing else (parts, run state) is kept there
        except OSError:
            pass

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # the kernel drops the flock with the descriptor

    # ---------------------------------------------------------------- POSIX

    def _acquire_flock(self) -> None:
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:  # a releasing holder removed the empty folder just now
                self.path.parent.mkdir(parents=True, exist_ok=True)
                continue
            except OSError as exc:
                raise InputError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise InputError(self._busy_message(holder)) from None
            # The holder we waited for may have unlinked the file: then lock the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                previous = _read_holder(fd)
                self._fd = fd
                self._write_holder(fd)
                if previous and not _alive(previous):
                    warnings.warn(
                        f"took over the lock of {self.folder} left by process {previous.get('pid')}, which is no longer running",
                        stacklevel=4,
                    )
                return
            os.close(fd)
        raise InputError(f"cannot lock {self.folder}: the lock file keeps changing; is another run starting?")

    # ---------------------------------------------------------------- fallback

    def _acquire_exclusive(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                try:
                    with open(self.path, "rb") as handle:
                        holder = _parse_holder(handle.read())
                except OSError:
                    holder = {}
                if holder and _alive(holder):
                    raise InputError(self._busy_message(holder)) from None
                warnings.warn(f"took over the stale lock of {self.folder} ({self.path})", stacklevel=4)
                self.path.unlink(missing_ok=True)
                continue
            except OSError as exc:
                raise InputError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from exc
            self._fd = fd
            self._write_holder(fd)
            return
        raise InputError(self._busy_message({}))

    # ---------------------------------------------------------------- helpers

    def _write_holder(self, fd: int) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(info).encode())
        except OSError:
            pass  # the holder's name is for messages only; the lock itself is held

    def _busy_message(self, holder: dict) -> str:
        who = ""
        if holder:
            who = f" (process {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')})"
        return (
            f"output folder {self.folder} is in use by another iconmat run{who}: "
            "wait for it to finish or choose another output folder"
        )


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
    except OSError:
        return {}
    return _parse_holder(data)


def _parse_holder(data: bytes) -> dict:
    try:
        holder = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(holder: dict) -> bool:
    """Whether the process named in a lock file may still run (unknown hosts count as alive)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if holder.get("host") != socket.gethostname():
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
