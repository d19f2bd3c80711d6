"""The ``icmp`` engine (In-Context Matting Pipeline): DINOv2 correspondence, SAM, pseudo-trimap, ViTMatte.

Modules: :mod:`.correspondence` (DINOv2 features, prompt points, the matching
rule), :mod:`.masks` (SAM), :mod:`.trimap` (pseudo-trimap), :mod:`.engine`
(the engine). Importing this package imports torch and transformers.
"""
