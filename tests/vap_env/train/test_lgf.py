"""Local Gram Flow loss: flows, transposition, fusion, KL, teachers, gradients."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from vap_env.train.lgf import (
    LGFConfig,
    LGFLoss,
    RandomConvTeacher,
    bidirectional_teacher_flow,
    build_teacher,
    fuse_flows,
    lgf_kl,
    local_gram_flow,
    local_gram_flow_logits,
    transpose_flow,
    window_valid_mask,
)


def _dense_flow(feats: torch.Tensor, window: int, temperature: float) -> torch.Tensor:
    """Reference: full N x N similarity with everything outside the window masked, per frame pair."""
    h, w = feats.shape[-2:]
    f = torch.nn.functional.normalize(feats, dim=2).flatten(3)  # (B, T, D, N)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    r = window // 2
    near = ((ys[:, None] - ys[None]).abs() <= r) & ((xs[:, None] - xs[None]).abs() <= r)
    sim = torch.einsum("btdi,btdj->btij", f[:, :-1], f[:, 1:]) / temperature
    return sim.masked_fill(~near, float("-inf")).softmax(-1)  # (B, T-1, N, N)


def _to_dense(flow: torch.Tensor, h: int, w: int, window: int) -> torch.Tensor:
    b, t, n, _ = flow.shape
    dense = torch.zeros(b, t, n, n)
    r = window // 2
    k = 0
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            for y in range(h):
                for x in range(w):
                    if 0 <= y + dy < h and 0 <= x + dx < w:
                        dense[:, :, y * w + x, (y + dy) * w + x + dx] = flow[:, :, y * w + x, k]
            k += 1
    return dense


def test_flow_matches_dense_reference_and_rows_sum_to_one():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 8, 4, 5, generator=g)
    flow = local_gram_flow(feats, window=3, temperature=0.2)
    assert flow.shape == (2, 2, 20, 9)
    torch.testing.assert_close(flow.sum(-1), torch.ones(2, 2, 20))
    torch.testing.assert_close(_to_dense(flow, 4, 5, 3), _dense_flow(feats, 3, 0.2))
    valid = window_valid_mask(4, 5, 3)
    assert (flow[..., ~valid] == 0).all()
    assert valid.sum() == 20 * 9 - (2 * 5 + 2 * 4) * 3 + 4  # border tokens lose offsets


def test_transpose_flow_is_the_dense_transpose():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(1, 3, 4, 4, 5, generator=g)
    back = local_gram_flow(feats, window=3, temperature=0.5)  # any valid local flow will do
    out = transpose_flow(back, 4, 5, 3)
    torch.testing.assert_close(_to_dense(out, 4, 5, 3), _to_dense(back, 4, 5, 3).transpose(-1, -2))
    # transposing twice with the window's point symmetry gives the original back
    torch.testing.assert_close(transpose_flow(out, 4, 5, 3), back)


def test_fuse_is_normalised_average():
    g = torch.Generator().manual_seed(2)
    a = local_gram_flow(torch.randn(1, 2, 4, 3, 3, generator=g), 3, 0.3)
    fused = fuse_flows(a, a)
    torch.testing.assert_close(fused, a)
    fused = fuse_flows(a, transpose_flow(a, 3, 3, 3))
    torch.testing.assert_close(fused.sum(-1), torch.ones_like(fused.sum(-1)))


def test_kl_zero_when_flows_match_positive_otherwise():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 4, 8, 4, 4, generator=g)
    logits = local_gram_flow_logits(feats, 5, 0.1)
    teacher = logits.softmax(-1)
    assert lgf_kl(teacher, logits).item() == pytest.approx(0.0, abs=1e-6)
    other = local_gram_flow_logits(torch.randn(2, 4, 8, 4, 4, generator=g), 5, 0.1)
    assert lgf_kl(teacher, other).item() > 1e-3
    assert torch.isfinite(lgf_kl(teacher, other))


def test_random_teacher_is_seeded_causal_and_direction_dependent():
    video = torch.rand(2, 5, 3, 32, 40, generator=torch.Generator().manual_seed(4)) * 2 - 1
    t1, t2 = RandomConvTeacher(16, seed=0), RandomConvTeacher(16, seed=0)
    f = t1(video)
    assert f.shape == (2, 5, 16, 4, 5)
    torch.testing.assert_close(f, t2(video))
    assert not torch.allclose(f, RandomConvTeacher(16, seed=1)(video))
    # causal: frame 2's features ignore later frames
    changed = video.clone()
    changed[:, 3:] = 0
    torch.testing.assert_close(t1(changed)[:, :3], f[:, :3])
    assert not any(p.requires_grad for p in t1.parameters())
    # the fused flow differs from the forward-only flow: the backward run adds information
    fused = bidirectional_teacher_flow(t1, video, [0, 2, 4], (4, 5), 3, 0.1)
    forward_only = local_gram_flow(f[:, [0, 2, 4]], 3, 0.1)
    assert fused.shape == forward_only.shape == (2, 2, 20, 9)
    assert not torch.allclose(fused, forward_only)


def test_loss_gradients_reach_projector_only_and_zero_for_a_perfect_student():
    cfg = LGFConfig(weight=1.0, window=3, temperature=0.2, projector_hidden=16, random_dim=8)
    teacher = build_teacher(cfg)
    loss_fn = LGFLoss(cfg, model_dim=12, teacher=teacher)
    g = torch.Generator().manual_seed(5)
    video = torch.rand(1, 5, 3, 32, 40, generator=g) * 2 - 1
    hidden = torch.randn(1, 3 * 4 * 5, 12, generator=g, requires_grad=True)
    loss = loss_fn(hidden, (3, 4, 5), video, [0, 2, 4])
    assert loss.item() > 0
    loss.backward()
    grads = [p.grad for p in loss_fn.projector.parameters()]
    assert all(gr is not None and gr.abs().sum() > 0 for gr in grads)
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0
    assert [n for n, _ in loss_fn.named_parameters()] == [
        "projector.net.0.weight",
        "projector.net.0.bias",
        "projector.net.2.weight",
        "projector.net.2.bias",
    ]
    # a student whose flow logits equal the log of the teacher's fused flow has zero loss
    target = bidirectional_teacher_flow(teacher, video, [0, 2, 4], (4, 5), 3, 0.2)
    assert lgf_kl(target, target.log()).item() == pytest.approx(0.0, abs=1e-6)


def test_bad_settings_and_teachers_raise_clear_errors():
    with pytest.raises(ValueError, match="window=4"):
        LGFConfig(window=4)
    with pytest.raises(ValueError, match="temperature"):
        LGFConfig(temperature=0)
    with pytest.raises(KeyError, match="Did you mean 'random'"):
        build_teacher(LGFConfig(teacher="randon"))
    loss_fn = LGFLoss(LGFConfig(window=3), 8, RandomConvTeacher(4))
    with pytest.raises(ValueError, match="expected T\\*h\\*w"):
        loss_fn.student_logits(torch.zeros(1, 7, 8), (2, 2, 2))


@pytest.mark.skipif(importlib.util.find_spec("sam2") is not None, reason="sam2 is installed")
def test_sam2_teacher_without_package_names_the_extra():
    with pytest.raises(ImportError, match=r"vap-env\[sam2\]"):
        build_teacher(LGFConfig(teacher="sam2", sam2_checkpoint="x.pt"))


@pytest.mark.skipif(importlib.util.find_spec("sam2") is None, reason="sam2 is not installed")
def test_sam2_teacher_missing_checkpoint_names_the_path(tmp_path):
    missing = tmp_path / "sam2.1_hiera_tiny.pt"
    with pytest.raises(FileNotFoundError, match=r"sam2\.1_hiera_tiny\.pt"):
        build_teacher(LGFConfig(teacher="sam2", sam2_checkpoint=str(missing)))
    with pytest.raises(ValueError, match=r"lgf\.sam2_checkpoint"):
        build_teacher(LGFConfig(teacher="sam2"))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("sam2") is None, reason="sam2 is not installed")
def test_sam2_teacher_tracks_with_memory(tmp_path):
    """The SAM2 teacher on a randomly initialised SAM2.1-tiny (no download: the config ships with sam2)."""
    from sam2.build_sam import build_sam2

    config = "configs/sam2.1/sam2.1_hiera_t.yaml"
    checkpoint = tmp_path / "random_hiera_t.pt"
    torch.save({"model": build_sam2(config, None, device="cpu").state_dict()}, checkpoint)
    cfg = LGFConfig(teacher="sam2", sam2_checkpoint=str(checkpoint), sam2_config=config, window=3)
    teacher = build_teacher(cfg)
    assert teacher.feature_dim == 256 and not any(p.requires_grad for p in teacher.parameters())
    video = torch.rand(1, 3, 3, 64, 80, generator=torch.Generator().manual_seed(0)) * 2 - 1
    masks = torch.zeros(1, 3, 64, 80, dtype=torch.bool)
    masks[..., 20:40, 30:50] = True
    feats = teacher(video, masks)
    assert feats.shape == (1, 3, 256, 64, 64) and torch.isfinite(feats).all()
    assert torch.equal(feats, teacher(video, masks))
    # memory makes the features depend on the direction of time, as the fusion assumes
    assert not torch.allclose(feats, teacher(video.flip(1), masks.flip(1)).flip(1))
    flow = bidirectional_teacher_flow(teacher, video, [0, 1, 2], (4, 5), 3, 0.1, masks)
    torch.testing.assert_close(flow.sum(-1), torch.ones(1, 2, 20))


def test_kl_is_teacher_to_student():
    p = torch.tensor([0.75, 0.25, 0.0]).view(1, 1, 1, 3)  # teacher; last offset off-frame
    logits = torch.tensor([0.0, 0.0, -math.inf]).view(1, 1, 1, 3)  # student q = (0.5, 0.5)
    # KL(p || q) = 0.130812; the reversed KL(q || p) would be 0.143841
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert lgf_kl(p, logits).item() == pytest.approx(expected, abs=1e-6)


def test_backward_flow_pairs_frame_t_plus_1_with_frame_t():
    # A memoryless teacher: its features of a frame do not depend on the time order it ran in.
    teacher = RandomConvTeacher(8, seed=0, memory=0.0)
    video = torch.rand(1, 4, 3, 32, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = torch.nn.functional.adaptive_avg_pool2d(teacher(video).flatten(0, 1), (4, 5))
    feats = feats.unflatten(0, (1, 4))  # (1, 4, D, 4, 5)
    forward = local_gram_flow(feats, 3, 0.1)
    # pair t of the backward flow: from frame t+1 to frame t
    backward = torch.cat([local_gram_flow(feats[:, [t + 1, t]], 3, 0.1) for t in range(3)], dim=1)
    expected = fuse_flows(forward, transpose_flow(backward, 4, 5, 3))
    got = bidirectional_teacher_flow(teacher, video, [0, 1, 2, 3], (4, 5), 3, 0.1)
    torch.testing.assert_close(got, expected)
