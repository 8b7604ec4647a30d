"""Write certificate files without ever exposing a partial or world-readable key.

Each file is written to a fresh temporary name in the target directory
(created with O_EXCL and its final mode, so the key is never readable by
others, not even briefly), flushed, and then moved into place: with
`os.link` when overwriting is forbidden (fails atomically if the name
exists), with `os.replace` when it is allowed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
PRIVATE_DIR_MODE = 0o700


class FileExistsRefusal(FileExistsError):
    """A target exists and overwriting was not allowed."""


def ensure_directory(path: Path) -> None:
    """Create `path` (mode 0700) if missing; an existing directory keeps its mode."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")


def existing_files(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.exists() or p.is_symlink()]


def write_file_atomically(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    """Write `data` to `path` with `mode`; never leaves a half-written file at `path`."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed the mode given to open
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise FileExistsRefusal(f"{path} already exists") from exc
    finally:
        tmp.unlink(missing_ok=True)
