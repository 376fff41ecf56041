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


def test_show_planes_colorbar_has_its_label_and_the_window():
    h = np.linspace(0.0, 20.0, 20 * 20 * 30).reshape(20, 20, 30)
    fig = viz.show_planes(h, window=(0, 12), cmap="viridis", colorbar="H (voxels)")
    assert len(fig.axes) == 4  # three planes and the colour bar
    bar = fig.axes[3]
    assert bar.get_ylabel() == "H (voxels)"
    assert bar.get_ylim() == pytest.approx((0, 12))
    assert len(viz.show_planes(h).axes) == 3  # none by default


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


# --------------------------------------------------------------------------------------------
# a hand-built case: a tube along k broken in the middle, with a false-positive blob
# --------------------------------------------------------------------------------------------
def _broken_case(shape=(24, 24, 40)):
    gt = np.zeros(shape, np.uint8)
    gt[10:14, 10:14, 4:36] = 1
    pred = gt.copy()
    pred[:, :, 18:22] = 0  # a gap of 4 slices: false negatives, and two components
    pred[2:4, 2:4, 30:32] = 1  # false positives
    anatomy = np.zeros(shape, np.uint8)
    anatomy[gt == 1] = 3
    anatomy[:, :, 26:][gt[:, :, 26:] == 1] = 1
    anatomy[:, :, 14:26][gt[:, :, 14:26] == 1] = 2
    ct = np.where(gt == 1, -1000.0, -800.0).astype(np.float32)
    return ct, gt, pred, anatomy


def test_show_planes_with_label_overlays_draws_a_legend_per_class():
    ct, gt, pred, anatomy = _broken_case()
    overlays = viz.case_overlays(gt, pred, anatomy)
    assert list(overlays) == ["anatomy", "comparison"]
    labels, colors, names = overlays["comparison"]
    np.testing.assert_array_equal(labels, viz.comparison_labels(pred, gt))
    assert colors == viz.COMPARISON_COLORS and names[2] == "false negative"
    fig = viz.show_planes(ct, (1, 1, 1), overlays=overlays, index=(11, 11, 20))
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "trachea + main bronchi",
        "bronchi > 2 mm",
        "bronchi <= 2 mm",
        "true positive",
        "false negative",
        "false positive",
    ]
    # the axial slice 20 lies in the gap: its overlay pixels are the false-negative blue
    # over the anatomy class 2 colour (the comparison is drawn last, on top)
    top = fig.axes[0].images[-1].get_array()
    from matplotlib.colors import to_rgba

    assert tuple(top[11, 11]) == pytest.approx(to_rgba(viz.COLORS["fn"], 0.6))
    assert viz.case_overlays(gt=gt)["ground truth"][1] == viz.COLORS["airway"]


def test_slice_viewer_has_three_sliders_that_redraw_the_planes():
    ct, gt, pred, _ = _broken_case()
    widget = viz.slice_viewer(ct, (1, 1, 2), overlays=viz.case_overlays(gt, pred))
    sliders = widget.children[0].children
    assert [s.description for s in sliders] == ["axial", "coronal", "sagittal"]
    # starts at the centre of mass of the first overlay (ground truth + false positives)
    centre = np.rint(np.argwhere(gt | pred).mean(axis=0)).astype(int)
    assert [s.value for s in sliders] == [centre[2], centre[1], centre[0]]
    assert [s.max for s in sliders] == [39, 23, 23]
    sliders[0].value = 5  # redraws without error
    with pytest.raises(ValueError, match="overlay 'x'"):
        viz.slice_viewer(ct, overlays={"x": (np.zeros((2, 2, 2)), "red")})


