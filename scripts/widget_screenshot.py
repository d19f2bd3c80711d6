"""Make docs/images/widget.png: the grouped widget during a run on a DAVIS clip, its progress bar part-way.

Opens the first frames of a DAVIS sequence (frames/ + masks/), paints frame 0
from its mask as a user would, presses Propagate, and grabs the whole window
after a few frames, while the job is still running. Needs a display::

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/widget_screenshot.py \
        /work/shared/data/davis2016-dev/dog [OUT.png]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def main(sequence: str, out: str = "docs/images/widget.png", n_frames: int = 20, after: int = 6) -> None:
    import warnings

    warnings.filterwarnings("ignore", message="napari support for the PyQt5")  # no toast over the canvas
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from napari_iconmat._widget import MattingWidget
    from napari_iconmat.core.io import read_image

    folder = Path(sequence)
    names = sorted((folder / "frames").iterdir())[:n_frames]
    frames = np.stack([read_image(p) for p in names])
    mask0 = read_image(folder / "masks" / (names[0].stem + ".png")) > 127

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 820)
    image = viewer.add_image(frames, name=folder.name, rgb=True)
    viewer.dims.axis_labels = ("frame", "row", "column")
    _, widget = viewer.window.add_plugin_dock_widget("napari-iconmat", "In-context matting")
    assert isinstance(widget, MattingWidget) and widget.image_layer is image  # pre-selected
    app = QApplication.instance()
    labels = widget.new_prompt_layer()
    labels.data[0] = mask0.astype(np.uint8)
    widget._options.value = "working_size=320"
    widget._out.value = Path.home() / "mattes" / folder.name
    widget._formats.value = "png,rgba"
    viewer.dims.set_current_step(0, 0)
    worker = widget.propagate()
    seen = []
    worker.yielded.connect(lambda value: seen.append(value[0]))
    while len(seen) < after and widget.worker is not None:
        app.processEvents()
        time.sleep(0.01)
    viewer.dims.set_current_step(0, seen[-1])
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.hide()  # e.g. the PyQt5 deprecation warning: not part of the widget
    app.processEvents()
    shot = viewer.window._qt_window.grab().scaledToWidth(1000, Qt.SmoothTransformation)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_suffix(".tmp.png")
    shot.save(str(tmp), "PNG")
    from PIL import Image as PILImage

    # 256 colours keep the docs image small (< 300 KB)
    PILImage.open(tmp).convert("RGB").quantize(256).save(out, optimize=True)
    tmp.unlink()
    widget.cancel()
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.01)
    viewer.close()
    print(f"wrote {out} ({Path(out).stat().st_size // 1024} KB) after {len(seen)} frames")


if __name__ == "__main__":
    main(*sys.argv[1:3])
