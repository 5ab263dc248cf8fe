"""The written features.json / dataset_info.json match the published RT-1 and DROID schemas."""

from __future__ import annotations

import json

import pytest

from vap_env.data.schemas import RT1, flat_feature_specs, get_schema

# The public fractal20220817_data 0.1.0 schema (shared/reference/rlds_schemas.md): per-step shapes.
RT1_SPEC = {
    "steps/observation/image": ((256, 320, 3), "uint8"),
    "steps/observation/natural_language_instruction": ((), "object"),
    "steps/observation/natural_language_embedding": ((512,), "float32"),
    "steps/observation/base_pose_tool_reached": ((7,), "float32"),
    "steps/observation/gripper_closed": ((1,), "float32"),
    "steps/observation/gripper_closedness_commanded": ((1,), "float32"),
    "steps/observation/height_to_bottom": ((1,), "float32"),
    "steps/observation/orientation_box": ((2, 3), "float32"),
    "steps/observation/orientation_start": ((4,), "float32"),
    "steps/observation/robot_orientation_positions_box": ((3, 3), "float32"),
    "steps/observation/rotation_delta_to_go": ((3,), "float32"),
    "steps/observation/src_rotation": ((4,), "float32"),
    "steps/observation/vector_to_go": ((3,), "float32"),
    "steps/observation/workspace_bounds": ((3, 3), "float32"),
    "steps/action/world_vector": ((3,), "float32"),
    "steps/action/rotation_delta": ((3,), "float32"),
    "steps/action/gripper_closedness_action": ((1,), "float32"),
    "steps/action/terminate_episode": ((3,), "int32"),
    "steps/action/base_displacement_vector": ((2,), "float32"),
    "steps/action/base_displacement_vertical_rotation": ((1,), "float32"),
    "steps/is_first": ((), "bool"),
    "steps/is_last": ((), "bool"),
    "steps/is_terminal": ((), "bool"),
    "steps/reward": ((), "float32"),
}


def _leaves(node: dict, prefix: str = "") -> dict[str, dict]:
    """Leaf feature protos of a features.json tree, keyed by their flat name."""
    out = {}
    if "featuresDict" in node:
        for name, sub in node["featuresDict"]["features"].items():
            out.update(_leaves(sub, f"{prefix}/{name}" if prefix else name))
    elif "sequence" in node:
        out.update(_leaves(node["sequence"]["feature"], prefix))
    else:
        out[prefix] = node
    return out


def _shape_dtype(proto: dict) -> tuple[tuple[int, ...], str]:
    for kind in ("tensor", "image"):
        if kind in proto:
            t = proto[kind]
            return tuple(int(d) for d in t["shape"].get("dimensions", [])), t["dtype"]
    if "text" in proto:
        return (), "string"
    raise AssertionError(f"unexpected feature proto {proto}")


def test_features_json_lists_every_rt1_feature(rt1_dataset_dir) -> None:
    tree = json.loads((rt1_dataset_dir / "features.json").read_text())
    leaves = _leaves(tree)
    assert set(leaves) == set(RT1_SPEC)
    for key, (shape, dtype) in RT1_SPEC.items():
        got_shape, got_dtype = _shape_dtype(leaves[key])
        assert got_shape == shape, key
        assert got_dtype == ("string" if dtype == "object" else dtype), key
    image = leaves["steps/observation/image"]["image"]
    assert image["encodingFormat"] == "jpeg"


def test_schema_table_matches_reference() -> None:
    assert flat_feature_specs(RT1.features()) == RT1_SPEC


def test_dataset_info_has_split_shard_lengths(rt1_dataset_dir) -> None:
    info = json.loads((rt1_dataset_dir / "dataset_info.json").read_text())
    assert info["name"] == "fractal20220817_data" and info["version"] == "0.1.0"
    splits = {s["name"]: [int(n) for n in s["shardLengths"]] for s in info["splits"]}
    assert splits == {"train": [3], "val": [1], "test": [1]}
    for split in splits:
        assert (rt1_dataset_dir / f"fractal20220817_data-{split}.tfrecord-00000-of-00001").is_file()


def test_droid_metadata_has_extrinsics(droid_dataset_dir) -> None:
    leaves = _leaves(json.loads((droid_dataset_dir / "features.json").read_text()))
    for cam in ("wrist_cam", "exterior_cam_1", "exterior_cam_2"):
        assert _shape_dtype(leaves[f"episode_metadata/extrinsics_{cam}"]) == ((6,), "float64")
    assert _shape_dtype(leaves["steps/observation/joint_position"]) == ((7,), "float64")
    assert _shape_dtype(leaves["steps/observation/exterior_image_1_left"]) == (
        (180, 320, 3),
        "uint8",
    )


def test_unknown_schema_suggests_a_name() -> None:
    with pytest.raises(KeyError, match="Did you mean 'rt1'"):
        get_schema("rt2")
