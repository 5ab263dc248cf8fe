"""Tests of the ST-IoU mask sources on synthetic videos with known ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.masks import (
    MASK_SOURCE_HELP,
    MaskSource,
    MotionMasks,
    MotionMasksConfig,
    SAM2MasksConfig,
    available_mask_sources,
    make_mask_source,
    mask_source_config,
    video_st_iou,
)
from benchmarks.metrics import st_iou
from vap_env.config import from_dict

T, H, W, S = 6, 48, 64, 10  # frames, height, width, square side


def _scene(
    offsets: list[int], *, seed: int = 0, speckle: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A red square moving right over a fixed textured grey background.

    Returns the video (T, H, W, 3) uint8 and the square's true masks (T, H, W) bool.
    """
    rng = np.random.default_rng(seed)
    background = rng.integers(90, 140, (H, W, 3), dtype=np.uint8)  # low-contrast texture
    video = np.repeat(background[None], len(offsets), axis=0)
    masks = np.zeros(video.shape[:3], dtype=bool)
    for t, dx in enumerate(offsets):
        masks[t, 18 : 18 + S, 4 + dx : 4 + dx + S] = True
    video[masks] = (220, 30, 30)
    if speckle:  # isolated single-pixel flicker in later frames, as a decoder might produce
        ys, xs = rng.integers(0, H, 20), rng.integers(0, W, 20)
        video[2, ys, xs] = 255
    return video, masks


def test_registry_and_did_you_mean():
    assert available_mask_sources() == ["motion", "sam2", "sim"]
    assert isinstance(make_mask_source("motion", threshold=30), MaskSource)
    with pytest.raises(KeyError, match="Did you mean 'motion'"):
        make_mask_source("moton")
    with pytest.raises(KeyError, match="unknown key"):
        make_mask_source("motion", treshold=30)
    with pytest.raises(ValueError, match="threshold"):
        MotionMasksConfig(threshold=300)


def test_motion_masks_on_a_moving_square():
    video, truth = _scene([0, 12, 24, 36, 48, 48], speckle=True)
    m = MotionMasks().masks(video)
    assert m.shape == (T, H, W) and m.dtype == bool
    assert not m[0].any()  # nothing changed from the first frame
    for t in range(1, T):
        # The square left its first position and arrived at a new one: both changed.
        expected = truth[t] | truth[0]
        inter, union = (m[t] & expected).sum(), (m[t] | expected).sum()
        assert inter / union > 0.9, t
    assert not (m[2] & ~(truth[2] | truth[0])).any()  # the speckle was cleaned away
    # Without clean-up the speckle survives: the opening is what removed it.
    raw = MotionMasks(MotionMasksConfig(open_radius=0, close_radius=0, blur_sigma=0)).masks(video)
    assert (raw[2] & ~(truth[2] | truth[0])).sum() >= 15


def test_motion_st_iou_rewards_the_right_motion():
    reference, _ = _scene([0, 6, 12, 18, 24, 30])
    good, _ = _scene([0, 6, 12, 18, 24, 31])  # one pixel off at the end
    still, _ = _scene([0] * T)  # the model ignored the action
    src = make_mask_source("motion")
    r_good = video_st_iou(good, reference, src)
    r_still = video_st_iou(still, reference, src)
    assert r_good.mask_source == "motion" and r_good.n == 1
    assert r_good.value > 0.9
    assert r_still.value == 0.0  # nothing moved in the generated video
    # A static reference and a static generation: no evidence, NaN by default.
    assert math.isnan(video_st_iou(still, still, src).value)
    assert video_st_iou(still, still, src, if_empty=1.0).value == 1.0


def test_sim_masks_ground_truth_and_colour_transfer():
    reference, truth = _scene([0, 5, 10, 15, 20, 25])
    generated, gen_truth = _scene([0, 7, 14, 21, 28, 35])  # the model moved it faster
    src = make_mask_source("sim")
    np.testing.assert_array_equal(src.masks(reference, ground_truth=truth), truth)
    seg = src.masks(generated, reference, truth)
    # The colour transfer finds the square where the generated video has it.
    assert st_iou(seg, gen_truth) > 0.9
    r = video_st_iou(generated, reference, src, ground_truth=truth)
    assert r.value == pytest.approx(st_iou(gen_truth, truth), abs=0.05)
    assert r.mask_source == "sim"
    # Deterministic under its seed.
    np.testing.assert_array_equal(seg, src.masks(generated, reference, truth))


def test_sim_masks_need_ground_truth():
    video, truth = _scene([0] * T)
    with pytest.raises(ValueError, match="needs ground_truth"):
        make_mask_source("sim").masks(video)
    with pytest.raises(ValueError, match="shape"):
        make_mask_source("sim").masks(video, ground_truth=truth[:2])
    with pytest.raises(ValueError, match="both foreground and background"):
        make_mask_source("sim").masks(video, video, np.zeros_like(truth))


def test_sam2_errors_name_the_checkpoint_and_the_extra(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        make_mask_source("sam2", checkpoint=str(tmp_path / "missing.pt"))
    ckpt = tmp_path / "sam2.pt"
    ckpt.write_bytes(b"")
    try:
        import sam2  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"vap-env\[sam2\]"):
            make_mask_source("sam2", checkpoint=str(ckpt))
    else:
        pytest.skip("sam2 is installed; the missing-extra error cannot be exercised")


def test_command_options_of_the_mask_source_are_checked_and_reach_the_config(tmp_path):
    assert mask_source_config("sim") == mask_source_config("motion", device="cuda") == {}
    with pytest.raises(ValueError, match="--mask-source sam2 needs --sam2-checkpoint PATH"):
        mask_source_config("sam2", sam2_config="configs/sam2.1/sam2.1_hiera_b+.yaml")
    with pytest.raises(ValueError, match="--sam2-checkpoint only applies to --mask-source sam2"):
        mask_source_config("sim", sam2_checkpoint="sam2.pt")
    with pytest.raises(ValueError, match="--sam2-checkpoint and --sam2-config only apply"):
        mask_source_config("motion", sam2_checkpoint="sam2.pt", sam2_config="x.yaml")
    with pytest.raises(KeyError, match="Did you mean 'sam2'"):
        mask_source_config("sam3")
    fields = mask_source_config(
        "sam2",
        sam2_checkpoint="b.pt",
        sam2_config="configs/sam2.1/sam2.1_hiera_b+.yaml",
        device="cuda",
    )
    assert from_dict(SAM2MasksConfig, fields) == SAM2MasksConfig(
        checkpoint="b.pt", model_config="configs/sam2.1/sam2.1_hiera_b+.yaml", device="cuda"
    )
    default = from_dict(SAM2MasksConfig, mask_source_config("sam2", sam2_checkpoint="b.pt"))
    assert default.model_config == SAM2MasksConfig.model_config and default.device == "cpu"
    # the fields build the source (here the missing checkpoint is the end of the path)
    missing = str(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        make_mask_source("sam2", **mask_source_config("sam2", sam2_checkpoint=missing))
    assert all(f"{name} (" in MASK_SOURCE_HELP for name in available_mask_sources())


def test_bad_videos_are_rejected():
    video, _ = _scene([0] * T)
    with pytest.raises(TypeError, match="uint8"):
        MotionMasks().masks(video.astype(np.float32))
    with pytest.raises(ValueError, match="differ"):
        video_st_iou(video, video[:3], make_mask_source("motion"))
