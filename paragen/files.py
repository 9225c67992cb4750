"""Output files that are whole or absent: written beside the target, renamed into place.

A command that writes `--output F` and fails half-way must leave F as it was, and it must
never read and write the same file (`generate --input F --output F` used to truncate F before
reading it and exit 0).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterable, Iterator, Optional

from paragen.errors import DataError


def check_output_path(path: str, inputs: Iterable[Optional[str]] = (),
                      flag: str = "--output") -> None:
    """One clear error for an output that is a folder, lies under a file, or is one of the
    inputs; missing folders on the way are created (as `save_dir` is)."""
    if os.path.isdir(path):
        raise DataError(f"{flag} {path}: is a folder; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise DataError(f"{flag} {path}: cannot create folder {parent} "
                        f"({err.strerror or err})") from None
    if os.path.exists(path):
        for source in inputs:
            if source and os.path.exists(source) and os.path.samefile(path, source):
                raise DataError(f"{flag} {path}: is also the input {source}; write to "
                                f"another file")


@contextlib.contextmanager
def atomic_text_output(path: str, inputs: Iterable[Optional[str]] = (),
                       flag: str = "--output") -> Iterator[IO[str]]:
    """A text file object whose content replaces `path` only when the block succeeds."""
    check_output_path(path, inputs, flag)
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    stream = os.fdopen(fd, "w", encoding="utf-8")
    try:
        yield stream
        stream.flush()
        os.fsync(stream.fileno())
        stream.close()
        os.replace(temporary, path)
    except BaseException:
        stream.close()
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
