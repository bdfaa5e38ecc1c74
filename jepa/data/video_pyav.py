"""PyAV reader that decodes only the frames a clip needs.

Why it is fast: after seeking to the keyframe before a run of wanted frames, every packet
that is not a wanted frame is sent with `skip_frame = NONREF`, so the decoder drops frames
no other frame refers to (typically half of an H.264 stream) without decoding them; only
wanted frames are converted to RGB; reading stops once the last wanted packet is in.
Decoding is single-threaded (one DataLoader worker per core is the parallelism), which also
keeps the per-packet `skip_frame` switch synchronous.

Not every decoder honours that switch per packet: libdav1d (AV1) takes the mode of the first
packet it decodes for good, then drops frames that are wanted, which surfaced as "stream
ended" errors and, worse, as neighbouring frames standing in for the dropped ones (the
variable-frame-rate fill). Decoders listed in `_NO_SKIP_DECODERS` therefore decode every
frame; tests/test_data_video.py checks every codec it writes against a sequential decode.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from fractions import Fraction

import av
import av.filter
import numpy as np
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream

from jepa.data.video import VideoDecodeError, frame_count, scaled_size

# Frames lost at the end of a stream before a shortfall counts as truncation: container
# durations (webm) can promise a frame or two more than the stream holds.
_END_SLACK = 2
# Frames read past the last wanted index before a wanted index with no frame of its own
# (variable frame rate) is given up on and filled from its neighbours.
_OVERRUN = 20
_SEEK_RETRIES = 4
# Decoders that do not honour a per-packet skip_frame switch (measured: libdav1d on SVT-AV1
# output lost every odd frame after a skipped packet).
_NO_SKIP_DECODERS = frozenset({"libdav1d"})
_ATTACHED_PIC = 0x0400  # AV_DISPOSITION_ATTACHED_PIC: a cover image stored as a video stream
_STILL_CODECS = frozenset({"png", "bmp", "tiff", "webp", "gif"})  # cover art, never camera video
# frame.to_ndarray(format=...) builds a new swscale context per call, which costs several
# times the conversion itself; one cached reformatter and one cached scaling graph per size
# per thread and process are reused across videos. Both run on one thread: a context whose
# helper threads were started before a DataLoader fork deadlocks in the child, and workers are
# the parallelism anyway.
_local = threading.local()
_MAX_GRAPHS = 8  # scaling graphs kept per thread (one per input geometry and output size)


def _thread_cache() -> threading.local:
    if getattr(_local, "pid", None) != os.getpid():
        _local.reformatter = VideoReformatter()
        _local.graphs = {}
        _local.pid = os.getpid()
    return _local


def _scale_graph(frame: av.VideoFrame, width: int, height: int) -> av.filter.Graph:
    """The filter chain decord builds for a reduced-size read (`scale=W:H,format=rgb24`, the
    scale filter's default bicubic flags), so both backends return the same pixels: a direct
    swscale call with other flags (AREA) differed from decord's by up to 54 levels."""
    cache = _thread_cache().graphs
    key = (frame.width, frame.height, frame.format.name, width, height)
    graph = cache.get(key)
    if graph is None:
        if len(cache) >= _MAX_GRAPHS:
            cache.pop(next(iter(cache)))
        graph = av.filter.Graph()
        graph.threads = 1
        source = graph.add_buffer(
            width=frame.width, height=frame.height, format=frame.format.name, time_base=Fraction(1, 1)
        )
        chain = [source, graph.add("scale", f"{width}:{height}"), graph.add("format", "rgb24"), graph.add("buffersink")]
        for upstream, downstream in zip(chain, chain[1:]):
            upstream.link_to(downstream)
        graph.configure()
        cache[key] = graph
    return graph


def _main_video_stream(streams: tuple[VideoStream, ...]) -> VideoStream:
    """The video, not a cover image or thumbnail stream that may come first (MOV / MKV files
    from downloaders and cameras): attached pictures and still-image codecs last, then the most
    frames (from the count or the duration), then the most pixels."""

    def key(stream: VideoStream) -> tuple[bool, bool, float, int]:
        attached = bool(int(stream.disposition) & _ATTACHED_PIC)
        frames = float(stream.frames or 0)
        if not frames and stream.duration and stream.time_base and stream.average_rate:
            frames = float(stream.duration * stream.time_base * stream.average_rate)
        still = stream.codec_context.name in _STILL_CODECS
        return (not attached, not still, frames, stream.codec_context.width * stream.codec_context.height)

    return max(streams, key=key) if len(streams) > 1 else streams[0]


class PyAVReader:
    """Frame access to one video file through PyAV (FFmpeg)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._container = av.open(path, metadata_errors="ignore")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
            raise VideoDecodeError(f"{path}: cannot open ({err})") from err
        try:
            self._init_stream()
        except BaseException:
            self._container.close()
            raise
        self._fresh = True
        # Counter-clockwise degrees the display matrix turns frames by (phone videos), learnt
        # from the decoded frames; output is turned to match what a player shows (and decord).
        self._rotation = 0
        self._gap: int | None = None

    def _init_stream(self) -> None:
        if not self._container.streams.video:
            raise VideoDecodeError(f"{self.path}: no video stream")
        stream = _main_video_stream(self._container.streams.video)
        codec = stream.codec_context
        codec.thread_count = 1
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or float(rate) <= 0:
            raise VideoDecodeError(f"{self.path}: no frame rate in the stream")
        self.fps = float(rate)
        self.height, self.width = int(codec.height), int(codec.width)
        if self.height <= 0 or self.width <= 0:
            raise VideoDecodeError(f"{self.path}: no frame size in the stream")
        time_base = float(stream.time_base) if stream.time_base else 0.0
        if time_base <= 0:
            raise VideoDecodeError(f"{self.path}: no time base in the stream")
        num_frames = int(stream.frames or 0)
        if num_frames <= 0 and stream.duration:
            num_frames = frame_count(stream.duration * time_base, self.fps)
        if num_frames <= 0 and self._container.duration:
            num_frames = frame_count(self._container.duration / av.time_base, self.fps)
        if num_frames <= 0:
            raise VideoDecodeError(f"{self.path}: the stream reports no frames")
        self.num_frames = num_frames
        self._stream = stream
        self._codec = codec
        self._skip_nonref = codec.name not in _NO_SKIP_DECODERS
        self._start_pts = stream.start_time or 0
        self._pts_per_frame = 1.0 / (time_base * self.fps)

    def _index(self, pts: int | None) -> int | None:
        return None if pts is None else int(round((pts - self._start_pts) / self._pts_per_frame))

    def close(self) -> None:
        self._container.close()

    def get_frames(self, indices: np.ndarray, target_short_side: int | None = None) -> np.ndarray:
        """RGB uint8 (len(indices), H, W, 3) for sorted unique indices in [0, num_frames)."""
        indices = np.asarray(indices, dtype=np.int64)
        out_h, out_w = scaled_size(self.height, self.width, target_short_side)
        out = np.empty((len(indices), out_h, out_w, 3), dtype=np.uint8)
        resize = {} if (out_h, out_w) == (self.height, self.width) else {"width": out_w, "height": out_h}
        try:
            for run in self._runs(indices):
                self._read_run(run, out, resize)
        except (av.FFmpegError, OSError, EOFError) as err:
            raise VideoDecodeError(f"{self.path}: decoding failed ({err})") from err
        turns = round(self._rotation / 90) % 4
        return np.ascontiguousarray(np.rot90(out, turns, axes=(1, 2))) if turns else out

    def _runs(self, indices: np.ndarray) -> list[list[tuple[int, int]]]:
        """Split (slot, frame index) pairs where decoding through the gap would cost more than a seek."""
        gap = self._seek_gap()
        runs: list[list[tuple[int, int]]] = []
        for slot, index in enumerate(indices.tolist()):
            if not runs or index - runs[-1][-1][1] > gap:
                runs.append([])
            runs[-1].append((slot, index))
        return runs

    def _seek_gap(self) -> int:
        """About one keyframe interval, read from the index when the container has a full one."""
        if self._gap is None:
            self._gap = self._estimate_gap()
        return self._gap

    def _estimate_gap(self) -> int:
        entries = self._stream.index_entries
        if len(entries) >= 0.9 * self.num_frames:
            head = [entries[i].is_keyframe for i in range(min(len(entries), 2000))]
            return max(16, len(head) // max(1, sum(head)))
        return max(16, int(3 * self.fps))

    def _packets_from(self, index: int) -> Iterator[av.Packet]:
        """Demux from the last keyframe at or before frame `index`."""
        if self._fresh and index < self._seek_gap():
            self._fresh = False
            return self._container.demux(self._stream)
        self._fresh = False
        target = self._start_pts + index * self._pts_per_frame
        step = max(self._pts_per_frame * self.fps, 1.0)
        for _ in range(_SEEK_RETRIES):
            self._container.seek(int(target), stream=self._stream, backward=True, any_frame=False)
            self._codec.flush_buffers()
            packets = self._container.demux(self._stream)
            first = next(packets, None)
            if first is None:
                break
            first_index = self._index(first.pts)
            # Index timestamps can be decode times: a seek may land on the keyframe just after
            # the wanted frame, so step back until the first packet is at or before it.
            if first_index is None or first_index <= index:
                return itertools.chain([first], packets)
            target -= step
            step *= 2
        self._container.seek(self._start_pts, stream=self._stream, backward=True, any_frame=False)
        self._codec.flush_buffers()
        return self._container.demux(self._stream)

    def _read_run(self, run: list[tuple[int, int]], out: np.ndarray, resize: dict) -> None:
        wanted = {index: slot for slot, index in run}
        last_wanted = run[-1][1]
        pending_packets = set(wanted)
        got: dict[int, np.ndarray] = {}
        previous: tuple[int, av.VideoFrame] | None = None
        missing = sorted(wanted)
        codec = self._codec

        def take(frames: list[av.VideoFrame]) -> None:
            nonlocal previous
            for frame in frames:
                index = self._index(frame.pts)
                if index is None:
                    raise VideoDecodeError(f"{self.path}: decoded frame without timestamp")
                # Output is in presentation order: wanted indices passed without a frame of
                # their own (variable frame rate) take the nearest decoded frame.
                while missing and missing[0] < index:
                    gone = missing.pop(0)
                    near = previous if previous is not None and gone - previous[0] <= index - gone else None
                    got[gone] = self._to_array(near[1] if near else frame, resize)
                if index in wanted and index not in got:
                    got[index] = self._to_array(frame, resize)
                previous = (index, frame)

        for packet in self._packets_from(run[0][1]):
            if packet.size == 0:
                break
            index = self._index(packet.pts)
            needed = index is None or index in pending_packets
            codec.skip_frame = "DEFAULT" if needed or not self._skip_nonref else "NONREF"
            take(codec.decode(packet))
            missing[:] = [i for i in missing if i not in got]
            pending_packets.discard(index)
            if not missing or not pending_packets or (index is not None and index > last_wanted + _OVERRUN):
                break
        codec.skip_frame = "DEFAULT"
        take(codec.decode(None))
        codec.flush_buffers()
        missing[:] = [i for i in missing if i not in got]
        if missing:
            last = previous[0] if previous is not None else -1
            if previous is None or last < self.num_frames - 1 - _END_SLACK:
                raise VideoDecodeError(
                    f"{self.path}: stream ended at frame {last}, frame {missing[0]} was requested "
                    f"(the container claims {self.num_frames}; truncated file?)"
                )
            tail = self._to_array(previous[1], resize)
            for index in missing:
                got[index] = tail
        for index, slot in wanted.items():
            out[slot] = got[index]

    def _to_array(self, frame: av.VideoFrame, resize: dict) -> np.ndarray:
        self._rotation = getattr(frame, "rotation", 0) or 0  # PyAV < 13 does not read it
        if not resize:  # at full size swscale's conversion equals decord's (checked bit-exact)
            return _thread_cache().reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
        graph = _scale_graph(frame, resize["width"], resize["height"])
        graph.push(frame)
        return graph.pull().to_ndarray()