def test_comparison_mip_puts_errors_over_true_positives():
    _, gt, pred, _ = _broken_case()
    fig = viz.comparison_mip(pred, gt, (1, 1, 1), axis=1)
    rgba = fig.axes[0].images[0].get_array()  # shape (K, I, 4): k rows, i columns
    from matplotlib.colors import to_rgba

    assert tuple(rgba[20, 11]) == pytest.approx(to_rgba(viz.COLORS["fn"]))  # the gap
    assert tuple(rgba[10, 11]) == pytest.approx(to_rgba(viz.COLORS["tp"]))
    assert tuple(rgba[30, 3]) == pytest.approx(to_rgba(viz.COLORS["fp"]))
    assert rgba[0, 0, 3] == 0  # background transparent
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "true positive",
        "false negative",
        "false positive",
    ]


def test_mip_overlay_draws_the_heat_map_and_the_centres():
    _, gt, pred, _ = _broken_case()
    heat = np.zeros(gt.shape, np.float32)
    heat[11, 11, 19:21] = 1.0
    fig = viz.mip_overlay(pred, (1, 1, 1), heat=heat, centres=np.array([[11, 11, 20]]), axis=1)
    ax = fig.axes[0]
    heat_rgba = ax.images[1].get_array()
    assert heat_rgba[20, 11, 3] == pytest.approx(0.7) and heat_rgba[5, 5, 3] == 0
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), [[11, 20]])


def test_case_figures_on_the_real_cip_ct64_sample(cip_ct64_dir):
    from deeptree.io import read_nifti

    ct, gt = (read_nifti(cip_ct64_dir / n) for n in ("ct.nii.gz", "airway.nii.gz"))
    fig = viz.comparison_mip(gt.array, gt.array, gt.spacing)
    rgba = fig.axes[0].images[0].get_array()
    from matplotlib.colors import to_rgba

    shown = rgba[..., 3] > 0
    assert shown.sum() > 20  # the trachea and bronchi project
    assert np.allclose(rgba[shown], to_rgba(viz.COLORS["tp"]))  # all true positives
    widget = viz.slice_viewer(ct.array, ct.spacing, overlays=viz.case_overlays(gt.array))
    assert len(widget.children[0].children) == 3


def test_napari_names_are_reachable_from_viz_without_importing_napari_first():
    for name in (
        "render_3d",
        "MaskLayer",
        "LabelLayer",
        "ImageLayer",
        "add_layers",
        "screenshot",
        "crop_layers",
        "show_case",
        "BreakageNavigator",
        "napari_screenshot",
        "slice_slider",
        "slice_viewer",
        "save_png",
        "render_comparison",
    ):
        assert callable(getattr(viz, name)), name

    assert "show_case" in dir(viz)
    with pytest.raises(AttributeError):
        viz.no_such_name  # noqa: B018


# --------------------------------------------------------------------------------------------
# napari: show_case, screenshots, the breakage navigator (under Xvfb)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def _shared_viewer():
    # one hidden viewer for the module's GUI tests: making and closing one costs seconds
    napari = pytest.importorskip("napari")
    v = napari.Viewer(show=False, ndisplay=3)
    yield v
    v.close()


@pytest.fixture
def viewer(_shared_viewer):
    _shared_viewer.layers.clear()
    _shared_viewer.dims.ndisplay = 3
    _shared_viewer.dims.order = (0, 1, 2)
    yield _shared_viewer
    _shared_viewer.layers.clear()


def _label_rgba(layer, value):
    return tuple(np.round(layer.colormap.map(np.array([value]))[0], 3))


