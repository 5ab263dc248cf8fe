"""Writing (T, H, W, 3) uint8 RGB frames to an mp4 file with PyAV (H.264, yuv420p)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class VideoWriter:
    """Incremental mp4 writer: ``with VideoWriter(path, fps) as w: w.write(frames)``.

    The size is fixed by the first frame; H.264 with yuv420p needs even width and height.
    """

    def __init__(self, path: str | Path, fps: float, codec: str = "libx264") -> None:
        if not 0 < fps < math.inf:
            raise ValueError(f"fps = {fps} must be a finite number > 0")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.codec = codec
        self._container = av.open(str(self.path), mode="w")
        self._stream: av.video.stream.VideoStream | None = None
        self.frames_written = 0

    def write(self, frames: np.ndarray) -> None:
        """Append frames (T, H, W, 3) or one frame (H, W, 3), uint8 RGB."""
        arr = np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (T, H, W, 3); got {arr.dtype} {arr.shape}")
        if self._stream is None:
            h, w = arr.shape[1:3]
            if h % 2 or w % 2:
                raise ValueError(
                    f"H.264 needs an even frame size; got {w}x{h}: pick even width/height"
                )
            # A fraction, not round(fps): 2.5 Hz would play at 2, and 0.375 (one frame per
            # 8-frame step at 3 Hz) at PyAV's 24 fps default for a rate of 0.
            rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._container.add_stream(self.codec, rate=rate)
            self._stream.width, self._stream.height = w, h
            self._stream.pix_fmt = "yuv420p"
        elif arr.shape[1:3] != (self._stream.height, self._stream.width):
            raise ValueError(
                f"frame size {arr.shape[2]}x{arr.shape[1]} differs from the first frame's "
                f"{self._stream.width}x{self._stream.height}"
            )
        for img in arr:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and close the file."""
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(path: str | Path, frames: Iterable[np.ndarray] | np.ndarray, fps: float) -> int:
    """Write frames (T, H, W, 3) uint8 RGB (or an iterable of chunks) to ``path``; returns the frame count."""
    with VideoWriter(path, fps) as writer:
        if isinstance(frames, np.ndarray):
            writer.write(frames)
        else:
            for chunk in frames:
                writer.write(chunk)
        written = writer.frames_written
    if written == 0:
        # An mp4 without a video stream would only fail later, when read: say so now.
        Path(path).unlink(missing_ok=True)
        raise ValueError(f"no frames to write to {str(path)!r}")
    return written


def read_video(path: str | Path) -> np.ndarray:
    """Decode a video file to (T, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
