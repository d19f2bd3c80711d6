"""napari-iconmat: in-context matting for napari, the command line and Python.

Importing this package loads neither napari, Qt nor torch; see
:mod:`napari_iconmat.core` for the Python API.
"""

__version__ = "0.1.0"