@needs_display
@pytest.mark.gui
def test_show_case_adds_named_layers_in_the_project_colours_with_the_spacing(viewer):
    from matplotlib.colors import to_rgba

    from deeptree.attention import breakage_attention, breakage_centres

    ct, gt, pred, anatomy = _broken_case()
    attention = breakage_attention(pred)
    centres = breakage_centres(attention)
    spacing = (0.8, 0.8, 0.5)
    breakage = (gt == 1) & (pred == 0)
    case = viz.ViewCase(
        ct=ct,
        gt=gt,
        predictions={"stage1": gt, "final": pred},
        anatomy=anatomy,
        attention=attention,
        centres=centres,
        spacing=spacing,
        gap_sizes=[7],
        breakage=breakage,
    )
    layers = viz.show_case(viewer, case)
    assert list(layers) == [
        "CT",
        "ground truth",
        "anatomy",
        "stage1 comparison",
        "final comparison",
        "breakage (simulated)",
        "attention",
        "breakage centres",
    ]
    assert _label_rgba(layers["breakage (simulated)"], 1) == pytest.approx(
        to_rgba(viz.COLORS["gap"]), abs=1e-3
    )
    assert [layer.name for layer in viewer.layers] == list(layers)
    for layer in viewer.layers:
        np.testing.assert_allclose(layer.scale, spacing)
    assert layers["CT"].contrast_limits == list(viz.LUNG_WINDOW)
    assert not layers["CT"].visible  # 3D: an opaque CT would hide the masks
    final = layers["final comparison"]
    np.testing.assert_array_equal(final.data, viz.comparison_labels(pred, gt))
    for value, key in ((1, "tp"), (2, "fn"), (3, "fp")):
        assert _label_rgba(final, value) == pytest.approx(to_rgba(viz.COLORS[key]), abs=1e-3)
    assert _label_rgba(final, 0)[3] == 0
    for value in (1, 2, 3):
        assert _label_rgba(layers["anatomy"], value) == pytest.approx(
            to_rgba(viz.CLASS_COLORS[value]), abs=1e-3
        )
    assert final.visible and not layers["stage1 comparison"].visible  # last stage shown
    heat = layers["attention"]
    assert heat.blending == "additive" and heat.opacity < 1 and heat.contrast_limits == [0, 1]
    points = layers["breakage centres"]
    np.testing.assert_array_equal(points.data, centres)
    assert list(points.features["size"]) == [7]
    with pytest.raises(viz_input_error(), match="pred\\['x'\\] shape"):
        viz.show_case(viewer, viz.ViewCase(ct=ct, predictions={"x": np.zeros((2, 2, 2))}))


def viz_input_error():
    from deeptree.io import InputError

    return InputError


@needs_display
@pytest.mark.gui
def test_screenshot_of_a_shown_case_is_not_blank_and_saves_as_png(viewer, tmp_path):
    import matplotlib.image as mpimg

    ct, gt, pred, anatomy = _broken_case()
    viz.show_case(viewer, viz.ViewCase(ct=ct, gt=gt, predictions={"prediction": pred}))
    picture = viz.screenshot(viewer, (300, 400))
    assert picture.dtype == np.uint8 and picture.shape[2] == 4
    assert not viz.is_blank(picture)
    rgb = picture[..., :3].astype(int)
    red = (rgb[..., 0] > 120) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)
    blue = (rgb[..., 2] > 120) & (rgb[..., 0] < 120)
    assert red.mean() > 0.002 and blue.mean() > 0.0002, "true positives and the missed gap show"
    path = viz.save_png(picture, tmp_path / "shot.png")
    assert mpimg.imread(path).shape[:2] == picture.shape[:2]
    assert [p.name for p in tmp_path.iterdir()] == ["shot.png"]  # no temporary file left


