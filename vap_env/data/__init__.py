"""Episodes for training, benchmarks and the env: RT-1 / DROID RLDS loaders, skills, clips, synthetic data.

    from vap_env.data import iter_episodes, ClipDataset
    for episode in iter_episodes("data/synth/fractal20220817_data/0.1.0", split="train"):
        episode.frames, episode.actions, episode.tcp_pose, episode.camera, episode.skill

``Episode`` (``vap_env.data.episode``) is the one canonical schema; ``vap_env.data.rlds`` holds the
per-dataset standardisation; ``vap_env.data.synth`` renders synthetic datasets in the same formats.
Reading needs TensorFlow (the ``data`` extra) to parse tfrecord shards.
"""

from typing import TYPE_CHECKING

from kinematics._lazy import lazy_exports

# Names resolve on first use (PEP 562): clips and clip caches load without tensorflow-datasets, so
# a GPU machine without the ``data`` extra can train from a cache written elsewhere.
_EXPORTS = {
    "ClipConfig": "vap_env.data.clips",
    "ClipDataset": "vap_env.data.clips",
    "episode_windows": "vap_env.data.clips",
    "ClipCache": "vap_env.data.clip_cache",
    "write_clip_cache": "vap_env.data.clip_cache",
    "Episode": "vap_env.data.episode",
    "GroundTruth": "vap_env.data.episode",
    "CorruptRecordError": "vap_env.data.rlds",
    "CorruptRecordWarning": "vap_env.data.rlds",
    "RLDSDataset": "vap_env.data.rlds",
    "iter_episodes": "vap_env.data.rlds",
    "load_episode": "vap_env.data.rlds",
    "open_rlds": "vap_env.data.rlds",
    "DROID": "vap_env.data.schemas",
    "RT1": "vap_env.data.schemas",
    "SCHEMAS": "vap_env.data.schemas",
    "DatasetSchema": "vap_env.data.schemas",
    "get_schema": "vap_env.data.schemas",
    "episode_keypoints": "vap_env.data.skeletons",
    "render_skeleton": "vap_env.data.skeletons",
    "SKILLS": "vap_env.data.skills",
    "skill_from_instruction": "vap_env.data.skills",
}

if TYPE_CHECKING:
    from vap_env.data.clip_cache import ClipCache, write_clip_cache
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


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())


__all__ = [
    "DROID",
    "RT1",
    "SCHEMAS",
    "SKILLS",
    "ClipCache",
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
    "write_clip_cache",
]
