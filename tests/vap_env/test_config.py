"""``from_dict``: values are checked against the field types, naming the key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest

from vap_env.config import from_dict
from vap_env.train.config import DataConfig, OptimConfig, TrainConfig


@dataclass(frozen=True)
class Sample:
    steps: int = 1
    rate: float = 0.5
    flag: bool = True
    name: str = "a"
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mode: Literal["fast", "slow"] = "fast"


def test_good_values_are_converted_to_the_field_type():
    s = from_dict(
        Sample,
        {"steps": np.int64(3), "rate": "1e-4", "flag": np.bool_(False), "xyz": [1, 2, 3.5]},
    )
    assert s.steps == 3 and type(s.steps) is int
    assert s.rate == 1e-4  # PyYAML reads `1e-4` as a string
    assert s.flag is False
    assert s.xyz == (1.0, 2.0, 3.5) and all(type(v) is float for v in s.xyz)
    assert from_dict(Sample, {"steps": 4.0}).steps == 4
    assert from_dict(Sample, {"steps": np.float32(4)}).steps == 4
    assert from_dict(Sample, {"flag": 0}).flag is False  # 0/1 read as false/true
    # A path or a torch device where a string is expected: converted, as str() would.
    import pathlib

    import torch

    assert from_dict(Sample, {"name": pathlib.Path("/a/b")}).name == "/a/b"
    assert from_dict(Sample, {"name": torch.device("cuda", 1)}).name == "cuda:1"


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ({"steps": 8.5}, TypeError, r"Sample\.steps: expected an integer, got 8\.5"),
        ({"steps": "8"}, TypeError, r"Sample\.steps: expected an integer, got '8' \(str\)"),
        ({"steps": True}, TypeError, r"Sample\.steps: expected an integer"),
        ({"rate": "fast"}, TypeError, r"Sample\.rate: expected a number, got 'fast'"),
        ({"rate": float("nan")}, ValueError, r"Sample\.rate: is NaN"),
        ({"flag": "no"}, TypeError, r"Sample\.flag: expected true or false, got 'no'"),
        ({"flag": 2}, TypeError, r"Sample\.flag: expected true or false, got 2"),
        ({"name": 3}, TypeError, r"Sample\.name: expected a string, got 3 \(int\)"),
        ({"xyz": [1, 2]}, ValueError, r"Sample\.xyz: expected 3 values, got 2"),
        ({"xyz": [1, 2, "z"]}, TypeError, r"Sample\.xyz\[2\]: expected a number"),
        ({"steps": None}, TypeError, r"Sample\.steps: expected int, got null \(an empty value\?\)"),
        ({"mode": "fats"}, ValueError, r"Sample\.mode: 'fats' is not one of.*Did you mean 'fast'"),
    ],
)
def test_a_wrong_type_names_the_key(data, error, message):
    with pytest.raises(error, match=message):
        from_dict(Sample, data)


def test_train_config_rejects_values_that_would_fail_mid_run():
    with pytest.raises(TypeError, match=r"optim\.learning_rate: expected a number"):
        from_dict(TrainConfig, {"optim": {"learning_rate": "fast"}})
    with pytest.raises(ValueError, match="learning_rate=inf must be a finite number"):
        OptimConfig(learning_rate=float("inf"))
    with pytest.raises(ValueError, match=r"beta1=1\.5 must be in \[0, 1\)"):
        OptimConfig(beta1=1.5)
    with pytest.raises(ValueError, match="weight_decay=-1"):
        OptimConfig(weight_decay=-1.0)
    with pytest.raises(ValueError, match="num_workers=-2"):
        DataConfig(num_workers=-2)
    with pytest.raises(ValueError, match=r"intrinsics = \(130\.0, 130\.0, 160\.0\)"):
        from_dict(TrainConfig, {"data": {"intrinsics": [130, 130, 160]}})
    k = from_dict(TrainConfig, {"data": {"intrinsics": [130, 131, 160, 90]}}).data.intrinsics
    assert k == (130.0, 131.0, 160.0, 90.0)
    with pytest.raises(TypeError, match=r"data\.split: expected a string"):
        from_dict(TrainConfig, {"data": {"split": 3}})
    with pytest.raises(ValueError, match=r"log_with='tensorbord'.*Did you mean 'tensorboard'"):
        TrainConfig(log_with="tensorbord")


def test_missing_required_settings_are_named_with_their_help():
    import dataclasses as dc

    @dc.dataclass(frozen=True)
    class Needs:
        chunk_size: int = dc.field(metadata={"help": "K, the env's chunk_frames"})
        out: str = dc.field()
        seed: int = 0

    with pytest.raises(
        TypeError,
        match=r"Needs: missing required setting\(s\): chunk_size \(K, the env's chunk_frames\); out$",
    ):
        from_dict(Needs, {"seed": 1})
