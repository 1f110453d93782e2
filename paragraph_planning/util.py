"""Small utilities every layer uses: the cache folder, atomic writes, "did you mean", the hub.

Nothing here imports another module of the package.
"""
from __future__ import annotations

import difflib
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

CACHE_ENV = "PARAGRAPH_PLANNING_CACHE"
"""Environment variable naming the cache folder (default ``~/.cache/paragraph_planning``)."""
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
"""A Hugging Face hub id, ``org/name``."""


def cache_root() -> Path:
    """The cache folder, made absolute (a relative ``$PARAGRAPH_PLANNING_CACHE`` is read from the current folder)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "paragraph_planning").expanduser().absolute()


def cache_dir(*parts: str) -> Path:
    """A folder inside the cache folder (created if missing)."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_dir(folder: str | Path) -> Iterator[Path]:
    """Write a folder atomically: yields an empty temporary sibling, renamed to ``folder`` on success.

    An existing ``folder`` is replaced; if another process renamed its copy in first, ours is
    dropped. On an error the temporary folder is removed and ``folder`` is left as it was.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp", dir=folder.parent))
    try:
        yield tmp
        old = folder.with_name(f".{folder.name}.old{os.getpid()}")
        if folder.exists():
            folder.rename(old)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first
            if old.exists() and not folder.exists():
                old.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[Path]:
    """Write a file atomically: yields a temporary sibling path, moved onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def did_you_mean(name: str, valid: Iterable[str], n: int = 3, cutoff: float = 0.5) -> str:
    """``" Did you mean 'a' or 'b'?"`` for the closest valid names, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=n, cutoff=cutoff)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def unknown(kind: str, name: object, valid: Iterable[str], extra: str = "") -> str:
    """One error message: ``Unknown {kind} {name!r}. Did you mean ...? Valid {kind}s: ...``."""
    valid = list(valid)
    return f"Unknown {kind} {name!r}.{did_you_mean(str(name), valid)} Valid: {', '.join(map(str, valid))}.{extra}"


def hub_reachable(timeout: float = 3.0, offline_vars: tuple[str, ...] = ("HF_HUB_OFFLINE",)) -> bool:
    """False when one of ``offline_vars`` is set or huggingface.co does not answer within ``timeout``."""
    if any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in offline_vars):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, then restore the previous number."""
    import torch  # here, not at the top: the command line imports this module and needs no torch

    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)



_HASHES_FILE = "file-hashes.json"


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's content, computed once and remembered by path, size and modification time.

    The memo lives in the cache folder (``file-hashes.json``); a file that changed (other size or
    mtime) is hashed again.
    """
    import hashlib
    import json

    path = Path(path).absolute()
    st = path.stat()
    memo_path = cache_dir() / _HASHES_FILE
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    key = str(path)
    entry = memo.get(key)
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return entry["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    memo[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()}
    with atomic_file(memo_path) as tmp:
        tmp.write_text(json.dumps(memo, indent=1, sort_keys=True))
    return h.hexdigest()
