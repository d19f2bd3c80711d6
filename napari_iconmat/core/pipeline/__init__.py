"""The main job and what drives an engine over frames.

Modules: :mod:`.propagate` (stream frames through an engine, forward and
backward from the reference), :mod:`.run` (the whole job behind ``iconmat
matte``: read, matte, write, summarise), :mod:`.resume` (continuing a stopped
run), :mod:`.keyframes` (several references, each frame matted from its
nearest), :mod:`.export` (mattes already in memory written out),
:mod:`.lazy_matte` (lazy dask mattes), :mod:`.cluster` (many inputs, Dask
workers). Engines are reached only through :mod:`napari_iconmat.core.registry`.
"""
