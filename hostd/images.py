"""Disk images with qemu-img, on storage domains laid out like oVirt's file domains:
``<sd_path>/<sd_id>/images/<disk_id>/<volume_id>``."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

from hostd.protocol import ImageInfoResult, VolumeRef


class ImageError(Exception):
    pass


def volume_path(v: VolumeRef) -> Path:
    for part in (v.sd_id, v.disk_id, v.volume_id):
        if not part or "/" in part or part in (".", ".."):
            raise ImageError(f"invalid volume id component {part!r}")
    return Path(v.sd_path) / v.sd_id / "images" / v.disk_id / v.volume_id


def _run(args: list[str], timeout: float = 600.0) -> str:
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise ImageError(f"{args[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise ImageError(f"{' '.join(args[:2])} timed out") from e
    if p.returncode != 0:
        raise ImageError((p.stderr or p.stdout).strip() or f"{args[0]} failed")
    return p.stdout


def info(path: str | os.PathLike) -> ImageInfoResult:
    if not Path(path).exists():
        raise ImageError(f"no such image: {path}")
    out = json.loads(
        _run(["qemu-img", "info", "-U", "--output=json", "--backing-chain", str(path)])
    )
    top = out[0] if isinstance(out, list) else out
    chain = [c.get("filename", "") for c in out] if isinstance(out, list) else [str(path)]
    return ImageInfoResult(
        path=str(path),
        format=top.get("format", "raw"),
        virtual_size=int(top.get("virtual-size", 0)),
        actual_size=int(top.get("actual-size", 0)),
        backing=top.get("full-backing-filename") or top.get("backing-filename"),
        chain=chain,
    )


def create(
    path: Path,
    size_bytes: int,
    fmt: str = "qcow2",
    backing: str | None = None,
    backing_format: str = "qcow2",
    preallocate: bool = False,
) -> ImageInfoResult:
    if path.exists():
        raise ImageError(f"volume already exists: {path}")
    if backing is None and size_bytes <= 0:
        raise ImageError("size_bytes must be positive")
    if backing is not None and fmt != "qcow2":
        raise ImageError("only qcow2 volumes can have a backing file")
    if backing is not None and not Path(backing).exists():
        raise ImageError(f"backing volume does not exist: {backing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["qemu-img", "create", "-q", "-f", fmt]
    if fmt == "qcow2":
        args += ["-o", "cluster_size=65536" + (",preallocation=metadata" if preallocate else "")]
    elif preallocate:
        args += ["-o", "preallocation=falloc"]
    if backing is not None:
        args += ["-b", backing, "-F", backing_format]
    args.append(str(path))
    if size_bytes > 0:
        args.append(str(size_bytes))
    _run(args)
    return info(path)


def copy(source: str, path: Path, fmt: str = "qcow2") -> ImageInfoResult:
    if path.exists():
        raise ImageError(f"volume already exists: {path}")
    if not Path(source).exists():
        raise ImageError(f"no such image: {source}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run(
            ["qemu-img", "convert", "-U", "-O", fmt, "-t", "none", "-T", "none", source, str(path)]
        )
    except ImageError:
        # O_DIRECT is not available on every filesystem (tmpfs): retry with the page cache.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _run(["qemu-img", "convert", "-U", "-O", fmt, source, str(path)])
    return info(path)


def resize(path: str, size_bytes: int) -> ImageInfoResult:
    cur = info(path)
    if size_bytes < cur.virtual_size:
        raise ImageError("shrinking a disk is not supported")
    if size_bytes > cur.virtual_size:
        _run(["qemu-img", "resize", "-q", "-f", cur.format, path, str(size_bytes)])
    return info(path)


def delete(path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise ImageError(f"no such image: {path}")
    p.unlink()
    with contextlib.suppress(OSError):
        meta = p.with_name(p.name + ".meta")
        meta.unlink(missing_ok=True)
        if p.parent.parent.name == "images" and not any(p.parent.iterdir()):
            p.parent.rmdir()


def same_path(a: str, b: str) -> bool:
    """The same file, whether named directly or through symlinks."""
    return a == b or os.path.realpath(a) == os.path.realpath(b)


def merge_layer(leaf: str, layer: str) -> ImageInfoResult:
    """Cold merge: see hostd.protocol.MergeVolume. The order keeps every intermediate
    chain readable: the commit empties ``layer`` only after ``base`` holds its data, the
    rebase is metadata only (``-u``: the content under ``child`` is unchanged), and the
    file goes last."""
    chain = info(leaf).chain
    at = next((i for i, p in enumerate(chain) if same_path(p, layer)), None)
    if at is None:
        raise ImageError(f"{layer} is not in the backing chain of {leaf}")
    if at == len(chain) - 1:
        raise ImageError(f"{layer} is the bottom of its chain: nothing to merge it into")
    base = chain[at + 1]
    base_fmt = info(base).format
    _run(["qemu-img", "commit", "-q", "-f", "qcow2", chain[at]])
    if at > 0:
        child = chain[at - 1]
        _run(["qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-F", base_fmt, "-b", base, child])
    delete(chain[at])
    return info(leaf if at > 0 else base)


def commit(top: str) -> None:
    """qemu-img commit: write ``top`` into its backing file (offline merge)."""
    _run(["qemu-img", "commit", "-q", top])
