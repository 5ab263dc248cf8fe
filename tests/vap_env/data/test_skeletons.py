"""Skeletons drawn from the logged states land on the gripper the renderer drew."""

from __future__ import annotations

import cv2
import numpy as np

from vap_env.data import episode_keypoints, iter_episodes, render_skeleton


def _overlap(episode, dilate: int) -> float:
    """Fraction of gripper-skeleton pixels on the (slightly dilated) ground-truth gripper mask."""
    skeleton = render_skeleton(episode, gripper_only=True).sum(-1) > 0  # (T, H, W)
    kernel = np.ones((dilate, dilate), np.uint8)
    masks = np.stack(
        [cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in episode.ground_truth.gripper_masks]
    )
    return float((skeleton & masks).sum() / max(skeleton.sum(), 1))


def test_rt1_gripper_skeleton_from_tcp_pose_overlaps_gripper_mask(rt1_dataset_dir) -> None:
    episodes = list(iter_episodes(rt1_dataset_dir, "train"))
    for ep in episodes:
        points = episode_keypoints(ep)
        assert np.isnan(points).any() and np.isfinite(points).any()  # gripper only: arm points NaN
        # The head camera of the loader is un-jittered, the renderer's was jittered by a few mm.
        assert _overlap(ep, dilate=7) > 0.6, ep.episode_id
    # A skeleton shifted by a wrong pose misses the gripper: the overlap measures alignment.
    ep = episodes[0]
    shifted = ep.tcp_pose.copy()
    shifted[:, 1] += 0.15
    moved = type(ep)(**{**ep.__dict__, "tcp_pose": shifted})
    assert _overlap(moved, dilate=7) < 0.2


def test_rt1_full_arm_from_ground_truth_joints(rt1_dataset_dir) -> None:
    ep = next(iter(iter_episodes(rt1_dataset_dir, "train")))
    points = episode_keypoints(ep, from_ground_truth=True)
    assert np.isfinite(points).all()
    gripper_only = episode_keypoints(ep)
    finite = np.isfinite(gripper_only)
    # The gripper points agree whichever way they are computed (the logged TCP is FK of the joints).
    np.testing.assert_allclose(points[finite], gripper_only[finite], atol=1e-4)


def test_droid_fk_skeleton_overlaps_gripper_mask(droid_dataset_dir) -> None:
    for ep in iter_episodes(droid_dataset_dir, "train"):
        assert np.isfinite(episode_keypoints(ep)).all()  # joints logged: the whole arm
        # The spec draws Robotiq 2F-85 fingers longer than the rendered Franka fingers, so a looser bound.
        assert _overlap(ep, dilate=7) > 0.3, ep.episode_id
