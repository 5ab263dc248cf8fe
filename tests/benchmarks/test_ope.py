"""`vap-env bench ope`: policies in the world-model env and the ground-truth simulator, agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.metrics import mean_maximum_rank_violation, pearson
from benchmarks.ope import Config, main, parse_policy, run
from vap_env.cli import main as cli_main
from vap_env.video import read_video


def _reject(token: str) -> None:
    raise ValueError(f"non-standard JSON token {token}")


def test_ope_end_to_end(tmp_path, capsys, monkeypatch):
    from collections import Counter

    from benchmarks import ope

    built = []
    make = ope.make_ope_policy

    def recording(text, start, ctx, seed):
        built.append((text, seed))
        return make(text, start, ctx, seed)

    monkeypatch.setattr(ope, "make_ope_policy", recording)
    out = tmp_path / "ope"
    cfg = Config(
        scenes=2,
        policies=("scripted:0", "random"),
        skills=("pick", "open_drawer"),
        chunks=1,
        num_inference_steps=1,
        videos=1,
        out_dir=str(out),
        threads=1,
        progress=False,
    )
    assert main(cfg) == 0
    # strict: Pearson of constant successes is NaN, written as null (JSON.parse rejects NaN)
    report = json.loads((out / "ope.json").read_text(), parse_constant=_reject)
    rows = report["episodes"]
    assert [(r["scene"], r["skill"], r["policy"]) for r in rows] == [
        (0, "pick", "scripted:0"),
        (0, "pick", "random"),
        (1, "open_drawer", "scripted:0"),
        (1, "open_drawer", "random"),
    ]
    # In the simulator the noise-free skill succeeds and uniform random actions do not.
    truth = {p: [r["gt_state_success"] for r in rows if r["policy"] == p] for p in cfg.policies}
    assert truth == {"scripted:0": [True, True], "random": [False, False]}
    policies = {p["policy"]: p for p in report["policies"]}
    per_skill = policies["random"]["per_skill"]
    assert sorted(per_skill) == ["open_drawer", "pick"] and per_skill["pick"]["n"] == 1
    assert per_skill["pick"]["gt_state_success_rate"]["value"] == 0.0
    assert policies["scripted:0"]["gt_state_success_rate"]["value"] == 1.0
    assert policies["random"]["gt_state_success_rate"]["value"] == 0.0
    gt = [policies[p]["gt_success_rate"]["value"] for p in cfg.policies]
    wm = [policies[p]["wm_success_rate"]["value"] for p in cfg.policies]
    agreement = report["agreement"]
    if gt[0] == gt[1]:  # no ranking to agree with: null, not SimplerEnv's 1 / 0
        assert agreement["pearson"] is None and agreement["mmrv"] is None
        assert any("no ranking to agree with" in n for n in report["notes"])
    else:
        assert agreement["pearson"] == pytest.approx(pearson(gt, wm))
        assert agreement["mmrv"] == pytest.approx(mean_maximum_rank_violation(real=gt, sim=wm))
    assert any("two policies" in n for n in report["notes"])
    # Wilson intervals: 2 of 2 successes is not [1, 1]
    rate = policies["scripted:0"]["gt_state_success_rate"]
    assert rate["ci_method"] == "wilson" and rate["ci"][0] < 0.5 and rate["ci"][1] == 1.0
    state = [1.0, 0.0]  # the simulator's outcomes of scripted:0 and random
    assert agreement["pearson_vs_state"] == pytest.approx(pearson(state, wm), nan_ok=True)
    assert agreement["mmrv_vs_state"] == pytest.approx(
        mean_maximum_rank_violation(real=state, sim=wm)
    )
    episode_agreement = sum(r["gt_success"] == r["wm_success"] for r in rows) / len(rows)
    assert agreement["episode_agreement"] == pytest.approx(episode_agreement)
    accuracy = sum(r["gt_success"] == r["gt_state_success"] for r in rows) / len(rows)
    assert agreement["detector_accuracy_on_ground_truth"] == pytest.approx(accuracy)
    # each (policy, seed) is built twice, for the world model and the simulator: same noise
    assert set(Counter(built).values()) == {2} and len(built) == 2 * 2 * 2
    # one grid per scene asked for: rows = policies, columns = ground truth | model | skeleton
    (video_path,) = report["videos"]
    video = read_video(video_path)
    h, w = report["resolution_hw"]
    scale = -(-256 // (2 * h))
    assert video.shape == (9, 2 * h * scale, 3 * w * scale, 3)
    printed = capsys.readouterr().out
    assert "Pearson r" in printed and "MMRV" in printed and "scripted:0" in printed
    assert "95% wilson intervals" in printed and "Notes:" in printed
    assert (out / "ope.md").read_text().startswith("# Offline policy evaluation")


def test_policy_specs_and_config_errors(capsys):
    assert parse_policy("scripted:0.02") == ("scripted", "0.02")
    assert parse_policy("random") == ("random", None)
    with pytest.raises(ValueError, match="Did you mean 'scripted'"):
        parse_policy("scriptd:0.1")
    with pytest.raises(ValueError, match="must be a number"):
        parse_policy("scripted:lots")
    with pytest.raises(ValueError, match=r"'scripted:-0.1': the action-noise std must be .* >= 0"):
        parse_policy("scripted:-0.1")
    with pytest.raises(ValueError, match="at least two policies"):
        Config(policies=("random",))
    with pytest.raises(ValueError, match=r"lists \['random'\] more than once"):
        Config(policies=("random", "scripted:0", "random"))
    with pytest.raises(ValueError, match="unknown"):
        Config(skills=("juggle",))
    with pytest.raises(SystemExit):  # the CLI reports a rejected option as a usage error
        cli_main(["bench", "ope", "--policies", "random,scripted:x"])
    assert "scripted:x" in capsys.readouterr().err


def test_a_saved_sb3_model_is_ranked_like_any_policy(tmp_path):
    import gymnasium as gym
    from stable_baselines3 import PPO

    import vap_env  # noqa: F401  (registers the env ids)

    env = gym.make("VAP-RT1-v0", num_inference_steps=1)
    PPO("MultiInputPolicy", env, n_steps=8, batch_size=8, seed=0, device="cpu").save(
        tmp_path / "ppo"
    )
    env.close()
    path = str(tmp_path / "ppo.zip")
    assert parse_policy(f"sb3:{path}") == ("sb3", path)
    assert parse_policy(f"sb3:ppo={path}") == ("sb3", f"ppo={path}")
    with pytest.raises(ValueError, match=r"no saved SB3 model at '.*nope\.zip'"):
        parse_policy(f"sb3:{tmp_path / 'nope.zip'}")
    # SB3's own path rules: ".zip" may be left out, and a path may hold "=" itself
    odd = tmp_path / "lr=3e-4"
    odd.mkdir()
    (odd / "ppo.zip").write_bytes((tmp_path / "ppo.zip").read_bytes())
    assert parse_policy(f"sb3:{odd / 'ppo'}") == ("sb3", str(odd / "ppo"))
    from benchmarks.ope import _sb3_spec

    assert _sb3_spec(str(odd / "ppo")) == ("ppo", str(odd / "ppo.zip"))
    assert _sb3_spec(f"sac={path}") == ("sac", path)
    report = run(_small(("scripted:0", f"sb3:{path}")))
    rows = {r["policy"]: r for r in report["episodes"]}
    # The untrained model acts in both worlds (it reads image, skeleton and proprio in each).
    assert rows[f"sb3:{path}"]["gt_state_success"] is False
    assert rows["scripted:0"]["gt_state_success"] is True


def _small(policies: tuple[str, ...]) -> Config:
    return Config(
        scenes=1,
        policies=policies,
        skills=("pick",),
        chunks=1,
        num_inference_steps=1,
        videos=0,
        threads=1,
        progress=False,
    )


def test_a_policys_numbers_do_not_depend_on_its_place_in_the_list():
    def by_policy(report):
        return {r["policy"]: (r["wm_score"], r["gt_score"]) for r in report["episodes"]}

    a = by_policy(run(_small(("scripted:0.02", "random"))))
    b = by_policy(run(_small(("random", "scripted:0.02"))))
    assert a == b


def test_a_policy_that_returns_one_action_gets_the_fix(monkeypatch):
    from benchmarks import ope

    class OneAction:
        def reset(self, instruction, seed=None):
            pass

        def act(self, observation):
            return np.zeros(7, np.float32)  # (D,), not a (K, D) chunk

    monkeypatch.setitem(ope.POLICY_KINDS, "one", lambda arg, start, ctx, seed: OneAction())
    with pytest.raises(
        ValueError, match=r"policy 'one' returned one action .*\(8, 7\).*single_action"
    ):
        run(_small(("random", "one")))


def test_agreement_notes_say_when_the_figures_say_little():
    from benchmarks.ope import agreement_notes

    seen = [{"gt_score": 0.5, "wm_score": 0.4}]
    assert agreement_notes([0.9, 0.5, 0.1], [0.6, 0.4, 0.2], [1, 0.5, 0], 0.9, 30, seen) == []
    flat_wm = agreement_notes([0.9, 0.5, 0.1], [0.2, 0.2, 0.2], [1, 0.5, 0], 0.9, 30, seen)
    assert len(flat_wm) == 1 and "same success rate (0.20): it ranks nothing" in flat_wm[0]
    notes = " | ".join(
        agreement_notes(
            [0.5, 0.5], [0.3, 0.1], [1.0, 0.0], 0.6, 4, [{"gt_score": None, "wm_score": 0.1}]
        )
    )
    for part in (
        "two policies",
        "1/4",
        "detector ground-truth success rates are all 0.50",
        "only 60%",
        "null gt_score",
    ):
        assert part in notes, part
    assert "simulator-state" not in notes  # its rates differ
