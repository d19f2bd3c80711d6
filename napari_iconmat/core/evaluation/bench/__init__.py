"""The benchmark runner behind ``iconmat bench``.

:func:`run_bench` mattes every benchmark folder with every engine and scores
the result against the ground truth, beside three baselines computed in the
same run:

* ``copy-reference``: the reference mask copied to every frame (resized with
  nearest neighbour when sizes differ): what no tracking at all scores;
* ``<engine>-coarse``: the engine's own binary mask before matting
  (:attr:`FrameMatte.coarse`), taken from the same propagation run;
* ``gt-trimap-solver``: the closed-form solver given the ground-truth trimap
  (``solve_alpha(frame, trimap_from_alpha(gt))``), an upper bound for engines
  that matte with that solver (folders with soft ground truth only).

Three folder layouts are recognised (see :func:`detect_layout`):

==========  ====================================================  =========================
layout      folder                                                scored
==========  ====================================================  =========================
synth       ``frames/ alpha/ reference_mask.png reference.json``   SAD MSE Grad Conn (whole
            (:func:`~napari_iconmat.core.evaluation.synth.write_synth`)       image), dtSSD (videos), IoU
davis       ``<seq>/frames/*.jpg|png`` + ``<seq>/masks/*.png``,    IoU of alpha > 0.5 vs the
            or one ``<seq>`` folder holding frames/ and masks/    mask, mean per sequence
icm57       ``image/ alpha/ [trimap/]`` + ``ICM57.json`` (or one   SAD MSE Grad Conn, whole
            ``*.json``) mapping image name -> class, sub_class,    image and trimap unknown
            HalfOrFull                                            region
==========  ====================================================  =========================

The reference frame itself is never scored. Frames are streamed: a run holds
the current frame, its ground truth, the previous frame's alphas (for dtSSD)
and a few down-scaled worst frames for :meth:`BenchReport.contact_sheet`.
"""

from .layouts import LAYOUTS, davis_sequences, detect_layout
from .report import BenchReport, check_targets
from .runner import run_bench

__all__ = ["BenchReport", "LAYOUTS", "check_targets", "davis_sequences", "detect_layout", "run_bench"]
