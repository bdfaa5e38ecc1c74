"""decord reader: `get_batch` of exactly the wanted indices, decoded at the target size.

decord resizes inside its FFmpeg filter graph when given width/height at open time, so a
reduced-resolution read reopens the file once with the smaller size.
"""

from __future__ import annotations

import decord
import numpy as np
from decord.base import DECORDError

from jepa.data.video import VideoDecodeError, scaled_size

_ERRORS = (DECORDError, RuntimeError, AssertionError, IndexError, OSError, ValueError)


class DecordReader:
    """Frame access to one video file through decord."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
            self.num_frames = len(self._reader)
            self.fps = float(self._reader.get_avg_fps())
            # decord exposes no frame size; the first frame gives it.
            self.height, self.width = self._reader.next().shape[:2]
        except _ERRORS as err:
            raise VideoDecodeError(f"{path}: cannot open ({err})") from err
        self._size = (self.height, self.width)

    def close(self) -> None:
        self._reader = None

    def get_frames(self, indices: np.ndarray, target_short_side: int | None = None) -> np.ndarray:
        """RGB uint8 (len(indices), H, W, 3) for sorted unique indices in [0, num_frames)."""
        size = scaled_size(self.height, self.width, target_short_side)
        try:
            if size != self._size:
                self._reader = decord.VideoReader(
                    self.path, ctx=decord.cpu(0), width=size[1], height=size[0], num_threads=1
                )
                self._size = size
            return self._reader.get_batch(np.asarray(indices).tolist()).asnumpy()
        except _ERRORS as err:
            raise VideoDecodeError(f"{self.path}: decoding failed ({err})") from err
