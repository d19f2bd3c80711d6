"""The ``sam2`` engine: SAM 2 / EdgeTAM streaming video memory (Hugging Face transformers) + our matting stage.

Modules: :mod:`.preprocess` (the processors' image, mask, point and logit maths
without torchvision), :mod:`.model` (loading, the tiny test configuration, one
frame against a bounded memory), :mod:`.engine` (the engine). Importing this
package or :mod:`.engine` does not import torch; building the engine does.
"""
