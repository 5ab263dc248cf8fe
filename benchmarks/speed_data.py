"""Benchmark the data pipeline: synthetic generation rate and training clips per second.

``vap-env bench data --json out.json``

1. ``synth``: renders ``episodes`` synthetic RT-1 episodes of ``frames`` frames at 320x256 into a
   temporary directory (``vap_env.data.synth.writer.generate``, ``synth_workers`` processes) and
   reports episodes per minute (the target is >= 20 episodes of 30 frames per minute). Skipped when
   ``data_dir`` points at an existing directory.
2. ``clips``: one epoch of ``ClipDataset`` (decode, resize, skeleton extraction from the logged
   states, tensor conversion) through a ``DataLoader`` with each of ``loader_workers``, timed from
   creating the iterator (worker start-up included) to the last batch.
"""

from __future__ import annotations

import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vap_env.strict_json import write_json

__all__ = ["Config", "main", "run"]

TARGET_EPISODES_PER_MINUTE = 20.0


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env bench data``."""

    data_dir: str | None = field(
        default=None, metadata={"help": "existing RT-1/DROID directory; default: generate one"}
    )
    episodes: int = field(default=6, metadata={"help": "synthetic episodes to generate"})
    frames: int = field(default=33, metadata={"help": "frames per synthetic episode"})
    synth_workers: int = field(default=0, metadata={"help": "rendering processes for generation"})
    loader_workers: tuple[int, ...] = field(
        default=(0, 2), metadata={"help": "DataLoader worker counts to time"}
    )
    chunk_frames: int = field(default=8, metadata={"help": "K target frames per clip"})
    height: int = field(default=64, metadata={"help": "clip height"})
    width: int = field(default=80, metadata={"help": "clip width"})
    batch_size: int = field(default=4, metadata={"help": "clips per batch"})
    json: str | None = field(default=None, metadata={"help": "write the results here"})

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.frames <= self.chunk_frames or self.batch_size < 1:
            raise ValueError(
                f"need episodes >= 1, frames > chunk_frames, batch_size >= 1; got episodes="
                f"{self.episodes}, frames={self.frames}, chunk_frames={self.chunk_frames}, "
                f"batch_size={self.batch_size}"
            )
        if any(w < 0 for w in self.loader_workers) or not self.loader_workers:
            raise ValueError(f"loader_workers = {self.loader_workers}; give counts >= 0, e.g. 0,2")


def _time_clips(data_dir: Path, cfg: Config, workers: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from vap_env.data.clips import ClipConfig, ClipDataset

    dataset = ClipDataset(
        data_dir,
        "train",
        ClipConfig(chunk_frames=cfg.chunk_frames, height=cfg.height, width=cfg.width),
    )
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=workers)
    start = time.perf_counter()
    clips = sum(int(batch["context"].shape[0]) for batch in loader)
    seconds = time.perf_counter() - start
    return {
        "workers": workers,
        "clips": clips,
        "seconds": seconds,
        "clips_per_second": clips / seconds if seconds > 0 else float("nan"),
    }


def run(cfg: Config) -> dict[str, Any]:
    """Measure what the module docstring says; returns the report dict."""
    report: dict[str, Any] = {"config": asdict(cfg), "platform": platform.platform()}
    with tempfile.TemporaryDirectory(prefix="vap_bench_data_") as tmp:
        if cfg.data_dir is None:
            from vap_env.data.synth.writer import SynthConfig, generate

            synth = SynthConfig(
                schema="rt1",
                episodes=cfg.episodes,
                num_frames=cfg.frames,
                out=tmp,
                workers=cfg.synth_workers,
                val_fraction=0.0,
                test_fraction=0.0,
                progress=False,
            )
            generate(SynthConfig(**{**asdict(synth), "episodes": 1, "out": f"{tmp}/warmup"}))
            start = time.perf_counter()
            data_dir = generate(synth)
            seconds = time.perf_counter() - start
            per_minute = cfg.episodes / seconds * 60.0
            report["synth"] = {
                "episodes": cfg.episodes,
                "frames": cfg.frames,
                "size": "320x256",
                "workers": cfg.synth_workers,
                "seconds": seconds,
                "episodes_per_minute": per_minute,
                "episodes_per_minute_at_30_frames": per_minute * cfg.frames / 30.0,
                "target_episodes_per_minute_at_30_frames": TARGET_EPISODES_PER_MINUTE,
            }
        else:
            data_dir = Path(cfg.data_dir)
        report["clips"] = [_time_clips(data_dir, cfg, w) for w in cfg.loader_workers]
    return report


def main(cfg: Config) -> int:
    """Run, print a short table, optionally write JSON."""
    report = run(cfg)
    if "synth" in report:
        s = report["synth"]
        print(
            f"synth rt1 320x256: {s['episodes']} episodes x {s['frames']} frames in {s['seconds']:.1f} s "
            f"= {s['episodes_per_minute']:.1f} episodes/min ({s['episodes_per_minute_at_30_frames']:.1f} "
            f"at 30 frames; target {TARGET_EPISODES_PER_MINUTE:.0f})"
        )
    print(f"{'loader workers':>14} | {'clips':>6} | {'seconds':>8} | {'clips/s':>8}")
    for row in report["clips"]:
        print(
            f"{row['workers']:>14} | {row['clips']:>6} | {row['seconds']:>8.2f} | "
            f"{row['clips_per_second']:>8.1f}"
        )
    if cfg.json:
        write_json(cfg.json, report, indent=2)
    return 0
