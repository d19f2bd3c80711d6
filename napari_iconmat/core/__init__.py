"""napari-iconmat's engine: all matting logic, free of napari and Qt.

The public Python API::

    from napari_iconmat.core import open_frames, make_prompt, make_engine, propagate

    frames = open_frames("video.mp4")
    engine = make_engine("classical")
    query = engine.encode_reference(frames[0], make_prompt(mask))
    for index, matte in propagate(frames, query, engine, reference_index=0):
        ...  # matte.alpha: (H, W) float32 in [0, 1]
"""

from .engine import Engine, EngineStatus, FrameMatte
from .errors import CheckpointError, IconmatError, InputError, QueryMismatchError, WeightsNotFoundError
from .prompt import Prompt, make_prompt
from .propagate import plan_runs, propagate
from .reference import ReferenceQuery, load_query
from .registry import DEFAULT_ENGINE, engine_names, engine_statuses, make_engine

__all__ = [
    "DEFAULT_ENGINE",
    "CheckpointError",
    "Engine",
    "EngineStatus",
    "FrameMatte",
    "IconmatError",
    "InputError",
    "Prompt",
    "QueryMismatchError",
    "ReferenceQuery",
    "WeightsNotFoundError",
    "engine_names",
    "engine_statuses",
    "load_query",
    "make_engine",
    "make_prompt",
    "plan_runs",
    "propagate",
]
