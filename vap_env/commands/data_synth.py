"""Generate a synthetic RT-1 or DROID dataset (a real TFDS/RLDS directory) with ground truth.

    vap-env data synth --schema rt1 --episodes 100 --out data/synth
    -> data/synth/fractal20220817_data/0.1.0/   (--schema droid -> data/synth/droid/1.0.1/)

An interrupted run resumes when rerun with the same options; the dataset directory appears only
when every episode is rendered. See ``vap_env.data.synth.writer`` for the layout and the values
the scene fills in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from vap_env.data.synth.writer import SynthConfig


@dataclass(frozen=True)
class Config(SynthConfig):
    """Options of ``vap-env data synth``: every field of ``SynthConfig``."""


def main(cfg: Config) -> int:
    """Generate the dataset; prints its path and the rendering rate."""
    from vap_env.data.synth.writer import generate

    start = time.perf_counter()
    path = generate(cfg)
    seconds = time.perf_counter() - start
    print(f"wrote {cfg.episodes} {cfg.schema} episodes to {path} in {seconds:.1f} s")
    return 0