@needs_display
@pytest.mark.gui
def test_breakage_navigator_moves_the_camera_to_each_centre_in_order(viewer):
    ct, gt, pred, _ = _broken_case()
    centres = np.array([[11, 11, 20], [3, 3, 31], [12, 12, 8]])
    spacing = (0.8, 0.7, 0.5)
    case = viz.ViewCase(
        ct=ct, gt=gt, predictions={"prediction": pred}, centres=centres, spacing=spacing,
        gap_sizes=[32, 0, -1],
    )  # fmt: skip
    viz.show_case(viewer, case)
    nav = viz.add_breakage_navigator(viewer, centres, spacing, [32, 0, -1], dock=True)
    assert nav.index == -1 and "3 breakage centres" in viewer.canvas.overlays.text.text
    base_zoom = viewer.scene.camera.zoom
    for expected in (0, 1, 2, 0):  # wraps around after the last
        assert nav.next() == expected
        np.testing.assert_allclose(viewer.scene.camera.center, centres[expected] * spacing)
        np.testing.assert_allclose(viewer.dims.point, centres[expected] * spacing)
        assert viewer.layers["breakage centres"].selected_data == {expected}
    assert viewer.scene.camera.zoom == pytest.approx(3 * base_zoom)
    assert nav.text() == "breakage 1/3 at voxel (11, 11, 20): gap of 32 voxels"
    assert viewer.canvas.overlays.text.text == nav.text()
    assert nav.previous() == 2 and nav.text().endswith("gap size unknown")
    assert nav.previous() == 1
    np.testing.assert_allclose(viewer.scene.camera.center, centres[1] * spacing)
    assert nav._label.text() == nav.text()  # the dock widget follows
    # in 2D (coronal slices: dims order j, k, i) the camera centre is in displayed order
    viewer.dims.ndisplay = 2
    viewer.dims.order = (1, 2, 0)
    assert nav.next() == 2
    world = centres[2] * spacing
    np.testing.assert_allclose(viewer.scene.camera.center[1:], world[[2, 0]])
    np.testing.assert_allclose(viewer.dims.point, world)


@needs_display
@pytest.mark.gui
def test_show_case_of_the_real_cip_ct64_sample(viewer, cip_ct64_dir):
    from deeptree.viz.case_folder import load_view_case

    case = load_view_case(cip_ct64_dir)
    layers = viz.show_case(viewer, case)
    assert list(layers) == ["CT", "lung", "ground truth"]
    np.testing.assert_allclose(layers["CT"].scale, case.spacing)
    assert not viz.is_blank(viz.screenshot(viewer, (300, 400)))


@needs_display
@pytest.mark.gui
def test_show_case_in_2d_shows_a_coronal_slice_through_the_airway_head_up(viewer):
    ct, gt, _, _ = _broken_case()
    viewer.dims.ndisplay = 2
    spacing = (0.8, 0.8, 0.5)
    layers = viz.show_case(viewer, viz.ViewCase(ct=ct, gt=gt, spacing=spacing))
    assert layers["CT"].visible and layers["ground truth"].visible
    assert tuple(viewer.dims.order) == (1, 2, 0) and tuple(viewer.dims.displayed) == (2, 0)
    assert [str(o.value) for o in viewer.scene.camera.orientation2d] == ["up", "right"]
    centre = np.argwhere(gt).mean(axis=0).round()  # (12, 12, 20)
    np.testing.assert_allclose(viewer.dims.point, centre * spacing)
    picture = viz.screenshot(viewer, (200, 300), fit=True)
    assert picture.shape == (200, 300, 4) and not viz.is_blank(picture)


def test_distinct_colors_cycle_and_keep_fixed_colours():
    colors = viz.distinct_colors(range(0, 25), fixed={1: "#bbbbbb"})
    assert 0 not in colors and colors[1] == "#bbbbbb"
    assert colors[2] != colors[3] and colors[2] == colors[22]  # tab20 cycles every 20
    assert len(set(colors.values())) == 21  # the 20 of tab20 and the fixed grey


@needs_display
@pytest.mark.gui
def test_render_comparison_shows_the_missed_gap_in_blue():
    _, gt, pred, _ = _broken_case()
    picture = viz.render_comparison(pred, gt, (1, 1, 1), size=(300, 400))
    rgb = picture[..., :3].astype(int)
    blue = (rgb[..., 2] > 120) & (rgb[..., 0] < 120) & (rgb[..., 1] < 160)
    red = (rgb[..., 0] > 120) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)
    assert blue.mean() > 0.001 and red.mean() > 0.005


