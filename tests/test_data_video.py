"""Decoding real mp4/webm files both backends, clip index sampling, and decode failures."""

import ffmpeg_cpu
import numpy as np
import pytest

from jepa.data.synthetic import write_video
from jepa.data.video import (
    ClipSampler,
    ShortVideoError,
    VideoDecodeError,
    available_backends,
    open_video,
    read_clips,
    resolve_backend,
)

BACKENDS = available_backends()


def indexed_frames(num_frames: int, height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    """Textured moving frames whose top rows encode the frame index as a grey level (8 + index * 4).

    The offset keeps the levels off black, where the limited-range YUV round trip is coarsest."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height, 2 * width, 3), dtype=np.uint8)
    frames = np.stack([np.roll(texture, 3 * t, axis=1)[:, :width] for t in range(num_frames)])
    frames[:, :16] = (8 + np.arange(num_frames) * 4).astype(np.uint8)[:, None, None, None]
    return frames


def decoded_index(frames: np.ndarray) -> np.ndarray:
    """The frame index read back from the grey stripe.

    The limited-range YUV round trip and downscaling darken flat grey by one to two levels,
    so the read is centred one level below the written value (it tolerates -3 .. +1 levels).
    """
    stripe = frames.shape[-3] * 16 // 64
    grey = frames[..., stripe // 4 : stripe * 3 // 4, 8:-8, :].reshape(*frames.shape[:-3], -1).mean(-1)
    return np.round((grey - 8 + 1) / 4).astype(int)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    frames = indexed_frames(60)
    return {
        "mp4": write_video(root / "v.mp4", frames, 30, keyint=12, crf=12),
        "webm": write_video(root / "v.webm", frames, 30, keyint=12, crf=12),
        "frames": frames,
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_decode_matches_requested_frames(videos, backend, container):
    reader = open_video(videos[container], backend)
    assert (reader.num_frames, reader.fps, reader.height, reader.width) == (60, 30.0, 64, 64)
    reader.close()
    indices = np.array([[0, 7, 15, 22], [40, 41, 59, 59], [30, 12, 3, 50]])
    clips = read_clips(videos[container], indices, backend)
    assert clips.dtype == np.uint8 and clips.shape == (3, 4, 64, 64, 3)
    np.testing.assert_array_equal(decoded_index(clips), indices)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reduced_resolution_read(videos, backend):
    clips = read_clips(videos["mp4"], np.array([[5, 25]]), backend, target_short_side=40)
    assert clips.shape == (1, 2, 40, 40, 3)
    np.testing.assert_array_equal(decoded_index(clips), [[5, 25]])
    assert read_clips(videos["mp4"], np.array([[5]]), backend, target_short_side=128).shape == (1, 1, 64, 64, 3)


def test_pyav_reads_are_exact_across_gops(videos):
    """Frames reached by seeking and frame skipping equal those of a full sequential decode."""
    import av

    with av.open(str(videos["mp4"])) as container:
        full = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    rng = np.random.default_rng(0)
    for _ in range(10):
        indices = np.sort(rng.integers(0, 60, (2, 6)), axis=1)
        np.testing.assert_array_equal(read_clips(videos["mp4"], indices, "pyav"), full[indices])


@pytest.mark.parametrize("backend", BACKENDS)
def test_unreadable_files_raise_decode_error(tmp_path, videos, backend):
    data = videos["mp4"].read_bytes()
    cases = {
        "empty.mp4": b"",
        "garbage.mp4": np.random.default_rng(0).bytes(4096),
        "truncated.mp4": data[: len(data) // 2],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    write_video(tmp_path / "front_index.mp4", videos["frames"], 30, keyint=12, faststart=True)
    whole = (tmp_path / "front_index.mp4").read_bytes()
    (tmp_path / "front_index_cut.mp4").write_bytes(whole[: len(whole) // 2])
    for name in [*cases, "missing.mp4"]:
        with pytest.raises(VideoDecodeError):
            open_video(tmp_path / name, backend).get_frames(np.arange(60))
    # The index survives at the front and the stream is cut: decoding to the end fails.
    with pytest.raises(VideoDecodeError):
        reader = open_video(tmp_path / "front_index_cut.mp4", backend)
        reader.get_frames(np.arange(reader.num_frames))
    if backend == "pyav":
        assert open_video(tmp_path / "front_index_cut.mp4", backend).num_frames == 60, "opens from its index"


def test_backend_choice():
    assert resolve_backend("auto") == BACKENDS[0]
    with pytest.raises(ValueError):
        resolve_backend("opencv")


@pytest.mark.parametrize("fps, video_fps", [(4, 30.0), (8, 25.0), (5, 29.97), (2, 60.0)])
def test_fps_sampling_keeps_the_rate(fps, video_fps):
    sampler = ClipSampler(16, fps=fps, num_clips=3)
    indices = sampler.sample(3000, video_fps, np.random.default_rng(0))
    assert indices.shape == (3, 16) and indices.dtype == np.int64
    times = indices / video_fps
    # Every frame is within half a source frame of the ideal 1/fps grid.
    ideal = times[:, :1] + np.arange(16) / fps
    assert np.abs(times - ideal).max() <= 0.5 / video_fps + 1e-9
    assert (np.diff(indices[:, 0]) > 0).all(), "clips come in temporal order"


def test_frame_step_and_duration():
    step = ClipSampler(8, frame_step=3).sample(100, 30.0, np.random.default_rng(1))
    assert (np.diff(step) == 3).all() and step.min() >= 0 and step.max() < 100
    dur = ClipSampler(10, duration=2.0, random_start=False).sample(300, 30.0, np.random.default_rng(0))
    assert (np.diff(dur) == 6).all()
    assert dur[0, 0] == (300 - 55) // 2, "a single eval clip sits in the middle"


def test_starts_are_random_but_reproducible_and_uniform_when_asked():
    sampler = ClipSampler(4, frame_step=2)
    draws = [sampler.sample(200, 30.0, np.random.default_rng(s))[0, 0] for s in range(50)]
    assert len(set(draws)) > 20
    assert (
        sampler.sample(200, 30.0, np.random.default_rng(3)).tolist()
        == sampler.sample(200, 30.0, np.random.default_rng(3)).tolist()
    )
    uniform = ClipSampler(4, frame_step=2, num_clips=3, random_start=False).sample(107, 30.0, np.random.default_rng(0))
    assert uniform[:, 0].tolist() == [0, 50, 100]


def test_short_videos_fit_pad_or_skip():
    # By default the clip spreads over the whole short video: no frozen tail, frames repeat only
    # where the video has fewer frames than the clip.
    assert ClipSampler(4, frame_step=2).sample(5, 30.0, np.random.default_rng(0)).tolist() == [[0, 1, 3, 4]]
    fit = ClipSampler(8, frame_step=2).sample(5, 30.0, np.random.default_rng(0))
    assert fit.tolist() == [[0, 1, 1, 2, 2, 3, 3, 4]]
    padded = ClipSampler(8, frame_step=2, short_video="pad").sample(5, 30.0, np.random.default_rng(0))
    assert padded.tolist() == [[0, 2, 4, 4, 4, 4, 4, 4]]
    with pytest.raises(ShortVideoError):
        ClipSampler(8, frame_step=2, short_video="skip").sample(5, 30.0, np.random.default_rng(0))


def test_sampler_rejects_bad_configs():
    with pytest.raises(ValueError, match="exactly one"):
        ClipSampler(8, fps=4, frame_step=2)
    with pytest.raises(ValueError, match="exactly one"):
        ClipSampler(8)
    with pytest.raises(ValueError):
        ClipSampler(8, frame_step=1.5)
    with pytest.raises(ValueError, match="frame rate"):
        ClipSampler(8, fps=4).sample(100, 0.0, np.random.default_rng(0))


def _decord_native_failure(path, **size) -> bool:
    import decord

    try:
        decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **size).get_batch([0]).asnumpy()
    except Exception:  # noqa: BLE001 - any failure is what this helper reports
        return True
    return False


# The two backends bundle separate FFmpeg builds, so their scalers may round differently on some
# CPU; a wrong filter or chroma order shows as tens of levels (bicubic vs area was 40).
SAME_PICTURE_MAX, SAME_PICTURE_MEAN = 3, 0.5


def assert_same_picture(a: np.ndarray, b: np.ndarray, what: str = "") -> None:
    assert a.shape == b.shape, what
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= SAME_PICTURE_MAX and diff.mean() <= SAME_PICTURE_MEAN, (
        f"{what}: the backends differ by up to {diff.max()} levels, {diff.mean():.2f} on average, "
        f"in {(diff > 0).mean():.0%} of values"
    )


@pytest.mark.skipif("decord" not in BACKENDS, reason="decord is not installed")
@pytest.mark.parametrize("cpu", ffmpeg_cpu.paths())
def test_decord_reads_widths_it_cannot_return_through_pyav(tmp_path, caplog, cpu):
    """decord cannot return frames of some widths (which ones depends on the CPU: 32 and 96 px
    with AVX-512); the reader gets them from PyAV instead of reporting a good file as
    unreadable, directly and via a reduced-size read, and the pictures are the same."""
    narrow = write_video(tmp_path / "narrow.mp4", indexed_frames(20, height=64, width=32), 10, crf=12)
    tall = write_video(tmp_path / "tall.mp4", indexed_frames(10, height=192, width=128), 10, crf=12)
    indices = np.array([[1, 5, 19]])
    with ffmpeg_cpu.ffmpeg_cpu(cpu), caplog.at_level("WARNING", logger="jepa.data.video_decord"):
        got, want, failed = ffmpeg_cpu.on_fresh_thread(
            lambda: (
                read_clips(narrow, indices, "decord"),
                read_clips(narrow, indices, "pyav"),
                _decord_native_failure(narrow),
            )
        )
        assert_same_picture(got, want, "narrow")
        np.testing.assert_array_equal(decoded_index(got), indices)
        assert failed == ("narrow.mp4" in caplog.text)
        got, want, failed = ffmpeg_cpu.on_fresh_thread(
            lambda: (
                read_clips(tall, np.array([[2, 7]]), "decord", target_short_side=96),
                read_clips(tall, np.array([[2, 7]]), "pyav", target_short_side=96),
                _decord_native_failure(tall, width=96, height=144),
            )
        )
    assert got.shape == (1, 2, 144, 96, 3)
    assert_same_picture(got, want, "tall")
    assert failed == ("tall.mp4" in caplog.text)


@pytest.mark.skipif("decord" not in BACKENDS, reason="decord is not installed")
@pytest.mark.parametrize("cpu", ffmpeg_cpu.paths())
def test_backends_return_the_same_reduced_size_frames(tmp_path, cpu):
    """A reduced-size read gives the model the same pixels whichever backend decodes: PyAV runs
    decord's own scale filter chain. With PyAV's area scaler instead, a 128x192 file read at
    short side 96 on an AVX2 CPU differed in 88% of values, by up to 40 levels."""
    files = {
        "tall": write_video(tmp_path / "tall.mp4", indexed_frames(10, height=192, width=128), 10, crf=12),
        "wide": write_video(tmp_path / "wide.mp4", indexed_frames(10, height=120, width=212, seed=1), 10, crf=12),
    }
    reads = [("tall", 96), ("tall", 64), ("tall", 80), ("wide", 96), ("wide", 72), ("wide", 50), ("wide", None)]
    indices = np.array([[0, 3, 8]])

    def read_all(backend: str) -> list[np.ndarray]:
        return [read_clips(files[name], indices, backend, target_short_side=short) for name, short in reads]

    with ffmpeg_cpu.ffmpeg_cpu(cpu):
        decord_clips = ffmpeg_cpu.on_fresh_thread(lambda: read_all("decord"))
        pyav_clips = ffmpeg_cpu.on_fresh_thread(lambda: read_all("pyav"))
    for (name, short), a, b in zip(reads, decord_clips, pyav_clips):
        assert_same_picture(a, b, f"{name} at short side {short} ({cpu})")


# Pixel formats, codecs and containers users' files come in, beyond the H.264 / VP9 yuv420p
# above: (file, encoder, pixel format, extra encoder options, an audio stream ahead of the video).
FORMATS = [
    ("h264_yuv444.mp4", "libx264", "yuv444p", {"crf": "12"}, False),
    ("h264_10bit.mp4", "libx264", "yuv420p10le", {"crf": "12"}, False),
    ("hevc.mp4", "libx265", "yuv420p", {"crf": "12", "x265-params": "log-level=none"}, False),
    ("gray.mkv", "ffv1", "gray", {}, False),
    ("mpeg4.avi", "mpeg4", "yuv420p", {"qscale": "2"}, False),
    ("mjpeg.mov", "mjpeg", "yuvj420p", {"qscale": "2"}, False),
    # SVT-AV1's hidden frames: libdav1d dropped wanted frames once told to skip one (fixed).
    ("av1.mp4", "libsvtav1", "yuv420p", {"crf": "20", "preset": "12"}, False),
    ("audio_first.mp4", "libx264", "yuv420p", {"crf": "12"}, True),
]


def _smooth_frames(num_frames: int) -> np.ndarray:
    """Colour gradients with a moving square and a grey level per frame in the top rows: content
    every codec keeps close at high quality, so a wrong conversion or frame shows."""
    y, x = np.mgrid[0:64, 0:64]
    frames = np.empty((num_frames, 64, 64, 3), np.uint8)
    for t in range(num_frames):
        frames[t] = np.stack([60 + 2 * x, 60 + 2 * y, 200 - 2 * x], -1)
        frames[t, 30:42, 4 + 2 * t : 16 + 2 * t] = (240, 200, 40)
    frames[:, :16] = (8 + np.arange(num_frames) * 4).astype(np.uint8)[:, None, None, None]
    return frames


@pytest.mark.parametrize("name, codec, pix_fmt, options, audio_first", FORMATS)
def test_other_codecs_and_pixel_formats_decode(tmp_path, name, codec, pix_fmt, options, audio_first):
    import av

    frames, path = _smooth_frames(20), tmp_path / name
    try:
        with av.open(str(path), "w") as container:
            if audio_first:
                container.add_stream("aac", rate=16000)
            stream = container.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt, stream.options = 64, 64, pix_fmt, options
            for i, frame in enumerate(frames):
                out = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=pix_fmt)
                out.pts = i
                container.mux(stream.encode(out))
            container.mux(stream.encode())
    except (av.FFmpegError, ValueError) as err:  # an encoder this PyAV build lacks
        pytest.skip(f"cannot write {name} here: {err}")
    with av.open(str(path)) as container:  # reference: every frame, decoded in order
        full = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(int)
    assert len(full) == 20
    indices = np.array([[0, 3, 11, 19]])
    for backend in BACKENDS:
        clips = read_clips(path, indices, backend)
        assert clips.shape == (1, 4, 64, 64, 3), backend
        # Each returned frame is closest to the reference frame asked for (lossy codecs blur the
        # index stripe, so frames are matched whole) ...
        distance = np.abs(clips[0, :, None].astype(int) - full[None]).mean(axis=(2, 3, 4))
        np.testing.assert_array_equal(distance.argmin(axis=1), indices[0], err_msg=backend)
        if backend == "pyav":  # bit-exact, for every window of 4 consecutive frames too
            np.testing.assert_array_equal(clips[0], full[indices[0]])
            for start in range(len(full) - 3):
                window = read_clips(path, np.arange(start, start + 4)[None], backend)[0]
                np.testing.assert_array_equal(window, full[start : start + 4], err_msg=f"frames {start}..{start + 3}")
        # ... and the colours are right (channel order, range, bit depth).
        if pix_fmt != "gray":
            error = np.abs(clips[0].astype(int) - frames[indices[0]]).mean()
            assert error < 6, f"{backend}: mean error {error:.1f} levels"


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_display_rotation_is_applied_by_both_backends(tmp_path, degrees):
    """Phone videos store frames sideways with a display matrix; both backends return frames as
    a player shows them (decord did for some sizes, PyAV never did), at full and reduced size."""
    import av

    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display matrix")
    frames = _smooth_frames(6)[:, :48]  # 48 x 64 as stored: not square, so a missed turn shows
    path = tmp_path / "turned.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt, stream.options = 64, 48, "yuv420p", {"crf": "12"}
        stream.set_display_rotation(degrees)  # counter-clockwise, as VideoFrame.rotation reads it
        for i, frame in enumerate(frames):
            out = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            out.pts = i
            container.mux(stream.encode(out))
        container.mux(stream.encode())
    shown = np.rot90(frames, degrees // 90, axes=(1, 2)).astype(int)
    indices = np.array([[1, 4]])
    for backend in BACKENDS:
        clips = read_clips(path, indices, backend)
        assert clips.shape[2:4] == shown.shape[1:3], backend
        error = np.abs(clips[0].astype(int) - shown[indices[0]]).mean()
        assert error < 6, f"{backend}: mean error {error:.1f} levels"
        small = read_clips(path, indices, backend, target_short_side=24)
        assert small.shape[2:4] == tuple(s // 2 for s in shown.shape[1:3]), backend


@pytest.mark.parametrize("container", ["mov", "mkv"])
def test_a_cover_image_stream_ahead_of_the_video_is_not_read(tmp_path, container):
    """Downloaded and camera MOV / MKV files can carry a one-frame cover image as their first
    video stream; both backends read the video (PyAV read the cover, decord too in MOV)."""
    import av

    frames, path = _smooth_frames(20), tmp_path / f"covered.{container}"
    with av.open(str(path), "w") as out:
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 32, 32, "yuvj420p"
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt, video.options = 64, 64, "yuv420p", {"crf": "12"}
        still = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24").reformat(
            format="yuvj420p"
        )
        still.pts = 0
        for packet in [*cover.encode(still), *cover.encode()]:
            out.mux(packet)
        for i, frame in enumerate(frames):
            yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            yuv.pts = i
            out.mux(video.encode(yuv))
        out.mux(video.encode())
    for backend in BACKENDS:
        reader = open_video(path, backend)
        assert (reader.num_frames, reader.fps, reader.height, reader.width) == (20, 10.0, 64, 64), backend
        reader.close()
        clips = read_clips(path, np.array([[2, 17]]), backend)
        assert np.abs(clips[0].astype(int) - frames[[2, 17]]).mean() < 6, backend
