"""Measuring mattes: metrics, ground-truth data, contact sheets and the benchmark.

Modules: :mod:`.metrics` (SAD, MSE, Grad, Conn, dtSSD, MESSDdt, IoU),
:mod:`.evaluate` (predicted folders scored against ground truth),
:mod:`.synth` (synthetic sequences with exact alpha), :mod:`.sheet`
(frame | alpha | composite contact sheets), :mod:`.bench` (the runner behind
``iconmat bench``).
"""
