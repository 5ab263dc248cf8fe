"""Atomic checkpoints: a crash at any point never leaves a checkpoint that loads half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vap_env.train.checkpoint import CheckpointManager, atomic_directory, read_manifest


def _writer(step: int, parts: int = 2):
    def write(d: Path) -> None:
        for i in range(parts):
            (d / f"part{i}.bin").write_bytes(bytes([step % 256]) * 1000)
        (d / "sub").mkdir()
        (d / "sub" / "state.json").write_text(json.dumps({"step": step}))

    return write


def test_save_list_latest_and_keep_last(tmp_path):
    mgr = CheckpointManager(tmp_path / "ckpt", keep_last=2)
    assert mgr.latest() is None
    for step in (1, 2, 3):
        path = mgr.save(step, _writer(step))
        assert path.name == f"checkpoint-{step:08d}"
    done = mgr.complete()
    assert [c.step for c in done] == [2, 3]
    assert mgr.latest().step == 3
    assert json.loads((mgr.latest().path / "sub" / "state.json").read_text()) == {"step": 3}
    assert mgr.latest().manifest["step"] == 3
    assert not list((tmp_path / "ckpt").glob(".tmp-*"))


def test_failure_between_writes_leaves_previous_checkpoint_only(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=3)
    mgr.save(1, _writer(1))

    def crashing(d: Path) -> None:
        (d / "part0.bin").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        mgr.save(2, crashing)
    assert [c.step for c in mgr.complete()] == [1]
    assert (tmp_path / ".tmp-checkpoint-00000002").exists()  # the debris is there, but ignored
    mgr.save(3, _writer(3))  # the next save clears debris
    assert [c.step for c in mgr.complete()] == [1, 3]
    assert not list(tmp_path.glob(".tmp-*"))


def test_truncated_or_corrupted_files_are_rejected(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=5)
    for s in (1, 2, 3):
        mgr.save(s, _writer(s))
    # a filesystem that does not honour the rename order could leave these states
    with (tmp_path / "checkpoint-00000003" / "part1.bin").open("r+b") as f:
        f.truncate(10)
    (tmp_path / "checkpoint-00000002" / "part0.bin").write_bytes(b"\x09" * 1000)  # same size
    assert [c.step for c in mgr.complete()] == [1]
    assert [c.step for c in mgr.complete(verify=False)] == [1, 2]  # size-only check
    (tmp_path / "checkpoint-00000001" / "MANIFEST.json").write_text("{not json")
    assert mgr.latest() is None


def test_atomic_directory_publishes_or_leaves_nothing(tmp_path):
    final = tmp_path / "export"
    with pytest.raises(ValueError):
        with atomic_directory(final) as d:
            (d / "weights.bin").write_bytes(b"x")
            raise ValueError("interrupted")
    assert not final.exists() and not list(tmp_path.iterdir())
    with atomic_directory(final) as d:
        (d / "weights.bin").write_bytes(b"x")
    assert read_manifest(final) is not None
    with atomic_directory(final) as d:  # replacing an existing export
        (d / "weights.bin").write_bytes(b"yy")
    assert (final / "weights.bin").read_bytes() == b"yy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="keep_last=0"):
        CheckpointManager("x", keep_last=0)
    with pytest.raises(ValueError, match="step=-1"):
        CheckpointManager("x").path_for(-1)


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from vap_env.train.checkpoint import CheckpointManager

    root, pause = Path(sys.argv[1]), float(sys.argv[2])
    mgr = CheckpointManager(root, keep_last=3)

    def writer(step):
        def write(d):
            for i in range(4):
                with (d / f"shard{i}.bin").open("wb") as f:
                    for _ in range(8):
                        f.write(bytes([step % 256]) * 65536)
                        f.flush()
                if i == 1:
                    print(f"mid-save {step}", flush=True)
                    time.sleep(pause)
        return write

    step = 0
    while True:
        step += 1
        mgr.save(step, writer(step))
        print(f"saved {step}", flush=True)
    """
)


def _check_consistent(root: Path) -> list[int]:
    steps = []
    for info in CheckpointManager(root, keep_last=3).complete():
        assert sorted(p.name for p in info.path.iterdir()) == [
            "MANIFEST.json",
            "shard0.bin",
            "shard1.bin",
            "shard2.bin",
            "shard3.bin",
        ]
        for shard in info.path.glob("shard*.bin"):
            data = shard.read_bytes()
            assert len(data) == 8 * 65536 and data == bytes([info.step % 256]) * len(data)
        steps.append(info.step)
    return steps


def _spawn(root: Path, pause: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(root), str(pause)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_process_killed_mid_save_leaves_no_loadable_half_checkpoint(tmp_path):
    proc = _spawn(tmp_path, pause=30.0)
    try:
        assert proc.stdout.readline().strip() == "mid-save 1"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / ".tmp-checkpoint-00000001" / "shard0.bin").exists()  # half-written on disk
    assert CheckpointManager(tmp_path).latest() is None  # ...but never offered for loading


def test_process_killed_at_arbitrary_moments_keeps_every_listed_checkpoint_whole(tmp_path):
    # No pause: the child saves as fast as it can and is killed wherever it happens to be
    # (mid-write, mid-manifest, mid-rename or mid-prune), after its first complete save.
    for i, delay in enumerate([0.0, 0.05, 0.2, 0.4]):
        root = tmp_path / str(i)
        proc = _spawn(root, pause=0.0)
        try:
            for line in proc.stdout:
                if line.strip() == "saved 1":
                    break
            else:
                pytest.fail("the checkpointing child exited before its first save")
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        steps = _check_consistent(root)
        # keep_last=3, plus one while a new checkpoint is published but the oldest not yet pruned
        assert 1 <= len(steps) <= 4, steps
