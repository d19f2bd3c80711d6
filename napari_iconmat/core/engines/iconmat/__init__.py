"""The IconMatting engine (In-Context Matting, CVPR 2024) on frozen Stable Diffusion 2.1 features.

Modules, one concept each: :mod:`.config` (settings, released defaults),
:mod:`.features` (frozen SD VAE + UNet), :mod:`.attention` (self-attention
recorder), :mod:`.decoder` (in-context fusion + detail-capture head),
:mod:`.model` (the networks), :mod:`.checkpoint` (strict load / inspect /
convert), :mod:`.geometry` (any image size to the square input and back),
:mod:`.engine` (the engine contract). Importing this package does not import torch.
"""
