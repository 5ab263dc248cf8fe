"""mp4 I/O: frames round-trip in RGB order; fractional frame rates are kept, not rounded."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from vap_env.video import read_video, write_video


def test_round_trip_keeps_count_colour_order_and_fractional_rate(tmp_path):
    frames = np.zeros((5, 16, 24, 3), np.uint8)
    frames[..., 0] = 220  # red
    path = tmp_path / "v.mp4"
    # One frame per 8-frame step at 3 Hz: round() made it 0, which PyAV turns into 24 fps.
    assert write_video(path, frames, fps=3 / 8) == 5
    back = read_video(path)
    assert back.shape == frames.shape
    assert abs(int(back[..., 0].mean()) - 220) <= 2 and back[..., 2].mean() < 5  # RGB, not BGR
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == Fraction(3, 8)
    with pytest.raises(ValueError, match="fps = nan must be a finite number"):
        write_video(tmp_path / "x.mp4", frames, fps=float("nan"))
    with pytest.raises(ValueError, match="even frame size"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), np.uint8), fps=3)
    with pytest.raises(ValueError, match="no frames to write"):
        write_video(tmp_path / "empty.mp4", [], fps=3)
    assert not (tmp_path / "empty.mp4").exists()
