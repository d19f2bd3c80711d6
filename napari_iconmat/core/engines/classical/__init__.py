"""The ``classical`` engine: weights-free, the default; every cue it uses lives here.

Modules, one cue each: :mod:`.appearance` (Lab colour models of object and
background), :mod:`.motion` (optical flow, background motion), :mod:`.keypoints`
(SIFT matches against the reference), :mod:`.segmentation` (graph cut, object
selection, thin parts), :mod:`.refit` (a cut refitted on the image's own colours),
:mod:`.temporal` (what carries from one frame to the next), :mod:`.filters`
(fast wide filters), :mod:`.memory` (freed heap handed back in long runs), and
:mod:`.engine` (the engine contract that wires them together). The matting
stage they feed is shared: :mod:`napari_iconmat.core.matting`.
"""
