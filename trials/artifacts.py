"""The artifact store: checkpoints as files in a folder or behind an fsspec URL.

A plain path is a folder (local, or a shared mount every node sees). A URL (``s3://bucket/x``,
``gs://...``, ``file:///mnt/x``, any filesystem fsspec knows) is an object store: a checkpoint is
written and fsync'd to a local staging file first, then uploaded, and only then recorded, so a
recorded checkpoint always exists in full. Readers download to a staging file and verify the
recorded checksum before loading.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

__all__ = ["is_url", "join", "publish", "fetch", "exists", "copy", "remove", "checksum", "staging_dir"]


def is_url(path: str) -> bool:
    return "://" in path


def _fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)


def join(base: str, *parts: str) -> str:
    if is_url(base):
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(base, *parts)


def staging_dir(*parts: str) -> str:
    """A local folder for files on their way to or from an object store."""
    path = os.path.join(tempfile.gettempdir(), "search-staging", *parts)
    os.makedirs(path, exist_ok=True)
    return path


def publish(local: str, dest: str) -> None:
    """Upload ``local`` to ``dest`` (a URL). The object appears whole or not at all, as stores do."""
    fs, path = _fs(dest)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.put_file(local, path)


def fetch(src: str, local_dir: str) -> str:
    fs, path = _fs(src)
    local = os.path.join(local_dir, os.path.basename(path))
    fs.get_file(path, local)
    return local


def exists(path: str) -> bool:
    if is_url(path):
        fs, p = _fs(path)
        return fs.exists(p)
    return os.path.exists(path)


def copy(src: str, dst: str) -> None:
    if not is_url(src) and not is_url(dst):
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        shutil.copyfile(src, dst)
        return
    with tempfile.TemporaryDirectory(dir=staging_dir()) as tmp:
        local = fetch(src, tmp) if is_url(src) else src
        if is_url(dst):
            publish(local, dst)
        else:
            os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
            shutil.copyfile(local, dst)


def remove(path: str) -> None:
    if is_url(path):
        fs, p = _fs(path)
        fs.rm(p)
    else:
        os.remove(path)


def checksum(path: str) -> str:
    h = hashlib.sha256()
    if is_url(path):
        fs, p = _fs(path)
        opener = fs.open(p, "rb")
    else:
        opener = open(path, "rb")
    with opener as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
