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
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, ProgressBar, PushButton
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import notification_manager, show_error, show_info
from qtpy.QtWidgets import QComboBox, QGroupBox, QLabel, QSizePolicy, QVBoxLayout
from superqt import QCollapsible

from .core.errors import IconmatError, InputError
from .core.io.lazy import LazyFrames
from .core.io.readers import open_frames
from .core.pipeline.export import composite, iter_export
from .core.pipeline.keyframes import Keyframes, QueryCache, matte_keyframes
from .core.pipeline.propagate import DIRECTIONS, parse_range
from .core.prompt import PROMPT_KINDS, make_prompt
from .core.registry import check_engine_params, engine_names, engine_statuses, make_engine
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
    #: frame -> estimated foreground (H, W, 3) float32, kept with its alpha for the composite preview
    foregrounds: dict = field(default_factory=dict)
    #: frame -> fingerprint of a non-Labels prompt slice whose keyframe was removed (not re-added unchanged)
    removed: dict = field(default_factory=dict)
    #: frame -> the engine's confidence (0..1) in its latest matte, from engines that say
    confidence: dict = field(default_factory=dict)


#: backgrounds of the composite preview: 'checkerboard' or an RGB colour in [0, 1]
_BACKGROUNDS = {"checkerboard": "checkerboard", "white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "green": (0.0, 0.8, 0.2)}


def _confidence_words(confidence: dict) -> str:
    """'; object not found in frames 3, 5-7; unsure in frame 9' for the status line ('' when all is well)."""
    from napari_iconmat.core.pipeline.run import UNSURE, describe_frames

    lost = sorted(i for i, c in confidence.items() if c <= 0.0)
    unsure = sorted(i for i, c in confidence.items() if 0.0 < c < UNSURE)
    words = ""
    if lost:
        words += f"; object not found in {describe_frames(lost)} (alpha all zero)"
    if unsure:
        words += f"; unsure in {describe_frames(unsure)}: check them, or paint a correction there"
    return words


def _matting_steps(frames, engine, keyframes, plan, cache, with_foreground):
    """Worker body: one yield per frame matted, ``(index, alpha, foreground or None, confidence or None)``."""
    try:
        for index, matte in matte_keyframes(frames, engine, keyframes, plan, cache=cache, with_foreground=with_foreground):
            yield index, matte.alpha, matte.foreground if with_foreground else None, matte.confidence
    finally:
        if hasattr(frames, "close"):
            frames.close()


#: the widget's minimum width in pixels; no field asks for more (long lines wrap)
_DOCK_WIDTH = 300
#: combo boxes are sized by this many characters, not by their longest choice
_FIELD_MIN_CHARS = 8


def _wrap(widget) -> None:
    """Let a label wrap and never ask for more width than its dock gives (defect: the window blew up)."""
    native = widget.native
    label = native if isinstance(native, QLabel) else native.findChild(QLabel)
    if label is not None:
        label.setWordWrap(True)
        label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        label.setMinimumWidth(0)


def _narrow(widget) -> None:
    """A combo box sized by a few characters, not by its longest choice (a long layer name)."""
    box = widget.native if isinstance(widget.native, QComboBox) else widget.native.findChild(QComboBox)
    if box is not None:
        box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        box.setMinimumContentsLength(_FIELD_MIN_CHARS)


def _breakable(text: str) -> str:
    """``text`` with zero-width spaces after path separators, so a long path or option list can wrap."""
    for sep in ("/", "\\", "_", ",", "=", ";"):
        text = text.replace(sep, sep + "\u200b")
    return text


class MattingWidget(Container):
    """Dock widget: mark one frame, propagate, correct with keyframes, export.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer

    Notes
    -----
    The fields are grouped in the order of work: *1 Image & prompt*, *2 Engine*
    (options under "advanced"), *3 Propagate* (with a progress bar), *4 Correct*
    (keyframes, go to, remove), *5 Export*; a status line under them.

    Tests and scripts drive it without clicks: set ``image_layer``,
    ``prompt_layer`` (or call :meth:`new_prompt_layer`), the value of the
    option widgets, then call :meth:`propagate` / :meth:`export`, which return
    the started worker (or None when there is nothing to do).
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self._cache = QueryCache()
        self._sessions: dict[int, _Session] = {}
        self._engines: dict[str, Any] = {}
        self._started: dict = {"total": 0, "done": 0, "t0": time.perf_counter()}
        self._refreshing = False
        self.worker = None

        # 1 Image & prompt
        self._image = ComboBox(label="image", choices=self._image_choices, nullable=True)
        self._image.tooltip = "The image or T x H x W (x 3) stack to matte (follows the layer you select)"
        self._prompt = ComboBox(label="prompt", choices=self._prompt_choices, nullable=True)
        self._prompt.tooltip = "Labels painted on a frame (1 = object, 2 = background), or a soft mask / alpha layer"
        self._new_prompt = PushButton(text="New prompt layer")
        self._new_prompt.tooltip = "Add an empty Labels layer shaped like the image, in paint mode: 1 = object, 2 = background"
        self._prompt_kind = ComboBox(label="prompt reads as", choices=list(PROMPT_KINDS), value="auto")
        self._prompt_kind.tooltip = "auto: strokes of 2 make a scribble, else a mask; or force mask / scribble / trimap"
        # 2 Engine
        self._engine = ComboBox(label="engine", choices=engine_names())
        self._engine.tooltip = "Which engine mattes (classical needs no weights)"
        self._engine_state = Label(label="readiness", value="")
        self._engine_state.tooltip = "Whether the engine can run here, and what it needs"
        self._options = LineEdit(label="options", value="")
        self._options.tooltip = "KEY=VALUE pairs passed to the engine, e.g. working_size=320 (as --engine-option)"
        # 3 Propagate
        self._direction = ComboBox(label="direction", choices=list(DIRECTIONS), value="both")
        self._direction.tooltip = "both: each frame from its nearest keyframe; forward / backward: only keyframes before / after"
        self._range = LineEdit(label="frames", value="")
        self._range.tooltip = "A:B (Python slice bounds); empty = all frames"
        self._with_composite = CheckBox(text="composite preview", value=False)
        self._with_composite.tooltip = "Show the estimated foreground over a new background (no re-matting)"
        self._background = ComboBox(label="composite over", choices=list(_BACKGROUNDS), value="checkerboard")
        self._background.tooltip = "Background of the composite preview; changes at once"
        self._propagate = PushButton(text="Propagate")
        self._propagate.tooltip = "Make the current frame a keyframe (when painted) and matte every frame not up to date"
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._cancel.tooltip = "Stop after the frame in progress; Propagate again mattes only the frames left"
        self._progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self._progress.tooltip = "Frames done of this job"
        self._progress_text = Label(label="", value="")
        self._progress_text.tooltip = "Frames done / total, frames per second, time left"
        # 4 Correct
        self._keyframes_label = Label(label="keyframes", value="none")
        self._keyframes_label.tooltip = "The keyframes of this image, and how many frames are matted"
        self._goto = ComboBox(label="go to keyframe", choices=self._keyframe_choices, nullable=True)
        self._goto.tooltip = "Move the slider to a keyframe"
        self._remove = PushButton(text="Remove keyframe on this frame")
        self._remove.tooltip = "Stop using this frame as a keyframe and clear its strokes (Ctrl+Z on the prompt layer undoes)"
        # 5 Export
        self._out = FileEdit(label="folder", mode="d")
        self._out.tooltip = "Folder to write alpha/NNNNN.png, rgba/, alpha.tif and iconmat-run.json into"
        self._formats = LineEdit(label="formats", value="png")
        self._formats.tooltip = "any of png, png16, rgba, tiff, comma-separated (as iconmat matte --format)"
        self._export = PushButton(text="Export")
        self._export.tooltip = "Write the frames matted so far, in the layout of iconmat matte"
        self._status = Label(label="", value="")
        self._status.tooltip = "What the widget did last, or what went wrong"

        buttons = Container(widgets=[self._propagate, self._cancel], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        advanced = Container(widgets=[self._options], labels=True)
        self._groups = [
            ("1 Image && prompt", [self._image, self._prompt, self._new_prompt, self._prompt_kind]),
            ("2 Engine", [self._engine, self._engine_state]),
            ("3 Propagate", [self._direction, self._range, self._with_composite, self._background, buttons,
                             self._progress, self._progress_text]),
            ("4 Correct", [self._keyframes_label, self._goto, self._remove]),
            ("5 Export", [self._out, self._formats, self._export]),
        ]  # fmt: skip
        self._boxes = {}
        for title, widgets in self._groups:
            group = Container(widgets=widgets, labels=True)
            group.margins = (2, 2, 2, 2)
            self.append(group)
            box = QGroupBox(title)  # "&&" shows one "&" (a single one would be a shortcut)
            box.setToolTip(
                {"1": "Choose the image and paint the object on one frame", "2": "Choose the engine that mattes",
                 "3": "Matte every frame from the keyframes", "4": "Fix a frame: paint it and Propagate again",
                 "5": "Write the mattes to a folder"}[title[0]]
            )  # fmt: skip
            inner = QVBoxLayout(box)
            inner.setContentsMargins(4, 4, 4, 4)
            inner.addWidget(group.native)  # the group moves into its box (the box takes its place below)
            self.native.layout().addWidget(box)
            self._boxes[title[0]] = (box, group)
            if title[0] == "2":
                self._advanced = QCollapsible("advanced")
                self._advanced.setToolTip("Engine options")
                self._advanced.addWidget(advanced.native)
                inner.addWidget(self._advanced)
                self._advanced_container = advanced
        self.append(self._status)
        for widget in (self._engine_state, self._progress_text, self._keyframes_label, self._status):
            _wrap(widget)
        for widget in (self._image, self._prompt, self._prompt_kind, self._engine, self._direction, self._background, self._goto):
            _narrow(widget)
        for widget in (self._options, self._range, self._formats, self._out):
            widget.native.setMinimumWidth(0)
        self.native.setMinimumWidth(_DOCK_WIDTH)  # wide enough to read; labels wrap within it

        self._new_prompt.changed.connect(self.new_prompt_layer)
        self._propagate.changed.connect(self.propagate)
        self._cancel.changed.connect(self.cancel)
        self._remove.changed.connect(self.remove_keyframe)
        self._export.changed.connect(self.export)
        self._engine.changed.connect(self._show_engine_state)
        self._image.changed.connect(self._show_keyframes)
        self._goto.changed.connect(self._go_to_keyframe)
        self._with_composite.changed.connect(self._update_composite)
        self._background.changed.connect(self._update_composite)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self.viewer.layers.selection.events.active.connect(self._follow_selection)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._show_engine_state()
        self._preselect()

    def reset_choices(self, *_args) -> None:
        super().reset_choices()
        self._advanced_container.reset_choices()

    # ------------------------------------------------------------ layer choices
    def _image_choices(self, _widget=None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image) and not _is_result(layer)]

    def _prompt_choices(self, _widget=None) -> list[tuple[str, Any]]:
        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, Labels) or (isinstance(layer, Image) and not layer.rgb and not _is_result(layer))
        ]

    def _keyframe_choices(self, _widget=None) -> list[tuple[str, int]]:
        try:
            session = self._session(create=False)
        except IconmatError:
            session = None
        return [] if session is None else [(f"frame {i}", i) for i in session.keyframes.indices]

    def _layers_changed(self, *_args) -> None:
        self.reset_choices()
        self._preselect()

    def _preselect(self) -> None:
        """With no image chosen, choose the active image layer, else the only (or last) one."""
        if self._image.value is not None:
            return
        choices = [layer for _, layer in self._image_choices()]
        active = self.viewer.layers.selection.active
        if active in choices:
            self._image.value = active
        elif choices:
            self._image.value = choices[-1]

    def _follow_selection(self, *_args) -> None:
        """Selecting an image layer chooses it; selecting a Labels layer makes it the prompt."""
        layer = self.viewer.layers.selection.active
        if layer is None or self.worker is not None or layer is self.prompt_layer:
            return
        if isinstance(layer, Image) and not _is_result(layer):
            self.image_layer = layer
        elif isinstance(layer, Labels):
            self.prompt_layer = layer

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
            text = ""
        elif status.ready:
            text = f"ready (needs {status.needs})"
        else:
            text = f"not ready: needs {status.needs}; {status.detail}"
        self._engine_state.value = _breakable(text)
        self._engine_state.native.setToolTip(text)

    def _make_engine(self):
        """The engine with the options typed in; InputError with the core's one line on a bad option."""
        name = self._engine.value
        params = parse_engine_options(self._options.value)
        check_engine_params(name, params)  # before any work: 'engine classical: working_size must be ...'
        status = engine_statuses()[name]
        if not status.ready:
            raise InputError(f"engine {name!r} is not ready: it needs {status.needs} ({status.detail})")
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
            session = self._sessions[id(layer)] = _Session(layer, Keyframes(n, blend=True))  # both sides between keyframes
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
        self._activate_prompt()  # adding a layer selects it: a drag would paint nothing
        return layer

    def _activate_prompt(self) -> None:
        """Keep the prompt layer selected (a Labels layer in paint mode), so the next drag paints a correction."""
        layer = self.prompt_layer
        if layer is None or layer not in self.viewer.layers:
            return
        self.viewer.layers.selection.active = layer
        if isinstance(layer, Labels) and layer.mode not in ("paint", "erase", "fill"):
            layer.mode = "paint"

    # ------------------------------------------------------------ propagate
    def propagate(self, *_args):
        """Make the current frame a keyframe (when painted) and matte every frame that is not up to date.

        Returns the started worker, or None when nothing had to be done or an
        error was shown.
        """
        if self.worker is not None:
            return self._fail(InputError("a job is running: wait for it or press Cancel"))
        note = ""
        try:
            engine = self._make_engine()  # bad options fail here, before anything changes
            layer = self._require_image()
            session = self._session()
            keys = session.keyframes
            n, size, _ = self._geometry(layer)
            index = self.current_frame()
            prompt = self._prompt_at(index, n, size)
            if prompt is not None and session.removed.get(index) == _fingerprint(prompt):
                prompt, note = None, f" (frame {index} was removed as a keyframe: change its prompt to use it again)"
            if prompt is not None:
                session.removed.pop(index, None)
                keys.set(index, self._frame(layer, index), prompt)
            elif not len(keys):
                raise InputError(f"nothing is painted on frame {index}: paint the object there (label 1), then Propagate")
            keys.direction = self._direction.value
            frame_range = parse_range(self._range.value.strip() or None, n)
            with_composite = bool(self._with_composite.value)
            if not self._has_result(session, "alpha"):
                keys.forget()  # the alpha layer was deleted (or is new): every frame must be matted into it
                session.foregrounds.clear()
            plan = keys.plan(engine, frame_range=frame_range)
        except IconmatError as exc:
            return self._fail(exc)

        alpha = self._result_layer(session, "alpha")
        if with_composite and not self._has_result(session, "composite"):
            self._result_layer(session, "composite")
            self._update_composite()  # frames matted before: from their kept foregrounds, or once shown
        if plan.stale:
            for frame in plan.stale:
                self._store(alpha, frame, 0.0)
                session.foregrounds.pop(frame, None)
                if self._has_result(session, "composite"):
                    self._store(session.composite, frame, 0)
            keys.forget(plan.stale)
            alpha.refresh()
        self._show_keyframes()
        if plan.total == 0:
            self._status.value = f"all frames up to date (keyframes {keys.describe()}){note}"
            self._activate_prompt()
            return None

        frames = self._frame_source(layer)
        worker = thread_worker(
            _matting_steps, progress={"total": plan.total, "desc": f"iconmat: matting {plan.total} frames"},
            ignore_errors=True,
        )(frames, engine, keys, plan, self._cache, with_composite)  # fmt: skip
        worker.yielded.connect(lambda value: self._on_frame(session, value))
        worker.aborted.connect(lambda: self._on_stopped(session, cancelled=True))
        worker.returned.connect(lambda _value: self._on_stopped(session, cancelled=False))
        merged = ", each chain conditioned on all of them" if plan.conditioning else ""  # sam2: one memory of every keyframe
        self._begin(worker, plan.total, f"matting {plan.total} frames from keyframes {keys.describe()}{merged}{note}")
        worker.start()
        return worker

    def _on_frame(self, session: _Session, value) -> None:
        index, alpha, foreground, confidence = value
        if confidence is None:
            session.confidence.pop(index, None)
        else:
            session.confidence[index] = float(confidence)
        self._store(session.alpha, index, alpha)
        session.alpha.refresh()
        if foreground is not None:
            session.foregrounds[index] = foreground
        else:
            session.foregrounds.pop(index, None)  # an older estimate belongs to an older alpha
        if self._with_composite.value and self._has_result(session, "composite"):
            self._compose(session, index)
            session.composite.refresh()
        self._step(f"matted frame {index}")
        self._show_keyframes()

    @staticmethod
    def _store(layer: Image, index: int, value) -> None:
        if layer.data.ndim == 2 or (layer.rgb and layer.data.ndim == 3):
            layer.data[...] = value
        else:
            layer.data[index] = value

    def _on_stopped(self, session: _Session, *, cancelled: bool) -> None:
        done, total = self._started["done"], self._started["total"]
        text = f"cancelled after {done} of {total} frames" if cancelled else f"matted {done} frames"
        self._status.value = text + _confidence_words(session.confidence)
        self._show_keyframes()

    # ------------------------------------------------------------ composite preview
    def _compose(self, session: _Session, index: int) -> bool:
        """Write frame ``index`` of the composite from its kept foreground; False when it has none yet."""
        foreground = session.foregrounds.get(index)
        if foreground is None:
            return False
        alpha = session.alpha.data if session.alpha.data.ndim == 2 else session.alpha.data[index]
        preview = composite(foreground, alpha, foreground=foreground, background=_BACKGROUNDS[self._background.value])
        self._store(session.composite, index, preview)
        return True

    def _update_composite(self, *_args) -> None:
        """Composite preview on, or a new background: recompose from the kept foregrounds, matting nothing."""
        if not self._with_composite.value:
            return
        try:
            session = self._session(create=False)
        except IconmatError:
            return
        if session is None or not self._has_result(session, "alpha"):
            return
        self._result_layer(session, "composite")
        for index in sorted(session.foregrounds):
            self._compose(session, index)
        self._on_step()
        session.composite.refresh()

    def _on_step(self, *_args) -> None:
        """With the composite on, estimate the foreground of the frame shown once (from its alpha), if missing."""
        if not self._with_composite.value or self.worker is not None:
            return
        try:
            session = self._session(create=False)
            index = self.current_frame()
        except IconmatError:
            return
        if session is None or not self._has_result(session, "alpha") or not self._has_result(session, "composite"):
            return
        if index not in session.keyframes.done or index in session.foregrounds:
            return
        from .core.frames import to_rgb_float
        from .core.matting.closed_form import estimate_foreground

        alpha = session.alpha.data if session.alpha.data.ndim == 2 else session.alpha.data[index]
        session.foregrounds[index] = estimate_foreground(to_rgb_float(self._frame(session.layer, index)), alpha)
        self._compose(session, index)
        session.composite.refresh()

    # ------------------------------------------------------------ keyframes
    def remove_keyframe(self, *_args) -> None:
        """Stop using the current frame as a keyframe and clear its strokes (undoable on the prompt layer).

        A prompt that is not a Labels layer is left as it is; that frame is not
        made a keyframe again until its prompt changes.
        """
        try:
            if self.worker is not None:
                raise InputError("a job is running: wait for it or press Cancel")
            session = self._session()
            if session is None:
                raise InputError("choose an image layer first")
            index = self.current_frame()
            session.keyframes.remove(index)
        except IconmatError as exc:
            self._fail(exc)
            return
        how = self._clear_prompt(session, index)
        self._show_keyframes()
        self._status.value = f"keyframe {index} removed{how}: press Propagate to re-matte its frames"

    def _clear_prompt(self, session: _Session, index: int) -> str:
        layer = self.prompt_layer
        if layer is None or layer not in self.viewer.layers:
            return ""
        n, size, _ = self._geometry(session.layer)
        data = layer.data
        if isinstance(layer, Labels):
            if tuple(data.shape) == (n, *size):
                where = np.nonzero(np.asarray(data[index]))
                indices = (np.full_like(where[0], index), *where)
            else:
                indices = np.nonzero(np.asarray(data))
            if indices[0].size:
                layer.data_setitem(indices, 0)  # one step of the layer's undo history
            return f" and its strokes cleared (Ctrl+Z on {layer.name!r} brings them back)"
        prompt = self._prompt_at(index, n, size)
        if prompt is not None:
            session.removed[index] = _fingerprint(prompt)
        return f" ({layer.name!r} is kept: frame {index} is used again once its prompt changes)"

    def _go_to_keyframe(self, *_args) -> None:
        index = self._goto.value
        if self._refreshing or index is None:
            return
        try:
            layer = self._require_image()
            _, _, stacked = self._geometry(layer)
        except IconmatError:
            return
        if stacked:
            world = layer.data_to_world([index] + [0] * (layer.ndim - 1))
            self.viewer.dims.set_point(0, world[0])

    def _show_keyframes(self, *_args) -> None:
        try:
            session = self._session(create=False)
        except IconmatError:
            session = None
        self._refreshing = True
        try:
            self._goto.reset_choices()
        finally:
            self._refreshing = False
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
        worker = thread_worker(
            _export_steps, progress={"total": len(indices), "desc": "iconmat: exporting"}, ignore_errors=True
        )(steps, frames)
        worker.yielded.connect(self._on_exported_frame)
        worker.returned.connect(lambda outputs: self._on_exported(outputs))
        worker.aborted.connect(lambda: setattr(self._status, "value", "export cancelled"))
        self._begin(worker, len(indices), f"exporting {len(indices)} frames to {out}")
        worker.start()
        return worker

    def _on_exported_frame(self, index: int) -> None:
        self._step(f"wrote frame {index}")

    def _on_exported(self, outputs: dict) -> None:
        where = ", ".join(f"{k}: {v}" for k, v in outputs.items())
        self._status.value = f"exported {self._started['done']} frames ({where})"
        show_info(f"iconmat: exported {self._started['done']} frames to {self._out.value}")

    # ------------------------------------------------------------ worker plumbing
    def _begin(self, worker, total: int, text: str) -> None:
        """Take ``worker`` as the running job: its errors go to :meth:`_on_error` only (one message, no re-raise)."""
        try:
            worker.errored.disconnect(worker._relay_error)  # napari's own toast: ours is the one message
        except (AttributeError, TypeError, RuntimeError):
            pass
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._started = {"total": total, "done": 0, "t0": time.perf_counter()}
        self._progress.max = max(1, total)
        self._progress.value = 0
        self._progress_text.value = f"0/{total} frames"
        self._status.value = text  # replaces any earlier error
        for button in (self._propagate, self._remove, self._export, self._new_prompt):
            button.enabled = False
        self._cancel.enabled = True

    def _step(self, text: str) -> None:
        """One frame of the running job done: the progress bar, frames/s and the time left."""
        started = self._started
        started["done"] += 1
        done, total = started["done"], started["total"]
        elapsed = max(1e-6, time.perf_counter() - started["t0"])
        rate = done / elapsed
        left = (total - done) / rate if rate > 0 else 0.0
        self._progress.value = min(done, self._progress.max)
        self._progress_text.value = f"{done}/{total} frames, {rate:.1f} frames/s, ETA {_duration(left)}"
        self._status.value = f"{text} ({done}/{total})"

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
        self._activate_prompt()

    def _on_error(self, exc: BaseException) -> None:
        """An error inside a job: one line in the status and one notification; nothing is re-raised."""
        if isinstance(exc, (IconmatError, OSError)):
            self._fail(exc)
            return
        # a bug, not the user's doing: one notification that keeps its traceback, no re-raise (that aborted napari)
        self._status.value = f"failed: {type(exc).__name__}: {exc}"
        notification_manager.receive_error(type(exc), exc, exc.__traceback__)

    def _fail(self, exc: BaseException) -> None:
        text = str(exc) if isinstance(exc, IconmatError) else f"{type(exc).__name__}: {exc}"
        self._status.value = text
        show_error(text)
        return None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def _fingerprint(prompt) -> str:
    import hashlib

    return hashlib.sha1(prompt.to_bytes()).hexdigest()


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
