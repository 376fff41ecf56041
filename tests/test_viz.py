"""Tests of deeptree.viz: matplotlib figures on hand-built arrays, and napari renderings
(under Xvfb, as `make test` runs them)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from deeptree import viz

needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"),
    reason="napari needs a display: run under xvfb-run (make test does)",
)


def _tube(shape=(20, 20, 30)):
    mask = np.zeros(shape, bool)
    mask[8:12, 8:12, 2:28] = True
    return mask


def test_comparison_labels_on_a_hand_built_case():
    gt = np.zeros((1, 1, 4), bool)
    pred = np.zeros((1, 1, 4), bool)
    gt[0, 0, :2] = True  # voxel 0: TP, voxel 1: FN
    pred[0, 0, [0, 2]] = True  # voxel 2: FP, voxel 3: background
    np.testing.assert_array_equal(viz.comparison_labels(pred, gt)[0, 0], [1, 2, 3, 0])
    assert viz.COMPARISON_COLORS == {1: viz.COLORS["tp"], 2: viz.COLORS["fn"], 3: viz.COLORS["fp"]}


def test_paper_colours():
    from matplotlib.colors import to_rgb

    red, blue, green = (to_rgb(viz.COLORS[k]) for k in ("tp", "fn", "fp"))
    assert red[0] > 0.8 and red[1] < 0.3 and red[2] < 0.3
    assert blue[2] > 0.6 and blue[0] < 0.4
    assert green[1] > 0.6 and green[0] < 0.4


def test_show_planes_draws_three_panels_with_overlay_at_the_mask():
    ct = np.full((20, 20, 30), -850.0)
    mask = np.zeros((20, 20, 30), bool)
    mask[8:11, 8:11, 2:27] = True  # centre (9, 9, 14)
    fig = viz.show_planes(ct, (1, 1, 2), overlays={"airway": (mask, "red")}, title="t")
    assert len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["axial (slice 14)", "coronal (slice 9)", "sagittal (slice 9)"]  # mask centre
    # the coronal panel's aspect follows the spacing (k is 2 mm, i is 1 mm)
    assert fig.axes[1].get_aspect() == pytest.approx(2.0)


def test_mip_and_label_cmap():
    fig = viz.mip(_tube(), (1, 1, 1), axis=1)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (30, 20) and image.max() == 1
    cmap = viz.label_cmap({1: "red", 3: "blue"})
    assert cmap(0)[3] == 0 and cmap(1)[:3] == pytest.approx((1, 0, 0))


def test_is_blank():
    assert viz.is_blank(np.zeros((10, 10, 4), np.uint8))
    image = np.zeros((10, 10, 4), np.uint8)
    image[2:5, 2:5, 0] = 255
    assert not viz.is_blank(image)


def test_crop_layers_keeps_the_labels_and_crops_images_alike():
    mask = _tube((40, 40, 40))
    ct = np.random.default_rng(0).normal(size=(40, 40, 40))
    cropped = viz.crop_layers([viz.MaskLayer("m", mask), viz.ImageLayer("ct", ct)], margin=2)
    assert cropped[0].labels.sum() == mask.sum()
    assert cropped[0].labels.shape == cropped[1].volume.shape == (8, 8, 30)


@needs_display
@pytest.mark.gui
def test_render_3d_is_not_blank_and_shows_the_mask_colour():
    picture = viz.render_3d(
        [viz.MaskLayer("tube", _tube(), "#ff0000")], (1.0, 1.0, 1.0), size=(300, 400)
    )
    assert picture.dtype == np.uint8 and picture.shape[2] == 4
    assert not viz.is_blank(picture)
    rgb = picture[..., :3].astype(int)
    reddish = (rgb[..., 0] > 100) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    assert reddish.mean() > 0.005, "the red tube is visible"
