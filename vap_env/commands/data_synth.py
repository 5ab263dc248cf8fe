"""Generate a synthetic RT-1 or DROID dataset (a real TFDS/RLDS directory) with ground truth.

    vap-env data synth --schema rt1 --episodes 100 --out data/synth
    -> data/synth/fractal20220817_data/0.1.0/   (--schema droid -> data/synth/droid/1.0.1/)

An interrupted run resumes when rerun with the same options; the dataset directory appears only
when every episode is rendered. See ``vap_env.data.synth.writer`` for the layout and the values
the scene fills in.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from vap_env.data.synth.scripted import SKILL_NAMES


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env data synth``."""

    schema: Literal["rt1", "droid"] = field(default="rt1", metadata={"help": "dataset schema"})
    episodes: int = field(default=10, metadata={"help": "number of episodes over all splits"})
    out: str = field(default="data/synth", metadata={"help": "output root directory"})
    frames: int = field(
        default=33, metadata={"help": "frames per episode (1 context + 4 chunks of 8)"}
    )
    seed: int = field(default=0, metadata={"help": "random seed"})
    val_fraction: float = field(default=0.1, metadata={"help": "fraction of episodes in val"})
    test_fraction: float = field(default=0.1, metadata={"help": "fraction of episodes in test"})
    skills: tuple[str, ...] = field(
        default=SKILL_NAMES, metadata={"help": "scripted skills, cycled"}
    )
    fail_prob: float = field(
        default=0.1, metadata={"help": "probability of a deliberately missed grasp"}
    )
    episodes_per_shard: int = field(default=64, metadata={"help": "episodes per tfrecord shard"})
    workers: int = field(default=0, metadata={"help": "rendering processes (0 = this process)"})
    extra_cameras: bool = field(default=True, metadata={"help": "DROID: render exterior 2 + wrist"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing dataset"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def main(cfg: Config) -> int:
    """Generate the dataset; prints its path and the rendering rate."""
    from vap_env.data.synth.writer import SynthConfig, generate

    options = asdict(cfg)
    options["num_frames"] = options.pop("frames")
    start = time.perf_counter()
    path = generate(SynthConfig(**options))
    seconds = time.perf_counter() - start
    print(f"wrote {cfg.episodes} {cfg.schema} episodes to {path} in {seconds:.1f} s")
    return 0