def test_slice_slider_scrolls_one_plane():
    ct, gt, _, _ = _broken_case()
    widget = viz.slice_slider(ct, (1, 1, 2), overlays=viz.case_overlays(gt=gt), plane="coronal")
    slider = widget.children[0]
    assert slider.description == "coronal" and slider.max == 23 and slider.value == 12
    slider.value = 3  # redraws without error
    with pytest.raises(ValueError, match="plane must be one of"):
        viz.slice_slider(ct, plane="oblique")


def test_show_slices_draws_one_panel_per_quantity_with_the_given_ranges():
    image = np.arange(12, dtype=float).reshape(3, 4)
    labels = np.zeros((3, 4))
    labels[1, 2] = np.nan
    fig = viz.show_slices(
        {
            "ct": (image, "gray", (0, 11)),
            "labels": (labels, viz.label_cmap(viz.CLASS_COLORS), (0, 3)),
        },
        aspect=2.0,
        title="t",
    )
    axes = [ax for ax in fig.axes if ax.get_title() in ("ct", "labels")]
    assert [ax.get_title() for ax in axes] == ["ct", "labels"]
    shown = axes[0].images[0].get_array()
    assert shown.shape == (4, 3) and shown[3, 2] == 11  # transposed: j up
    assert axes[1].images[0].get_clim() == (0, 3)
    assert axes[0].get_aspect() == 2.0
    assert len(fig.axes) == 3  # two panels and the colour bar


def test_render_3d_without_a_display_is_a_clear_error(monkeypatch):
    from deeptree.viz import napari_layers

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(napari_layers.sys, "platform", "linux")
    with pytest.raises(RuntimeError, match="napari needs a display.*xvfb-run"):
        viz.render_3d([viz.MaskLayer("tube", _tube())])


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_draw_unet_sketches_the_levels_filters_patches_skips_and_heads(profile):
    import matplotlib.pyplot as plt

    from deeptree.config import get_config

    net = get_config(profile).stage1_net
    fig = viz.draw_unet(net, in_channels=1, out_channels=4)
    ax = fig.axes[0]
    gids = [p.get_gid() for p in ax.patches if p.get_gid()]
    n = len(net.filters)
    assert sorted(g for g in gids if g.startswith("level-")) == [f"level-{i}" for i in range(n)]
    assert sorted(g for g in gids if g.startswith("decoder-")) == [f"decoder-{i}" for i in range(n - 1)]
    # full resolution, 1/2 and 1/4: the heads of build_network's deep supervision
    assert sorted(g for g in gids if g.startswith("head-")) == ["head-0", "head-1", "head-2"]
    texts = [t.get_text() for t in ax.texts]
    for level, f in enumerate(net.filters):
        size = "\u00d7".join(str(p // 2**level) for p in net.patch_size)
        assert f"level {level}\n{f} filters\n{size} voxels" in texts, (level, texts)
    assert "input\n1 channel\n" + "\u00d7".join(map(str, net.patch_size)) in texts
    assert sum(t.startswith("skip") for t in texts) == n - 1
    assert sum("4 channels" in t for t in texts) == 3
    plt.close(fig)


def test_draw_unet_without_deep_supervision_and_bad_configs():
    import matplotlib.pyplot as plt

    from deeptree.config import NetworkConfig
    from deeptree.io import InputError

    fig = viz.draw_unet(NetworkConfig(filters=(4, 8, 16), patch_size=(32, 32, 16),
                                      deep_supervision=False), in_channels=2)  # fmt: skip
    gids = [p.get_gid() for p in fig.axes[0].patches if p.get_gid()]
    assert sum(g.startswith("level-") for g in gids) == 3 and "head-1" not in gids
    assert "input\n2 channels\n32\u00d732\u00d716" in [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)
    with pytest.raises(InputError, match="multiple of 8"):
        viz.draw_unet(NetworkConfig(filters=(4, 8, 16, 32), patch_size=(32, 32, 20)))
    with pytest.raises(InputError, match="2 positive widths"):
        viz.draw_unet(NetworkConfig(filters=(4,), patch_size=(32, 32, 32)))
