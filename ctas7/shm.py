"""Owner-only shared-memory segments in /dev/shm, as channels and metrics use them.

A segment is created exclusively with mode 0600 and mapped read-write; an
existing one is opened only if it belongs to this user and nobody else may
read or write it (DESIGN §5a).

>>> import os
>>> path = f"/dev/shm/ctas7-doc-{os.getpid()}"
>>> mm = create_segment(path, 4096)
>>> mm2, size = open_segment(path, what="doc segment", min_size=64)
>>> size, oct(os.stat(path).st_mode & 0o777)
(4096, '0o600')
>>> mm2.close(); mm.close(); os.unlink(path)
"""

from __future__ import annotations

import mmap
import os
import stat

__all__ = ["create_segment", "open_segment"]


def create_segment(path: str, size: int) -> mmap.mmap:
    """Create ``path`` (it must not exist) with ``size`` zero bytes, 0600, and map it read-write."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have narrowed it further; never wider
        os.ftruncate(fd, size)
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)


def open_segment(path: str, *, writable: bool = True, what: str = "segment", min_size: int = 0):
    """Map an existing segment after checking its owner and mode; return ``(mmap, size)``.

    Raises
    ------
    FileNotFoundError
        No such segment.
    PermissionError
        It belongs to another user, or others may read or write it.
    ValueError
        It is smaller than ``min_size`` bytes.
    """
    fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise PermissionError(f"{path} belongs to uid {st.st_uid}, not to this user ({os.geteuid()})")
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise PermissionError(f"{path} has mode {stat.S_IMODE(st.st_mode):o}; a {what} must be 0600")
        if st.st_size < min_size:
            raise ValueError(f"{path} ({st.st_size} bytes) is not a {what}")
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        return mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, prot), st.st_size
    finally:
        os.close(fd)
