"""Hue-tolerant colour models, refits on an image's own cut, and holes."""

import cv2
import numpy as np

from napari_iconmat.core.engines.classical.appearance import ColourModel, fit_colour_model, hue_tolerant, lab_bins, rotate_hue
from napari_iconmat.core.engines.classical.refit import fill_holes_like, holes, refit_segmentation


def _hsv_image(hues, shape=(40, 40)):
    """(H, W, 3) float32 RGB image of one saturated colour per hue (degrees) in vertical stripes."""
    hsv = np.zeros((*shape, 3), np.uint8)
    stripes = np.array_split(np.arange(shape[1]), len(hues))
    for hue, cols in zip(hues, stripes):
        hsv[:, cols] = (int(hue / 2) % 180, 200, 200)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32) / 255.0


def _model(fg_hue, bg_hue):
    bins = lab_bins(_hsv_image([fg_hue, bg_hue]))
    left = np.zeros(bins.shape, bool)
    left[:, :20] = True
    return fit_colour_model(bins, left, ~left)


def test_rotate_hue_keeps_mass_and_turns_back():
    model = _model(330, 120)
    turned = rotate_hue(model.foreground, 30)
    assert abs(float(turned.sum()) - 1.0) < 1e-5
    assert not np.allclose(turned, model.foreground, atol=1e-4)
    back = rotate_hue(turned, -30)
    assert np.abs(back - model.foreground).sum() < 0.35  # interpolation blurs a little


def test_a_hue_shifted_variant_is_object_for_the_tolerant_model_only():
    model = _model(330, 120)  # pink object on green
    variant = lab_bins(_hsv_image([10]))  # the object 40 degrees further round, in red-orange
    plain = model.log_odds(variant)
    tolerant = ColourModel(hue_tolerant(model.foreground, 60), model.background).log_odds(variant)
    assert plain.mean() < 0 < tolerant.mean()
    # the background colour stays background
    green = lab_bins(_hsv_image([120]))
    assert ColourModel(hue_tolerant(model.foreground, 60), model.background).log_odds(green).mean() < 0


def test_holes_are_filled_only_when_the_reference_has_none():
    ring = np.zeros((40, 40), bool)
    ring[5:35, 5:35] = True
    ring[15:25, 15:25] = False
    assert holes(ring).sum() == 100
    solid = np.zeros((40, 40), bool)
    solid[8:30, 8:30] = True
    assert fill_holes_like(ring, solid)[15:25, 15:25].all()
    assert not fill_holes_like(ring, ring)[15:25, 15:25].any()
    # a notch open to the border is no hole
    notch = solid.copy()
    notch[:20, 18:20] = False
    assert fill_holes_like(notch, solid).sum() == notch.sum()


def test_gaps_between_strands_of_the_reference_are_no_holes():
    """A body with a comb of 1 px strands joined at their tips: the gaps between strands are
    enclosed, yet the object has no hole; a ring with a thick rim still has one."""
    furry = np.zeros((80, 80), bool)
    furry[20:60, 20:50] = True
    furry[20:60, 50:66:2] = True  # strands, one pixel apart
    furry[20:22, 50:66] = furry[58:60, 50:66] = True  # joined at both ends: the gaps are enclosed
    assert holes(furry).sum() > 0.01 * furry.sum()
    ring = np.zeros((40, 40), bool)
    ring[5:35, 5:35] = True
    ring[15:25, 15:25] = False
    assert fill_holes_like(ring, furry)[15:25, 15:25].all()
    thick_ring = np.zeros((80, 80), bool)
    thick_ring[10:70, 10:70] = True
    thick_ring[30:50, 30:50] = False
    assert not fill_holes_like(ring, thick_ring)[15:25, 15:25].any()


def test_refit_recovers_object_colours_the_prior_does_not_know():
    """A two-colour object; the prior knows one colour; its own cut teaches the other."""
    rng = np.random.default_rng(0)
    hsv = np.zeros((60, 80, 3), np.uint8)
    hsv[...] = (60, 120, 90)  # olive background
    hsv[15:45, 20:40] = (160, 200, 220)  # pink half of the object (known to the prior)
    hsv[15:45, 40:60] = (105, 200, 220)  # blue half (unknown)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32) / 255.0
    rgb = np.clip(rgb + rng.normal(0, 0.01, rgb.shape).astype(np.float32), 0, 1)
    bins = lab_bins(rgb)
    known = np.zeros((60, 80), bool)
    known[15:45, 20:40] = True
    background = np.ones((60, 80), bool)
    background[10:50, 15:65] = False
    prior = fit_colour_model(bins, known, background)
    # the object as a whole is what the first cut found, but for a few columns of the blue half
    first = known.copy()
    first[15:45, 40:44] = True
    mask, log_odds = refit_segmentation(
        rgb, bins, first, prior, 0.0, colour_weight=1.0, smoothness=3.0, area_fraction=0.125, touches_border=False
    )
    truth = np.zeros((60, 80), bool)
    truth[15:45, 20:60] = True
    assert log_odds is not None and log_odds.shape == (60, 80)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.9
