"""The napari widget: layers <-> arrays, a worker with progress and Cancel. No matting logic here.

Which frames a keyframe re-mattes, the query cache and the export live in
:mod:`napari_iconmat.core.pipeline.keyframes` and :mod:`napari_iconmat.core.pipeline.export`;
this module only moves arrays between layers and those functions, and runs the
frame generator in napari's ``thread_worker`` so the viewer stays responsive.

How it is used: pick the image layer (a 2-D image, a T x H x W or T x H x W x 3
stack, or a video opened with this plugin's reader), press "New prompt layer"
and paint the object on the current frame (label 1; add label 2 strokes on the
background to make it a scribble), press **Propagate**. Go to a frame where the
matte is wrong, paint a correction there, press **Propagate** again: that frame
becomes a keyframe and only the frames nearer to it than to the other
keyframes are matted again. **Export** writes the mattes in the layout of
``iconmat matte``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from .core.errors import IconmatError, InputError
from .core.io.lazy import LazyFrames
from .core.io.readers import open_frames
from .core.pipeline.export import composite, iter_export
from .core.pipeline.keyframes import Keyframes, QueryCache, matte_keyframes
from .core.pipeline.propagate import DIRECTIONS, parse_range
from .core.prompt import PROMPT_KINDS, make_prompt
from .core.registry import engine_names, engine_statuses, make_engine
from .core.registry import parse_engine_options as _parse_options

__all__ = ["MattingWidget", "parse_engine_options"]


def parse_engine_options(text: str) -> dict:
    """``'working_size=160 band=0.02'`` -> ``{'working_size': 160, 'band': 0.02}`` (values JSON when they parse)."""
    return _parse_options((text or "").replace(",", " ").split())


@dataclass
class _Session:
    """What the widget keeps for one image layer: its keyframes and result layers."""

    layer: Image
    keyframes: Keyframes
    alpha: Image | None = None
    composite: Image | None = None


#: backgrounds of the composite preview: 'checkerboard' or an RGB colour in [0, 1]
_BACKGROUNDS = {"checkerboard": "checkerboard", "white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "green": (0.0, 0.8, 0.2)}


def _matting_steps(frames, engine, keyframes, plan, cache, with_composite, background="checkerboard"):
    """Worker body: one yield per frame matted, ``(index, alpha, composite or None)``."""
    try:
        for index, matte in matte_keyframes(frames, engine, keyframes, plan, cache=cache, with_foreground=with_composite):
            preview = None
            if with_composite and matte.foreground is not None:
                preview = composite(matte.foreground, matte.alpha, foreground=matte.foreground, background=background)
            yield index, matte.alpha, preview
    finally:
        if hasattr(frames, "close"):
            frames.close()


class MattingWidget(Container):
    """Dock widget: mark one frame, propagate, correct with keyframes, export.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer

    Notes
    -----
    Tests and scripts drive it without clicks: set ``image_layer``,
    ``prompt_layer`` (or call :meth:`new_prompt_layer`), the value of the
    option widgets, then call :meth:`propagate` / :meth:`export`, which return
    the started worker (or None when there is nothing to do).
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self._cache = QueryCache()
        self._sessions: dict[int, _Session] = {}
        self._engines: dict[str, Any] = {}
        self.worker = None

        self._image = ComboBox(label="image", choices=self._image_choices, nullable=True)
        self._prompt = ComboBox(label="prompt", choices=self._prompt_choices, nullable=True)
        self._new_prompt = PushButton(text="New prompt layer (paint 1 = object, 2 = background)")
        self._prompt_kind = ComboBox(label="prompt reads as", choices=list(PROMPT_KINDS), value="auto")
        self._engine = ComboBox(label="engine", choices=engine_names())
        self._engine_state = Label(label="")
        self._options = LineEdit(label="engine options", value="")
        self._options.tooltip = "KEY=VALUE pairs passed to the engine, e.g. working_size=320"
        self._direction = ComboBox(label="direction", choices=list(DIRECTIONS), value="both")
        self._range = LineEdit(label="frames", value="")
        self._range.tooltip = "A:B (Python slice bounds); empty = all frames"
        self._with_composite = CheckBox(text="composite preview (estimated foreground over a new background)", value=False)
        self._background = ComboBox(label="composite over", choices=list(_BACKGROUNDS), value="checkerboard")
        self._propagate = PushButton(text="Propagate from this frame")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._remove = PushButton(text="Remove keyframe on this frame")
        self._keyframes_label = Label(label="keyframes", value="none")
        self._out = FileEdit(label="export to", mode="d")
        self._formats = LineEdit(label="formats", value="png")
        self._formats.tooltip = "any of png, png16, rgba, tiff, comma-separated (as iconmat matte --format)"
        self._export = PushButton(text="Export")
        self._status = Label(label="", value="")
        self.extend(
            [
                self._image, self._prompt, self._new_prompt, self._prompt_kind, self._engine, self._engine_state,
                self._options, self._direction, self._range, self._with_composite, self._background, self._propagate, self._cancel,
                self._remove, self._keyframes_label, self._out, self._formats, self._export, self._status,
            ]
        )  # fmt: skip

        self._new_prompt.changed.connect(self.new_prompt_layer)
        self._propagate.changed.connect(self.propagate)
        self._cancel.changed.connect(self.cancel)
        self._remove.changed.connect(self.remove_keyframe)
        self._export.changed.connect(self.export)
        self._engine.changed.connect(self._show_engine_state)
        self._image.changed.connect(self._show_keyframes)
        self.viewer.layers.events.inserted.connect(self.reset_choices)
        self.viewer.layers.events.removed.connect(self.reset_choices)
        self._show_engine_state()

    # ------------------------------------------------------------ layer choices
    def _image_choices(self, _widget=None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image) and not _is_result(layer)]

    def _prompt_choices(self, _widget=None) -> list[tuple[str, Any]]:
        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, Labels) or (isinstance(layer, Image) and not layer.rgb and not _is_result(layer))
        ]

    @property
    def image_layer(self) -> Image | None:
        return self._image.value

    @image_layer.setter
    def image_layer(self, layer: Image) -> None:
        self._image.reset_choices()
        self._image.value = layer

    @property
    def prompt_layer(self):
        return self._prompt.value

    @prompt_layer.setter
    def prompt_layer(self, layer) -> None:
        self._prompt.reset_choices()
        self._prompt.value = layer

    @property
    def alpha_layer(self) -> Image | None:
        """The result layer of the current image (float32 (T, H, W) in [0, 1]), once there is one."""
        session = self._session(create=False)
        return None if session is None else session.alpha

    @property
    def keyframes(self) -> Keyframes | None:
        session = self._session(create=False)
        return None if session is None else session.keyframes

    # ------------------------------------------------------------ frames and prompt
    def _geometry(self, layer: Image) -> tuple[int, tuple[int, int], bool]:
        """(number of frames, (H, W), has a frame axis) of an image layer."""
        if getattr(layer, "multiscale", False):
            raise InputError(f"image layer {layer.name!r} is multiscale: choose a single-scale image or stack")
        shape = tuple(layer.data.shape)
        spatial = shape[:-1] if layer.rgb else shape
        if len(spatial) == 2:
            return 1, spatial, False
        if len(spatial) == 3:
            return spatial[0], spatial[1:], True
        raise InputError(
            f"image layer {layer.name!r} has shape {shape}: choose a 2-D image or a T x H x W (x 3) stack"
        )

    def current_frame(self) -> int:
        """The frame under the viewer's slider, in the image layer's frame axis."""
        layer = self._require_image()
        n, _, stacked = self._geometry(layer)
        if not stacked:
            return 0
        coords = layer.world_to_data(self.viewer.dims.point)
        return int(np.clip(round(float(coords[0])), 0, n - 1))

    def _frame_source(self, layer: Image):
        """An independent frame source for the worker thread."""
        data = layer.data
        if isinstance(data, LazyFrames):
            return data.open_source()
        _, _, stacked = self._geometry(layer)
        return open_frames(data if stacked else [np.asarray(data)])

    def _frame(self, layer: Image, index: int) -> np.ndarray:
        _, _, stacked = self._geometry(layer)
        return np.asarray(layer.data[index] if stacked else layer.data)

    def _prompt_at(self, index: int, n_frames: int, size: tuple[int, int]):
        """The prompt layer's slice at frame ``index``, or None when nothing is painted there."""
        layer = self.prompt_layer
        if layer is None:
            raise InputError("choose a prompt layer (or press 'New prompt layer') and paint the object")
        data = layer.data
        shape = tuple(data.shape)
        if shape == tuple(size):
            array = np.asarray(data)
        elif shape == (n_frames, *size):
            array = np.asarray(data[index])
        else:
            raise InputError(
                f"prompt layer {layer.name!r} has shape {shape}; it must be {tuple(size)} or {(n_frames, *size)} "
                "like the image"
            )
        if not np.any(array):
            return None
        return make_prompt(array, kind=self._prompt_kind.value, shape=size)

    def new_prompt_layer(self, *_args) -> Labels:
        """Add an empty Labels layer shaped like the image, ready for painting (1 = object, 2 = background)."""
        try:
            layer = self._require_image()
            n, size, stacked = self._geometry(layer)
        except IconmatError as exc:
            return self._fail(exc)
        shape = (n, *size) if stacked else size
        labels = self.viewer.add_labels(np.zeros(shape, np.uint8), name=f"{layer.name} prompt", opacity=0.5)
        labels.brush_size = max(5, max(size) // 30)
        labels.selected_label = 1
        labels.mode = "paint"
        self.prompt_layer = labels
        return labels

    # ------------------------------------------------------------ engine
    def _show_engine_state(self, *_args) -> None:
        status = engine_statuses().get(self._engine.value)
        if status is None:
            self._engine_state.value = ""
        elif status.ready:
            self._engine_state.value = f"ready (needs {status.needs})"
        else:
            self._engine_state.value = f"not ready: needs {status.needs}; {status.detail}"

    def _make_engine(self):
        name = self._engine.value
        status = engine_statuses()[name]
        if not status.ready:
            raise InputError(f"engine {name!r} is not ready: it needs {status.needs} ({status.detail})")
        params = parse_engine_options(self._options.value)
        key = json.dumps([name, params], sort_keys=True)
        if key not in self._engines:
            self._engines = {key: make_engine(name, **params)}  # keep one engine: they can be large
        return self._engines[key]

    # ------------------------------------------------------------ sessions
    def _require_image(self) -> Image:
        layer = self.image_layer
        if layer is None:
            raise InputError("choose an image layer first")
        return layer

    def _session(self, create: bool = True) -> _Session | None:
        layer = self.image_layer
        if layer is None:
            return None
        session = self._sessions.get(id(layer))
        n, size, _ = self._geometry(layer)
        if session is not None and (session.keyframes.n_frames != n or session.layer is not layer):
            session = None  # the layer's data changed shape: start over
        if session is None and create:
            session = self._sessions[id(layer)] = _Session(layer, Keyframes(n))
        return session

    def _has_result(self, session: _Session, which: str) -> bool:
        layer = getattr(session, which)
        return layer is not None and layer in self.viewer.layers

    def _result_layer(self, session: _Session, which: str) -> Image:
        n, size, stacked = self._geometry(session.layer)
        if self._has_result(session, which):
            return getattr(session, which)
        name = session.layer.name
        if which == "alpha":
            data = np.zeros((n, *size), np.float32)  # zero pages cost no memory until written
            layer = self.viewer.add_image(
                data if stacked else data[0], name=f"{name} alpha", colormap="magma", contrast_limits=(0.0, 1.0),
                blending="additive", opacity=0.6, metadata={"iconmat_result": "alpha"},
            )  # fmt: skip
        else:
            data = np.zeros((n, *size, 3), np.uint8)
            layer = self.viewer.add_image(
                data if stacked else data[0], name=f"{name} composite", rgb=True, metadata={"iconmat_result": "composite"}
            )
        setattr(session, which, layer)
        return layer

    # ------------------------------------------------------------ propagate
    def propagate(self, *_args):
        """Make the current frame a keyframe (when painted) and matte every frame that is not up to date.

        Returns the started worker, or None when nothing had to be done or an
        error was shown.
        """
        if self.worker is not None:
            return self._fail(InputError("a job is running: wait for it or press Cancel"))
        try:
            layer = self._require_image()
            session = self._session()
            keys = session.keyframes
            n, size, _ = self._geometry(layer)
            index = self.current_frame()
            prompt = self._prompt_at(index, n, size)
            if prompt is not None:
                keys.set(index, self._frame(layer, index), prompt)
            elif not len(keys):
                raise InputError(f"nothing is painted on frame {index}: paint the object there (label 1), then Propagate")
            keys.direction = self._direction.value
            frame_range = parse_range(self._range.value.strip() or None, n)
            engine = self._make_engine()
            with_composite = bool(self._with_composite.value)
            if not self._has_result(session, "alpha") or (with_composite and not self._has_result(session, "composite")):
                keys.forget()  # a result layer was deleted (or is new): every frame must be matted into it
            plan = keys.plan(engine, frame_range=frame_range)
        except IconmatError as exc:
            return self._fail(exc)

        alpha = self._result_layer(session, "alpha")
        preview = self._result_layer(session, "composite") if with_composite else None
        if plan.stale:
            for frame in plan.stale:
                self._store(alpha, frame, 0.0)
                if preview is not None:
                    self._store(preview, frame, 0)
            keys.forget(plan.stale)
            alpha.refresh()
        self._show_keyframes()
        if plan.total == 0:
            self._status.value = f"all frames up to date (keyframes {keys.describe()})"
            return None

        frames = self._frame_source(layer)
        worker = thread_worker(
            _matting_steps, progress={"total": plan.total, "desc": f"iconmat: matting {plan.total} frames"}
        )(frames, engine, keys, plan, self._cache, with_composite, _BACKGROUNDS[self._background.value])
        self._started = {"total": plan.total, "done": 0}
        worker.yielded.connect(lambda value: self._on_frame(session, value))
        worker.errored.connect(self._on_error)
        worker.aborted.connect(lambda: self._on_stopped(session, cancelled=True))
        worker.returned.connect(lambda _value: self._on_stopped(session, cancelled=False))
        worker.finished.connect(self._on_finished)
        self._begin(worker, f"matting {plan.total} frames from keyframes {keys.describe()}")
        worker.start()
        return worker

    def _on_frame(self, session: _Session, value) -> None:
        index, alpha, preview = value
        self._store(session.alpha, index, alpha)
        session.alpha.refresh()
        if preview is not None and session.composite is not None:
            self._store(session.composite, index, preview)
            session.composite.refresh()
        self._started["done"] += 1
        self._status.value = f"matted frame {index} ({self._started['done']}/{self._started['total']})"

    @staticmethod
    def _store(layer: Image, index: int, value) -> None:
        if layer.data.ndim == 2 or (layer.rgb and layer.data.ndim == 3):
            layer.data[...] = value
        else:
            layer.data[index] = value

    def _on_stopped(self, session: _Session, *, cancelled: bool) -> None:
        done, total = self._started["done"], self._started["total"]
        self._status.value = f"cancelled after {done} of {total} frames" if cancelled else f"matted {done} frames"
        self._show_keyframes()

    # ------------------------------------------------------------ keyframes
    def remove_keyframe(self, *_args) -> None:
        """Stop using the current frame as a keyframe (its paint stays; Propagate re-mattes its frames)."""
        try:
            if self.worker is not None:
                raise InputError("a job is running: wait for it or press Cancel")
            session = self._session()
            if session is None:
                raise InputError("choose an image layer first")
            session.keyframes.remove(self.current_frame())
        except IconmatError as exc:
            self._fail(exc)
            return
        self._show_keyframes()
        self._status.value = "keyframe removed: press Propagate to re-matte its frames"

    def _show_keyframes(self, *_args) -> None:
        try:
            session = self._session(create=False)
        except IconmatError:
            session = None
        if session is None:
            self._keyframes_label.value = "none"
            return
        keys = session.keyframes
        self._keyframes_label.value = f"{keys.describe()} ({len(keys.done)}/{keys.n_frames} frames matted)"

    # ------------------------------------------------------------ export
    def export(self, *_args):
        """Write the matted frames to the chosen folder (``alpha/NNNNN.png`` ...); returns the worker."""
        if self.worker is not None:
            return self._fail(InputError("a job is running: wait for it or press Cancel"))
        try:
            session = self._session(create=False)
            if session is None or session.alpha is None or not session.keyframes.done:
                raise InputError("nothing to export yet: Propagate first")
            out = str(self._out.value).strip()
            if out in ("", "."):
                raise InputError("choose a folder to export to")
            formats = self._formats.value
            indices = sorted(session.keyframes.done)
            alpha = session.alpha.data
            alphas = alpha if alpha.ndim == 3 else alpha[None]
            frames = self._frame_source(session.layer) if "rgba" in formats.lower() else None
            record = {
                "input": session.layer.name,
                "engine": self._engine.value,
                "engine_options": parse_engine_options(self._options.value),
                "keyframes": session.keyframes.indices,
            }
            steps = iter_export(alphas, out, indices=indices, formats=formats, frames=frames, record=record)
        except IconmatError as exc:
            return self._fail(exc)
        worker = thread_worker(_export_steps, progress={"total": len(indices), "desc": "iconmat: exporting"})(steps, frames)
        self._started = {"total": len(indices), "done": 0}
        worker.yielded.connect(self._on_exported_frame)
        worker.returned.connect(lambda outputs: self._on_exported(outputs))
        worker.aborted.connect(lambda: setattr(self._status, "value", "export cancelled"))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._begin(worker, f"exporting {len(indices)} frames to {out}")
        worker.start()
        return worker

    def _on_exported_frame(self, index: int) -> None:
        self._started["done"] += 1
        self._status.value = f"wrote frame {index} ({self._started['done']}/{self._started['total']})"

    def _on_exported(self, outputs: dict) -> None:
        where = ", ".join(f"{k}: {v}" for k, v in outputs.items())
        self._status.value = f"exported {self._started['done']} frames ({where})"
        show_info(f"iconmat: exported {self._started['done']} frames to {self._out.value}")

    # ------------------------------------------------------------ worker plumbing
    def _begin(self, worker, text: str) -> None:
        self.worker = worker
        self._status.value = text
        for button in (self._propagate, self._remove, self._export, self._new_prompt):
            button.enabled = False
        self._cancel.enabled = True

    def cancel(self, *_args) -> None:
        """Stop the running job after the frame in progress."""
        if self.worker is not None:
            self.worker.quit()
            self._status.value = "cancelling after the current frame ..."

    def _on_finished(self) -> None:
        self.worker = None
        for button in (self._propagate, self._remove, self._export, self._new_prompt):
            button.enabled = True
        self._cancel.enabled = False

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, IconmatError):
            self._fail(exc)
            return
        self._status.value = f"failed: {type(exc).__name__}: {exc}"
        raise exc  # a bug, not the user's doing: napari shows it with its traceback

    def _fail(self, exc: BaseException) -> None:
        self._status.value = str(exc)
        show_error(str(exc))
        return None


def _export_steps(steps, frames):
    """Worker body of an export: re-yield each frame index; return the outputs."""
    try:
        outputs = yield from steps
    finally:
        if frames is not None and hasattr(frames, "close"):
            frames.close()
    return outputs


def _is_result(layer) -> bool:
    return bool(getattr(layer, "metadata", {}).get("iconmat_result"))
