"""Matting engines; each is one module registered in :mod:`napari_iconmat.core.registry`."""
