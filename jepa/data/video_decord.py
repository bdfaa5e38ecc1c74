"""decord reader: `get_batch` of exactly the wanted indices, decoded at the target size.

decord resizes inside its FFmpeg filter graph when given width/height at open time, so a
reduced-resolution read reopens the file once with the smaller size.

decord (decord2 3.x) cannot return frames of some widths, whatever the height, codec or
container: 16, 24, 32, 48, 96 and 144 px among 16..160 fail with "DECORDArrayCopyFromTo: The
size must exactly match". That hits small videos and, through the reduced-size read, portrait
ones (a 240x426 video decoded to short side 96 is 96 px wide). Those are good files, so a read
decord fails is retried with PyAV (a dependency) for that file instead of being skipped as
unreadable; a file neither can read is still reported as a `VideoDecodeError`.
"""

from __future__ import annotations

import logging

import decord
import numpy as np
from decord.base import DECORDError

from jepa.data.video import VideoDecodeError, VideoReader, scaled_size

_ERRORS = (DECORDError, RuntimeError, AssertionError, IndexError, OSError, ValueError)
log = logging.getLogger(__name__)
_WARNED: set[str] = set()


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
        self._fallback: VideoReader | None = None
        if self.num_frames <= 2:
            self._check_for_a_cover_image()

    def _check_for_a_cover_image(self) -> None:
        """decord reads the first video stream, which in some MOV files is a one-frame cover
        image ahead of the video; PyAV picks the video, so a (nearly) still result is checked."""
        from jepa.data.video_pyav import PyAVReader

        try:
            other = PyAVReader(self.path)
        except VideoDecodeError:
            return
        if other.num_frames <= self.num_frames:
            other.close()
            return
        if self.path not in _WARNED:
            _WARNED.add(self.path)
            log.warning(
                "decord sees %d frame(s) in %s, a cover image: reading its video with PyAV", self.num_frames, self.path
            )
        self._fallback = other
        self.num_frames, self.fps, self.height, self.width = other.num_frames, other.fps, other.height, other.width

    def close(self) -> None:
        self._reader = None
        if self._fallback is not None:
            self._fallback.close()
            self._fallback = None

    def get_frames(self, indices: np.ndarray, target_short_side: int | None = None) -> np.ndarray:
        """RGB uint8 (len(indices), H, W, 3) for sorted unique indices in [0, num_frames)."""
        if self._fallback is not None:
            return self._fallback.get_frames(indices, target_short_side)
        size = scaled_size(self.height, self.width, target_short_side)
        try:
            if size != self._size:
                self._reader = decord.VideoReader(
                    self.path, ctx=decord.cpu(0), width=size[1], height=size[0], num_threads=1
                )
                self._size = size
            return self._reader.get_batch(np.asarray(indices).tolist()).asnumpy()
        except _ERRORS as err:
            self._fallback = self._pyav_fallback(size, err)
        return self._fallback.get_frames(indices, target_short_side)

    def _pyav_fallback(self, size: tuple[int, int], err: BaseException) -> VideoReader:
        from jepa.data.video_pyav import PyAVReader

        try:
            reader = PyAVReader(self.path)
        except VideoDecodeError as pyav_err:
            raise VideoDecodeError(f"{self.path}: decoding failed (decord: {err}; PyAV: {pyav_err})") from err
        if self.path not in _WARNED:  # once per file and process: a reader is opened per clip
            _WARNED.add(self.path)
            detail = str(err).strip().splitlines()[-1][-120:]
            log.warning(
                "decord could not decode %s at %dx%d (%s): reading it with PyAV", self.path, size[1], size[0], detail
            )
        return reader
