"""napari-iconmat's engine: all matting logic, free of napari and Qt.

The public Python API::

    from napari_iconmat.core import make_engine, make_prompt, propagate
    from napari_iconmat.core.io import open_frames

    frames = open_frames("video.mp4")
    engine = make_engine("classical")
    query = engine.encode_reference(frames[0], make_prompt(mask))
    for index, matte in propagate(frames, query, engine, reference_index=0):
        ...  # matte.alpha: (H, W) float32 in [0, 1]
"""

from .engine import Engine, EngineStatus, FrameMatte
from .errors import CheckpointError, IconmatError, InputError, QueryMismatchError, WeightsNotFoundError
from .pipeline.export import export_mattes
from .pipeline.keyframes import Keyframes, QueryCache, matte_keyframes
from .pipeline.lazy_matte import matte_lazy
from .pipeline.propagate import plan_runs, propagate
from .pipeline.run import RunSummary, matte_sequence
from .prompt import Prompt, make_prompt
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
    "Keyframes",
    "Prompt",
    "QueryCache",
    "QueryMismatchError",
    "ReferenceQuery",
    "RunSummary",
    "WeightsNotFoundError",
    "engine_names",
    "engine_statuses",
    "export_mattes",
    "load_query",
    "make_engine",
    "matte_lazy",
    "make_prompt",
    "matte_keyframes",
    "matte_sequence",
    "plan_runs",
    "propagate",
]
