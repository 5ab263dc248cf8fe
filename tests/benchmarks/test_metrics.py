"""Tests of benchmarks.metrics: hand-computed ST-IoU, PSNR/SSIM against formulas, Fréchet
distance against closed forms, bootstrap, SimplerEnv's MMRV/Pearson, per-skill tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchmarks.metrics import (
    MetricResult,
    bootstrap_ci,
    frechet_distance,
    frechet_distance_from_stats,
    group_by_skill,
    markdown_table,
    mean_maximum_rank_violation,
    pearson,
    per_skill_summary,
    psnr,
    skill_table_markdown,
    ssim,
    st_iou,
    summarize,
    summarize_rate,
    wilson_interval,
)


def _box(t: int, h: int, w: int, boxes: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """(t, h, w) bool with frame i set inside boxes[i] = (y0, y1, x0, x1)."""
    m = np.zeros((t, h, w), dtype=bool)
    for i, (y0, y1, x0, x1) in boxes.items():
        m[i, y0:y1, x0:x1] = True
    return m


# --- ST-IoU -------------------------------------------------------------------------------


def test_st_iou_identical_and_disjoint():
    a = _box(3, 8, 8, {0: (0, 4, 0, 4), 1: (1, 5, 1, 5), 2: (2, 6, 2, 6)})
    assert st_iou(a, a) == 1.0
    b = _box(3, 8, 8, {0: (4, 8, 4, 8), 1: (5, 8, 5, 8), 2: (6, 8, 0, 2)})
    assert st_iou(a, b) == 0.0


def test_st_iou_pools_over_time_not_mean_of_frames():
    # Frame 0: G = 4 px, R = 4 px, overlap 2 -> inter 2, union 6.
    # Frame 1: G = 2 px, R empty              -> inter 0, union 2.
    # Frame 2: both empty                      -> contributes nothing.
    g = _box(3, 4, 4, {0: (0, 2, 0, 2), 1: (3, 4, 0, 2)})
    r = _box(3, 4, 4, {0: (0, 2, 1, 3)})
    assert st_iou(g, r) == pytest.approx(2 / 8)
    # The per-frame mean would have been (2/6 + 0 + ?)/3: a different number.
    assert st_iou(g, r) != pytest.approx((2 / 6 + 0) / 2)
    # Symmetric, and torch tensors are accepted.
    assert st_iou(torch.from_numpy(r), torch.from_numpy(g)) == pytest.approx(0.25)


def test_st_iou_empty_both_is_nan_by_default_or_the_given_value():
    e = np.zeros((2, 5, 5), dtype=bool)
    assert math.isnan(st_iou(e, e))
    assert st_iou(e, e, if_empty=1.0) == 1.0
    one = e.copy()
    one[1, 2, 2] = True
    assert st_iou(one, e) == 0.0  # only one side empty: a plain miss


def test_st_iou_rejects_bad_input():
    a = np.zeros((2, 4, 4), dtype=bool)
    with pytest.raises(TypeError, match="bool"):
        st_iou(a.astype(np.uint8), a)
    with pytest.raises(ValueError, match="differ in shape"):
        st_iou(a, np.zeros((3, 4, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        st_iou(a[0], a[0])


# --- PSNR / SSIM --------------------------------------------------------------------------


def test_psnr_matches_formula_and_is_infinite_for_copies():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] ^= 8  # one value off by 8 in frame 0; frame 1 identical
    assert psnr(a, b) == math.inf
    c = np.clip(a.astype(int) + 5, 0, 255).astype(np.uint8)
    mse = ((a.astype(float) - c) ** 2).reshape(2, -1).mean(1)
    assert psnr(a, c) == pytest.approx(np.mean(10 * np.log10(255**2 / mse)))
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, a[:1])


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of Wang et al. written out window by window (one channel, valid positions)."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cov = (w * (px - mx) * (py - my)).sum()
            vals.append(
                ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    return float(np.mean(vals))


def test_ssim_identity_and_reference_formula():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (16, 18, 1), dtype=np.uint8)
    noise = rng.normal(0, 20, a.shape)
    b = np.clip(a + noise, 0, 255).astype(np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    expected = _ssim_reference(a[..., 0].astype(float), b[..., 0].astype(float))
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)
    assert 0.0 < ssim(a, b) < 0.99
    # Colour video: mean over frames and channels of the per-channel values.
    v = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    u = np.clip(v + rng.normal(0, 30, v.shape), 0, 255).astype(np.uint8)
    per = [
        _ssim_reference(v[t, ..., c].astype(float), u[t, ..., c].astype(float))
        for t in range(2)
        for c in range(3)
    ]
    assert ssim(v, u) == pytest.approx(np.mean(per), abs=1e-9)
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[:8, :8], a[:8, :8])


# --- Fréchet distance ---------------------------------------------------------------------


def test_frechet_distance_identical_sets_and_closed_forms():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(200, 6))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)
    # Diagonal Gaussians: d^2 = |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    va, vb = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    got = frechet_distance_from_stats(mu_a, np.diag(va), mu_b, np.diag(vb))
    assert got == pytest.approx(expected)
    # Invariant to a common rotation of both feature spaces (non-diagonal covariances).
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotated = frechet_distance_from_stats(
        q @ mu_a, q @ np.diag(va) @ q.T, q @ mu_b, q @ np.diag(vb) @ q.T
    )
    assert rotated == pytest.approx(expected)
    # Shifted samples: distance grows with the shift.
    assert frechet_distance(f, f + 1.0) == pytest.approx(6.0, rel=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(f[:1], f)


# --- statistics -----------------------------------------------------------------------------


def test_bootstrap_interval_contains_mean_and_is_seeded():
    rng = np.random.default_rng(3)
    v = rng.uniform(0, 1, 40)
    lo, hi = bootstrap_ci(v, seed=7)
    assert lo < v.mean() < hi
    assert (lo, hi) == bootstrap_ci(v, seed=7)
    assert (lo, hi) != bootstrap_ci(v, seed=8)
    lo99, hi99 = bootstrap_ci(v, seed=7, confidence=0.99)
    assert lo99 <= lo and hi99 >= hi
    assert bootstrap_ci([0.5]) == (0.5, 0.5)
    assert bootstrap_ci(rng.permutation(v), seed=7) == (lo, hi)  # a set's interval, not a list's
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci([0.1, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])


def test_summarize_excludes_nan_and_reports_n():
    r = summarize([0.2, float("nan"), 0.4, 0.6], name="st_iou", mask_source="motion")
    assert (r.n, r.n_excluded, r.mask_source) == (3, 1, "motion")
    assert r.value == pytest.approx(0.4)
    assert r.ci[0] < 0.4 < r.ci[1] and r.confidence == 0.95
    assert "st_iou[motion]" in str(r) and "n=3" in str(r)
    assert json.loads(json.dumps(r.to_dict()))["value"] == pytest.approx(0.4)
    inf = summarize([math.inf, 30.0], name="psnr")
    assert inf.value == math.inf and inf.ci is None and inf.to_dict()["value"] is None
    assert summarize([float("nan")], name="x").n == 0
    one = summarize([0.3], name="x")
    assert (one.value, one.n, one.ci, one.confidence) == (0.3, 1, None, None)


def test_wilson_interval_of_success_rates():
    # closed form at z = 1.959964: 10/10 -> [0.7225, 1], 0/10 -> [0, 0.2775], 5/10 symmetric
    assert wilson_interval(10, 10) == pytest.approx((0.72246, 1.0), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27754), abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0  # exactly
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-4)
    lo99, hi99 = wilson_interval(5, 10, confidence=0.99)
    assert lo99 < 0.23659 and hi99 > 0.76341
    r = summarize_rate([True, True, False, True], name="success_rate")
    assert (r.value, r.n, r.ci_method) == (0.75, 4, "wilson")
    assert r.ci == pytest.approx(wilson_interval(3, 4))
    with pytest.raises(ValueError, match="successes=11, n=10"):
        wilson_interval(11, 10)


def test_mmrv_and_pearson_reproduce_simplerenv_pick_coke_can():
    real = [0.907, 0.853, 0.920, 0.760, 0.133, 0.293]
    sim = [0.787, 0.857, 0.710, 0.567, 0.027, 0.170]
    assert round(mean_maximum_rank_violation(real=real, sim=sim), 3) == 0.031
    assert round(pearson(real, sim), 3) == 0.975
    assert mean_maximum_rank_violation(real=real, sim=real) == 0.0
    # A full reversal of two policies costs their real gap, for both of them.
    assert mean_maximum_rank_violation(real=[0.1, 0.9], sim=[0.9, 0.1]) == pytest.approx(0.8)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([0.5, 0.5], [0.2, 0.2]) == 1.0  # SimplerEnv: identical centred sequences
    assert pearson([0.5, 0.5], [0.2, 0.4]) == 0.0
    with pytest.raises(ValueError, match="equally long"):
        mean_maximum_rank_violation(real=[0.1], sim=[0.1, 0.2])


# --- per-skill tables -----------------------------------------------------------------------


RECORDS = [
    {"skill": "pick", "st_iou": 0.6, "psnr": 20.0},
    {"skill": "open drawer", "st_iou": 0.3, "psnr": 22.0},
    {"skill": "pick", "st_iou": 0.8, "psnr": 24.0},
    {"skill": "pick", "st_iou": float("nan"), "psnr": 26.0},
]


def test_group_by_skill():
    assert group_by_skill(RECORDS, "psnr") == {"open drawer": [22.0], "pick": [20.0, 24.0, 26.0]}
    with pytest.raises(KeyError, match="record 0 has no 'ssim'"):
        group_by_skill(RECORDS, "ssim")


def test_per_skill_summary_and_markdown():
    s = per_skill_summary(RECORDS, ["st_iou", "psnr"], mask_sources={"st_iou": "sim"}, seed=0)
    assert list(s) == ["open drawer", "pick", "all"]
    assert s["pick"]["st_iou"].value == pytest.approx(0.7)
    assert (s["pick"]["st_iou"].n, s["pick"]["st_iou"].n_excluded) == (2, 1)
    assert s["pick"]["psnr"].n == 3 and s["pick"]["psnr"].mask_source is None
    assert s["all"]["psnr"].value == pytest.approx(23.0)
    assert s["all"]["st_iou"].mask_source == "sim"
    md = skill_table_markdown(s)
    lines = md.splitlines()
    assert lines[0] == "| skill | n | st_iou [sim] (95% CI) | psnr (95% CI) |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[3].startswith("| pick | 3 | 0.700 [0.600, 0.800] (n=2) | 23.333 [")
    assert len(lines) == 2 + 3
    with pytest.raises(KeyError, match="not in metrics"):
        per_skill_summary(RECORDS, ["psnr"], mask_sources={"st_iou": "sim"})


def test_markdown_table_checks_row_width():
    assert markdown_table(["a", "b"], [[1, 0.5]]) == "| a | b |\n|---|---|\n| 1 | 0.500 |"
    with pytest.raises(ValueError, match="has 1 cells"):
        markdown_table(["a", "b"], [[1]])


def test_metric_result_is_frozen():
    r = MetricResult("psnr", 20.0, 3)
    with pytest.raises(AttributeError):
        r.value = 1.0  # type: ignore[misc]


def test_bootstrap_interval_has_the_asked_level():
    # 50 zeros and 50 ones: resampled means ~ Binomial(100, 0.5) / 100, whose 2.5% and 97.5%
    # quantiles are 0.40 and 0.60 (a 90% interval would be 0.42 .. 0.58).
    v = np.array([0.0] * 50 + [1.0] * 50)
    assert bootstrap_ci(v, confidence=0.95) == pytest.approx((0.40, 0.60), abs=0.005)
    assert bootstrap_ci(v, confidence=0.90) == pytest.approx((0.42, 0.58), abs=0.005)
