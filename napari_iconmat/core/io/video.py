"""Video frames through PyAV: a packet index built once, seeks to keyframes, backward reading in blocks.

The reader behind :func:`~napari_iconmat.core.io.open_frames` for .mp4 .mov .avi .mkv .webm .m4v.
VP9 with alpha (WebM tagged ``alpha_mode=1``, as written by the 'webm' output
format) is decoded with libvpx-vp9, since FFmpeg's native VP9 decoder drops the
alpha plane: such frames come back as RGBA.
"""

from __future__ import annotations

import bisect
import warnings
from pathlib import Path
from fractions import Fraction
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import InputError
from .containers import FrameTiming
from .readers import FrameSource, _reason

# A descending run of video frames is decoded in blocks of at most this many
# frames (fewer for big frames, see _BLOCK_BYTES), then yielded in reverse.
_MAX_BLOCK = 32
_BLOCK_BYTES = 512 * 2**20
# Continue decoding forward instead of seeking when the target is this close.
_FORWARD_GAP = 16


class VideoSource(FrameSource):
    """Frames of a video file decoded with PyAV, with exact frame indexing.

    Opening demuxes every packet once (no decoding) to list the frames and
    their keyframes, so ``len()`` does not trust the container's frame count.
    Frames are identified by presentation timestamp; where timestamps cannot be
    trusted (AVI, missing or repeated ones) by counting decoded frames. Reading
    frame ``i`` seeks to the last keyframe at or before it and decodes forward;
    reading ``i + 1`` next continues decoding without a seek.
    """

    kind = "video"

    def __init__(self, path: Path) -> None:
        import av

        super().__init__(path=path)
        self._av = av
        self._container: Any = None
        self._decoder: Iterator[Any] | None = None
        self._next = 0  # index of the frame the decoder yields next
        self._landed: int | None = None  # first frame decoded since the last seek
        self._damage: str | None = None  # last decoding error since the last seek
        self._last: tuple[int, Any] | None = None  # last decoded (index, av.VideoFrame)
        self._frame_bytes = 1
        self._alpha_codec: Any = None  # libvpx-vp9 decoder for VP9 with alpha, else None
        if path.stat().st_size == 0:
            raise InputError(f"video file is empty (0 bytes): {path}")
        try:
            self._container = av.open(str(path), metadata_errors="ignore")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot open video {path}: not a readable media file ({_reason(exc)})") from exc
        try:
            self._index_frames()
            self._read(0)  # fail at open, not in the middle of a run, when nothing decodes
        except BaseException:
            self.close()
            raise

    def _index_frames(self) -> None:
        av, path = self._av, self.path
        if not self._container.streams.video:
            raise InputError(f"no video stream in {path}")
        stream = self._stream = self._container.streams.video[0]
        if stream.codec_context is None:  # a damaged header, or a codec FFmpeg cannot decode
            raise InputError(f"cannot read video {path}: no decoder for its video stream; damaged or unsupported file?")
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self._rate = Fraction(rate) if rate else None
        tags = {str(k).lower(): str(v) for k, v in (stream.metadata or {}).items()}
        self._vp9_alpha = stream.codec_context.name == "vp9" and tags.get("alpha_mode") == "1"
        if self._vp9_alpha:
            try:
                av.CodecContext.create("libvpx-vp9", "r")
            except (av.FFmpegError, ValueError):
                self._vp9_alpha = False
                warnings.warn(f"{path} has an alpha channel, but this PyAV has no libvpx-vp9 decoder to read it", stacklevel=4)
        packets: list[tuple[Any, Any, bool]] = []  # (pts, dts, keyframe) in decoding order
        try:
            for packet in self._container.demux(stream):
                if packet.size and not getattr(packet, "is_discard", False):
                    packets.append((packet.pts, packet.dts, packet.is_keyframe))
        except av.FFmpegError as exc:
            if not packets:
                raise InputError(f"cannot read video {path}: {_reason(exc)}") from exc
            warnings.warn(f"video {path} is damaged after {len(packets)} frames: {_reason(exc)}", stacklevel=4)
        if not packets:
            raise InputError(f"video {path} has no frames")
        if stream.frames and len(packets) < stream.frames:
            warnings.warn(
                f"video {path} holds {len(packets)} frames but its header announces {stream.frames}; "
                "the file may be truncated",
                stacklevel=4,
            )
        pts = [p for p, _, _ in packets]
        self._decode_pts = pts
        # Some containers (h264 in AVI) store no presentation times and report
        # "pts" in decoding order: with B-frames such stamps cannot be trusted.
        in_decoding_order = all(a < b for a, b in zip(pts, pts[1:])) if None not in pts else False
        self._by_pts = (
            None not in pts
            and len(set(pts)) == len(pts)
            and not (in_decoding_order and getattr(stream.codec_context, "has_b_frames", True))
        )
        if self._by_pts:
            order = sorted(range(len(packets)), key=lambda j: packets[j][0])
            self._pts = [packets[j][0] for j in order]
            self._index_of_pts = {p: i for i, p in enumerate(self._pts)}
        else:
            # Counting decoded frames: a keyframe's frame index is its position
            # in decoding order (true for closed GOPs), checked after each seek by dts.
            order = list(range(len(packets)))
        # Seek to min(pts, dts): demuxers index by either, and landing early only
        # costs a few decoded frames while landing late would miss the target.
        self._seek_at: dict[int, Any] = {}
        self._dts: dict[int, Any] = {}
        for i, j in enumerate(order):
            p, d, key = packets[j]
            if key or i == 0:
                stamps = [t for t in (p, d) if t is not None]
                if stamps:
                    self._seek_at[i] = min(stamps)
                    self._dts[i] = d
        earliest = [t for p, d, _ in packets for t in (p, d) if t is not None]
        if earliest:  # restarting at frame 0 means: from the very first packet
            self._seek_at[0] = min(earliest)
        self._keyframes = sorted({0} | set(self._seek_at))
        self._length = len(packets)
        self._restart(0)

    @property
    def timing(self) -> FrameTiming:
        """The video's frame rate and the presentation timestamp of every frame (in frame order)."""
        rate = self._rate or Fraction(25)
        if self._by_pts:
            return FrameTiming(rate=rate, time_base=Fraction(self._stream.time_base), pts=tuple(self._pts))
        stamps = self._decode_pts
        if self._stream.time_base and None not in stamps and all(a < b for a, b in zip(stamps, stamps[1:])):
            # Frames are counted in decoding order here; increasing stamps are then theirs.
            return FrameTiming(rate=rate, time_base=Fraction(self._stream.time_base), pts=tuple(stamps))
        return FrameTiming.from_fps(rate)

    def _keyframe_before(self, index: int) -> int:
        return self._keyframes[bisect.bisect_right(self._keyframes, index) - 1]

    def _restart(self, index: int) -> None:
        """Seek so that decoding resumes at keyframe ``index`` (or a little before)."""
        self._decoder = None
        if index in self._seek_at:
            self._container.seek(self._seek_at[index], stream=self._stream, backward=True, any_frame=False)
        else:
            self._container.seek(0, backward=True, any_frame=False)
        check = None if self._by_pts or index == 0 else self._dts.get(index)
        self._decoder = self._decode_packets(check)
        self._next = index
        self._landed = None

    def _decode_packets(self, expected_dts: Any) -> Iterator[Any]:
        # Packet by packet rather than container.decode(): a damaged packet then
        # costs only the frames it carries, and its error is kept to report it
        # with the index of the frame that went missing.
        self._damage = None
        first = True
        # A fresh libvpx decoder after every seek: it must not predict from frames before the seek.
        codec = self._av.CodecContext.create("libvpx-vp9", "r") if self._vp9_alpha else None
        for packet in self._container.demux(self._stream):
            if first and packet.size:
                first = False
                if expected_dts is not None and packet.dts != expected_dts:
                    raise _BadSeek
            if codec is not None and not packet.size:
                continue  # libvpx refuses the demuxer's empty flush packet
            try:
                frames = codec.decode(packet) if codec is not None else packet.decode()
            except self._av.FFmpegError as exc:
                self._damage = _reason(exc)
                continue
            yield from frames
        if codec is not None:
            try:
                yield from codec.decode(None)
            except (self._av.FFmpegError, EOFError) as exc:
                self._damage = _reason(exc)

    def _decode_to(self, index: int) -> Any:
        """Decode forward to frame ``index`` and return it as an av.VideoFrame."""
        while True:
            try:
                frame = next(self._decoder)
            except StopIteration:
                frame = None
            except (self._av.FFmpegError, EOFError) as exc:
                self._decoder = None
                raise InputError(f"cannot decode frame {index} of video {self.path}: {_reason(exc)}") from exc
            if frame is None:
                self._decoder = None
                why = f"damaged data ({self._damage})" if self._damage else "the stream ends before it"
                raise InputError(f"cannot decode frame {index} of video {self.path}: {why}; truncated or damaged file?")
            if self._by_pts:
                got = self._index_of_pts.get(frame.pts)
                if got is None:
                    continue
            else:
                got = self._next
            if self._landed is None:
                self._landed = got
            self._next = got + 1
            if got == index:
                return frame
            if got > index:
                self._decoder = None
                why = f" ({self._damage})" if self._damage else ""
                raise _Overshoot(
                    f"cannot decode frame {index} of video {self.path}: the decoder skipped it{why}; damaged file?"
                )

    def _read(self, index: int) -> np.ndarray:
        if self._container is None:
            raise InputError(f"video {self.path} is closed")
        if self._last is not None and self._last[0] == index:
            return _video_ndarray(self._last[1])  # a fresh array: callers may modify theirs
        key = self._keyframe_before(index)
        # Keep decoding forward when no keyframe lies between here and the target
        # (a seek would land no later) or the target is just a few frames ahead.
        ahead = self._decoder is not None and self._next <= index
        if not (ahead and (key <= self._next or index - self._next < _FORWARD_GAP)):
            self._restart(key)
        try:
            frame = self._decode_to(index)
        except (_BadSeek, _Overshoot) as exc:
            seek_missed = isinstance(exc, _BadSeek) or (self._landed is not None and self._landed > key)
            if key == 0 or not seek_missed:
                raise InputError(str(exc)) from None
            # The seek landed past the keyframe (a bad container index): decode from the start.
            self._restart(0)
            try:
                frame = self._decode_to(index)
            except _Overshoot as exc:
                raise InputError(str(exc)) from None
        array = _video_ndarray(frame)
        self._last = (index, frame)
        self._frame_bytes = array.nbytes
        return array

    def iter_frames(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        order = [self._normalize(i) for i in indices]
        pos = 0
        while pos < len(order):
            stop = pos + 1  # order[pos:stop] is a descending contiguous run
            while stop < len(order) and order[stop] == order[stop - 1] - 1:
                stop += 1
            if stop - pos < 2:
                # Ascending runs need nothing special: _read continues decoding.
                yield order[pos], self._read(order[pos])
                pos += 1
                continue
            high, low = order[pos], order[stop - 1]
            while high >= low:
                first = self._block_start(high, low)
                block = [self._read(i) for i in range(first, high + 1)]
                for i in range(high, first - 1, -1):
                    yield i, block.pop()
                high = first - 1
            pos = stop

    def _block_start(self, high: int, low: int) -> int:
        """First frame of the block that ends at ``high``: a keyframe when one is near."""
        size = self._block_size()
        key = self._keyframe_before(high)
        return max(low, key) if high - key < size else max(low, high - size + 1)

    def _block_size(self) -> int:
        return int(max(1, min(_MAX_BLOCK, _BLOCK_BYTES // self._frame_bytes)))

    def close(self) -> None:
        self._decoder = None
        self._last = None
        if self._container is not None:
            self._container.close()
            self._container = None


class _Overshoot(Exception):
    """The decoder went past the frame asked for."""


class _BadSeek(Exception):
    """A seek landed on another packet than the keyframe asked for."""


def _video_ndarray(frame: Any) -> np.ndarray:
    """Convert an av.VideoFrame to RGB(A)/gray, 8-bit or (for >8-bit formats) uint16."""
    fmt = frame.format
    name = fmt.name
    components = fmt.components
    deep = max(c.bits for c in components) > 8
    if name.startswith("gray"):
        target = "gray16le" if deep else "gray"
    elif any(c.is_alpha for c in components):
        target = "rgba64le" if deep else "rgba"
    else:
        target = "rgb48le" if deep else "rgb24"
    return frame.to_ndarray(format=target)
