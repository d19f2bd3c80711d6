"""Make docs/napari_screenshot.png: the plugin's sample, a first propagation, a correction keyframe.

Drives the widget as a user would (open the sample, paint frame 0, Propagate,
paint a correction on frame 14, Propagate again) and saves the whole window.
Needs a display::

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/napari_screenshot.py [OUT.png]
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main(out: str = "docs/napari_screenshot.png") -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_iconmat._widget import MattingWidget

    viewer = napari.Viewer(show=False)
    viewer.window.resize(1400, 700)
    frames, truth = viewer.open_sample("napari-iconmat", "sequence")
    viewer.dims.axis_labels = ("frame", "row", "column")
    _, widget = viewer.window.add_plugin_dock_widget("napari-iconmat", "In-context matting")
    assert isinstance(widget, MattingWidget)
    app = QApplication.instance()

    def wait():
        while widget.worker is not None:
            app.processEvents()
            time.sleep(0.01)

    widget.image_layer = frames
    labels = widget.new_prompt_layer()
    for index in (0, 14):  # the first mark, then a correction where the matte had drifted
        labels.data[index] = (truth.data[index] > 0.5).astype(np.uint8)
        viewer.dims.set_current_step(0, index)
        widget.propagate()
        wait()
    labels.visible = False
    widget._formats.value = "png,rgba"
    viewer.dims.set_current_step(0, 15)
    viewer.reset_view()
    viewer.camera.zoom *= 1.25
    viewer.screenshot(path=out, canvas_only=False)
    viewer.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
