"""Episodes for training, benchmarks and the env: RT-1 / DROID RLDS loaders, skills, clips, synthetic data.

    from vap_env.data import iter_episodes, ClipDataset
    for episode in iter_episodes("data/synth/fractal20220817_data/0.1.0", split="train"):
        episode.frames, episode.actions, episode.tcp_pose, episode.camera, episode.skill

``Episode`` (``vap_env.data.episode``) is the one canonical schema; ``vap_env.data.rlds`` holds the
per-dataset standardisation; ``vap_env.data.synth`` renders synthetic datasets in the same formats.
Reading needs TensorFlow (the ``data`` extra) to parse tfrecord shards.
"""

from vap_env.data.clips import ClipConfig, ClipDataset, episode_windows
from vap_env.data.episode import Episode, GroundTruth
from vap_env.data.rlds import (
    CorruptRecordError,
    CorruptRecordWarning,
    RLDSDataset,
    iter_episodes,
    load_episode,
    open_rlds,
)
from vap_env.data.schemas import DROID, RT1, SCHEMAS, DatasetSchema, get_schema
from vap_env.data.skeletons import episode_keypoints, render_skeleton
from vap_env.data.skills import SKILLS, skill_from_instruction

__all__ = [
    "DROID",
    "RT1",
    "SCHEMAS",
    "SKILLS",
    "ClipConfig",
    "ClipDataset",
    "CorruptRecordError",
    "CorruptRecordWarning",
    "DatasetSchema",
    "Episode",
    "GroundTruth",
    "RLDSDataset",
    "episode_keypoints",
    "episode_windows",
    "get_schema",
    "iter_episodes",
    "load_episode",
    "open_rlds",
    "render_skeleton",
    "skill_from_instruction",
]
