"""Atomic, verifiable training checkpoints with keep-last-k pruning.

A checkpoint is a directory ``<root>/checkpoint-<step:08d>/`` holding whatever the writer put there
(the trainer uses ``accelerator.save_state``: trainable weights, optimiser, LR scheduler, grad scaler,
per-process RNG states, the data position) plus ``MANIFEST.json``, written last, which lists every
file with its size and SHA-256.

Why not just ``save_state(dir)``: a process killed half-way through leaves a directory that looks
like a checkpoint but holds a truncated optimiser file, and ``--resume`` would then load garbage or
crash. Here every checkpoint is first written to ``<root>/.tmp-checkpoint-<step>/``; once all
processes are done, the main process fsyncs every file, writes the manifest (fsync), renames the
directory into place with ``os.replace`` (atomic on POSIX) and fsyncs the parent. The reader
(``CheckpointManager.complete``) only ever considers directories with the final name *and* a
manifest whose files all exist with the recorded sizes (and, when ``verify=True``, hashes), so a
crash at any instant leaves either the previous set of checkpoints or the previous set plus one
complete new one. Leftover ``.tmp-*`` directories are removed by the next save.

Multi-process (``accelerate launch``): all processes call ``save`` with the same step; the writer
runs on every process (collective for FSDP / DeepSpeed), ``barrier`` separates the phases, and only
the main process touches the directory structure. ``root`` must be on a filesystem every process
sees (the usual case on one machine; a shared filesystem across nodes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "MANIFEST.json"
_FINAL = re.compile(r"^checkpoint-(\d{8})$")
_TMP_PREFIX = ".tmp-"
_MANIFEST_VERSION = 1


def _fsync_path(path: Path) -> None:
    """fsync a file or a directory (directories need it so a rename inside them is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(directory: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """fsync every file under ``directory`` and write ``MANIFEST.json`` (sizes + SHA-256), fsynced."""
    entries = {}
    for p in _files(directory):
        _fsync_path(p)
        entries[p.relative_to(directory).as_posix()] = {
            "size": p.stat().st_size,
            "sha256": _sha256(p),
        }
    manifest = {"version": _MANIFEST_VERSION, "files": entries, **(extra or {})}
    path = directory / MANIFEST
    with path.open("w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    for sub in sorted({p.parent for p in _files(directory)} | {directory}, reverse=True):
        _fsync_path(sub)
    return manifest


def read_manifest(directory: str | Path, *, verify: bool = True) -> dict[str, Any] | None:
    """The manifest of a complete directory, or None if it is missing, unreadable or does not match.

    ``verify=True`` also re-hashes every file (catches corruption, not only truncation).
    """
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for rel, meta in files.items():
        p = directory / rel
        try:
            if p.stat().st_size != meta["size"]:
                return None
        except OSError:
            return None
        if verify and _sha256(p) != meta["sha256"]:
            return None
    return manifest


@contextmanager
def atomic_directory(final: str | Path, *, extra: dict[str, Any] | None = None) -> Iterator[Path]:
    """Write a directory atomically: yield a temp dir beside ``final``; on success publish it.

    On an exception the temp dir is removed and ``final`` is untouched. Used for single-process
    writes such as the final weights export; the trainer's checkpoints go through
    ``CheckpointManager.save`` (multi-process aware).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{_TMP_PREFIX}{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        write_manifest(tmp, extra)
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final`` atomically, replacing an existing ``final`` (moved aside first)."""
    old = None
    if final.exists():
        # os.replace cannot overwrite a non-empty directory: move the old one aside first. A crash
        # between the two renames leaves no ``final`` but a complete ``.old-`` copy; acceptable for
        # the rare overwrite (re-running a step after resuming from an older checkpoint).
        old = final.parent / f"{_TMP_PREFIX}old-{final.name}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_path(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class CheckpointInfo:
    """One complete checkpoint on disk."""

    step: int
    path: Path
    manifest: dict[str, Any]


class CheckpointManager:
    """Saves and finds complete checkpoints under ``root`` (see the module docstring).

    Args:
        root: directory holding ``checkpoint-<step>`` subdirectories (created on first save).
        keep_last: how many complete checkpoints to keep (older ones are deleted after a save);
            must be >= 1.
        verify: re-hash files when listing checkpoints (slower for big optimiser states, but a
            corrupted file is then never resumed from).
    """

    def __init__(self, root: str | Path, keep_last: int = 3, *, verify: bool = True) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last={keep_last} must be >= 1 (the newest checkpoint is kept)")
        self.root = Path(root)
        self.keep_last = keep_last
        self.verify = verify

    def path_for(self, step: int) -> Path:
        """Final directory of the checkpoint of ``step``."""
        if step < 0:
            raise ValueError(f"step={step} must be >= 0")
        return self.root / f"checkpoint-{step:08d}"

    def complete(self, *, verify: bool | None = None) -> list[CheckpointInfo]:
        """Every complete checkpoint (manifest present, files match it), oldest first.

        ``verify`` overrides the manager's choice of re-hashing files for this call.
        """
        verify = self.verify if verify is None else verify
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            m = _FINAL.match(p.name)
            if not (m and p.is_dir()):
                continue
            manifest = read_manifest(p, verify=verify)
            if manifest is not None:
                found.append(CheckpointInfo(int(m.group(1)), p, manifest))
        return sorted(found, key=lambda c: c.step)

    def latest(self) -> CheckpointInfo | None:
        """The newest complete checkpoint, or None."""
        done = self.complete()
        return done[-1] if done else None

    def save(
        self,
        step: int,
        write: Callable[[Path], None],
        *,
        is_main_process: bool = True,
        barrier: Callable[[], None] = lambda: None,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write the checkpoint of ``step`` with ``write(tmp_dir)`` and publish it atomically.

        Every process must call this; ``write`` runs on all of them (between barriers), the
        directory bookkeeping only on the main process. Returns the final path.
        """
        final = self.path_for(step)
        tmp = self.root / f"{_TMP_PREFIX}{final.name}"
        if is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(f"{_TMP_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp.mkdir()
        barrier()
        write(tmp)
        barrier()
        if is_main_process:
            write_manifest(tmp, {"step": step, **(extra or {})})
            _publish(tmp, final)
            self._prune()
        barrier()
        return final

    def _prune(self) -> None:
        # Sizes are enough to order what to delete; re-hashing every old checkpoint is not needed.
        done = self.complete(verify=False)
        for info in done[: max(0, len(done) - self.keep_last)]:
            # Rename first so a crash mid-delete leaves debris, not a damaged "checkpoint-*".
            trash = self.root / f"{_TMP_PREFIX}deleted-{info.path.name}"
            os.replace(info.path, trash)
            shutil.rmtree(trash, ignore_errors=True)
