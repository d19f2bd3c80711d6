"""Tiny random IconMatting networks shared by the iconmat tests (built once per module)."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def tiny_config():
    from napari_iconmat.core.engines.iconmat.config import IconMattingConfig

    return IconMattingConfig.tiny()


@pytest.fixture(scope="module")
def tiny_model(tiny_config):
    from napari_iconmat.core.engines.iconmat.model import InContextMatting

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = InContextMatting(tiny_config)
    return model.eval()


@pytest.fixture
def tiny_inputs(tiny_config):
    """Reference image, mask (a 32x32 square: four full 16x16 cells) and target, batch 2."""
    side = tiny_config.resolution
    generator = torch.Generator().manual_seed(1)
    reference = torch.rand(2, 3, side, side, generator=generator) * 2 - 1
    target = torch.rand(2, 3, side, side, generator=generator) * 2 - 1
    mask = torch.zeros(2, 1, side, side)
    mask[:, :, 16:48, 16:48] = 1.0
    return reference, mask, target
