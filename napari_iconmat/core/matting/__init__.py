"""The matting stage every engine shares: a coarse mask or trimap and an image in, a soft alpha out.

Modules: :mod:`.trimap` (trimaps from masks and alphas), :mod:`.closed_form`
(the closed-form solver and foreground estimation), :mod:`.refiners` (the
refiners engines choose by name: ``closed-form`` or ``vitmatte``). Importing
this package imports neither pymatting nor torch.
"""
