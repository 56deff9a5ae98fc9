"""One run per output prefix: the lock file ``<out>.lock`` beside the outputs.

Two merges into one prefix at once would replace each other's checkpoints,
cache and outputs (one of them then dies on a file the other removed).  A
run holds an exclusive :func:`fcntl.flock` on ``<out>.lock``, which holds its
PID; a second run finds the lock held and stops with one line naming that PID.
The kernel releases the lock when its process ends, however it ends, so the
lock of a killed run (its PID no longer running) is taken over with a line
saying so.  Where the file system offers no ``flock`` (some network file
systems), the PID in the file decides: a lock whose process is alive is held.
The lock file is removed when the run ends.
"""

import errno
import fcntl
import os

from careless_online.errors import InputError


def lock_path(out):
    """The lock file of an output prefix."""
    return f"{out}.lock"


def _pid_in(fd):
    """The PID written in a lock file (None if it holds none)."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _alive(pid):
    """Whether a process with this PID runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flock(fd):
    """Take the lock on ``fd``: True, False if another process holds it, None if the file system has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise
    return True


class PrefixLock:
    """Context manager holding the lock of an output prefix.

    Parameters
    ----------
    out : str
        The output prefix (``<out>``); its folder must exist.
    log : callable, optional
        Told when the lock of a run that is no longer running is taken over.
    """

    def __init__(self, out, log=None):
        self.path = lock_path(out)
        self.out = str(out)
        self.log = log or (lambda message: None)
        self._fd = None

    def _refuse(self, pid):
        who = f"PID {pid}" if pid is not None else "its PID unknown"
        raise InputError(f"another careless_online run ({who}) is writing to the output prefix {self.out}; wait "
                         "for it to end, or choose another output prefix", self.path)

    def _open_current(self):
        """Open the lock file and lock it; returns its fd once it is the file at :attr:`path` (not one just removed)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            locked = _flock(fd)
            if not locked:
                pid = _pid_in(fd)
                if locked is False or (pid is not None and pid != os.getpid() and _alive(pid)):
                    os.close(fd)
                    self._refuse(pid)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # the holder removed it as we opened it: open the new one

    def __enter__(self):
        try:
            fd = self._open_current()
        except OSError as err:
            raise InputError(f"cannot take the lock of the output prefix ({err.strerror or err})", self.path) \
                from None
        previous = _pid_in(fd)
        if previous is not None and previous != os.getpid():
            self.log(f"taking over the lock of PID {previous} on {self.out}: that run is no longer running")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None
        return False
