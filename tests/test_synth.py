"""The whole-chest label map and the domain-randomised CT drawn from it (issue 33)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from deeptree.io import InputError, read_nifti
from deeptree.phantom.ct import Layers
from deeptree.phantom.growth import AirwayTreeSpec, Branch
from deeptree.phantom.raster import Grid
from deeptree.phantom.synth import (
    FAMILIES,
    LAYER_TISSUES,
    SynthRanges,
    _resample_axis,
    cartilage_layer,
    draw_settings,
    fixed_settings,
    label_map,
    synthesize_ct,
)
from deeptree.phantom.synth_cases import SYNTH_NAME, generate_synth_case, generate_synth_cohort
from deeptree.phantom.thorax import DEFAULT_HU, LABEL, TISSUES, ChestExtras, ThoraxGeometry


def _grid(geom: ThoraxGeometry, spacing: float) -> Grid:
    fov = geom.fov_mm()
    shape = tuple(int(np.ceil((fov[a, 1] - fov[a, 0]) / spacing)) for a in range(3))
    return Grid(shape=shape, spacing=(spacing,) * 3, origin=tuple(fov[:, 0]))


# --- the label map ---------------------------------------------------------------------------
def test_tissue_hu_is_the_default_table_of_the_label_map():
    geom = ThoraxGeometry(scale=0.5)
    x, y, z = _grid(geom, 4.0).axes()
    labels, lung = geom.tissue_labels(x, y, z)
    hu, lung2 = geom.tissue_hu(x, y, z)
    assert labels.dtype == np.uint8 and np.array_equal(lung, lung2)
    table = np.array([DEFAULT_HU[n] for n in TISSUES], dtype=np.float32)
    np.testing.assert_array_equal(hu, table[labels])
    assert np.array_equal(labels == LABEL["lung"], lung != 0)
    # without extras, none of the extra tissues is drawn
    extra = [
        LABEL[n] for n in ("vein", "thyroid", "clavicle", "humerus", "table", "oesophagus_air")
    ]
    assert not np.isin(labels, extra).any()


def test_chest_extras_draw_their_tissues_where_the_anatomy_puts_them():
    extras = ChestExtras(arms=True, table=True, oesophagus_air=(100.0, 180.0, 4.0))
    geom = ThoraxGeometry(scale=1.0, extras=extras)
    plain = ThoraxGeometry(scale=1.0)
    grid = Grid(shape=(150, 110, 70), spacing=(4.0,) * 3, origin=(-300.0, -170.0, -22.0))
    x, y, z = grid.axes()
    labels, lung = geom.tissue_labels(x, y, z)
    counts = np.bincount(labels.ravel(), minlength=len(TISSUES))
    for name in ("vein", "thyroid", "clavicle", "humerus", "table", "oesophagus_air"):
        assert counts[LABEL[name]] > 0, name
    where = {n: np.argwhere(labels == LABEL[n]) * 4.0 + grid.origin for n in ("thyroid", "table")}
    assert where["thyroid"][:, 2].min() > 200.0  # above the thoracic inlet (carina at 165 mm)
    assert np.abs(where["thyroid"][:, 0]).max() < 40.0
    assert where["table"][:, 1].max() < -133.0  # under the back
    # the lungs give way to the veins and the thyroid, nowhere else
    _, plain_lung = plain.tissue_labels(x, y, z)
    lost = (plain_lung != 0) & (lung == 0)
    assert lost.any() and not ((lung != 0) & (plain_lung == 0)).any()
    beside = ndimage.distance_transform_edt(
        ~np.isin(labels, [LABEL["vein"], LABEL["thyroid"]]), sampling=4.0
    )
    assert (beside[lost] <= 3.0 + 4.0 * np.sqrt(3)).all()  # the 3 mm margin, one voxel's rounding


# --- drawing the settings --------------------------------------------------------------------
def test_draw_settings_is_reproducible_and_within_its_ranges():
    ranges = SynthRanges()
    a = draw_settings(np.random.default_rng(5), ranges)
    b = draw_settings(np.random.default_rng(5), ranges)
    assert a == b and a.families == FAMILIES
    for name, (lo, hi) in ranges.tissue_hu.items():
        assert lo <= a.tissue_hu[name] <= hi, name
    for name in (
        "lumen_hu",
        "parenchyma_hu",
        "psf_fwhm_mm",
        "noise_hu",
        "slice_mm",
        "scale",
        "fat_mm",
    ):
        lo, hi = getattr(ranges, name)
        assert lo <= getattr(a, name) <= hi, name
    assert a.slice_mm / 2 <= a.slice_increment_mm <= a.slice_mm
    json.dumps(a.as_dict())  # a JSON-able record


def test_the_phases_set_the_blood():
    seen = {}
    for seed in range(40):
        s = draw_settings(np.random.default_rng(seed))
        seen.setdefault(s.phase, s)
    assert set(seen) == {"none", "arterial", "venous"}
    r = SynthRanges()
    none, art = seen["none"], seen["arterial"]
    assert r.blood_hu[0] <= none.tissue_hu["aorta"] == none.inlet_hu <= r.blood_hu[1]
    assert r.arterial_hu[0] <= art.tissue_hu["aorta"] <= r.arterial_hu[1]
    assert r.inlet_hu[0] <= art.inlet_hu <= r.inlet_hu[1]  # up to 2000 HU at the inlet


def test_a_family_switched_off_takes_the_fixed_value_and_changes_nothing_else():
    full = draw_settings(np.random.default_rng(3))
    fixed = fixed_settings()
    for family, fields in {
        "kernel": ("psf_fwhm_mm", "sharpen"),
        "noise": ("noise_hu", "noise_corr_mm"),
        "slices": ("slice_mm", "slice_increment_mm"),
        "body": ("scale", "fat_mm", "arms", "table", "oesophagus_air", "fov_radius_mm"),
        "tissue_hu": ("tissue_hu", "phase", "lumen_hu", "wall_hu", "parenchyma_hu"),
    }.items():
        rest = tuple(f for f in FAMILIES if f != family)
        off = draw_settings(np.random.default_rng(3), families=rest)
        for name in fields:
            assert getattr(off, name) == getattr(fixed, name), (family, name)
        others = [f for f in full.as_dict() if f not in fields and f != "families"]
        changed = [f for f in others if getattr(off, f) != getattr(full, f)]
        # only the family's own fields (and derived ones of tissue_hu) differ
        allowed = (
            {
                "tissue_sd_hu",
                "inlet_hu",
                "cartilage_hu",
                "lung_vessel_hu",
                "gravity_hu",
                "texture_hu",
                "texture_mm",
            }
            if family == "tissue_hu"
            else set()
        )
        assert set(changed) <= allowed, (family, changed)


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="unknown"):
        draw_settings(np.random.default_rng(0), families=("noise", "colour"))
    with pytest.raises(InputError, match="noise_hu"):
        draw_settings(np.random.default_rng(0), SynthRanges(noise_hu=(50.0, 10.0)))
    with pytest.raises(InputError, match="lung"):
        draw_settings(np.random.default_rng(0), SynthRanges(tissue_hu={"lung": (-900.0, -800.0)}))


# --- cartilage ------------------------------------------------------------------------------
def _vertical_trachea(length=60.0, radius=6.0, wall=2.0) -> AirwayTreeSpec:
    b = Branch(
        id=0,
        parent=-1,
        generation=0,
        start_mm=(0.0, 0.0, 0.0),
        end_mm=(0.0, 0.0, length),
        radius_mm=radius,
        wall_mm=wall,
        flow=1.0,
        side="",
    )
    return AirwayTreeSpec((b,), (), {})


def test_cartilage_rings_are_c_shaped_in_the_wall():
    spec = _vertical_trachea()
    grid = Grid(shape=(41, 41, 121), spacing=(0.5,) * 3, origin=(-10.0, -10.0, 0.0))
    cart = cartilage_layer(grid, spec, pitch_mm=6.0, ring_mm=3.0)
    assert cart.dtype == np.uint8 and cart.shape == grid.shape
    x, y, z = grid.axes()
    r = np.sqrt(x**2 + y**2) * np.ones(grid.shape)
    full = cart >= 255
    assert full.any()
    assert (r[full] > 6.0).all() and (r[full] < 8.0).all()  # inside the wall only
    # rings: along the axis, 3 of every 6 mm carry cartilage (away from the branch ends)
    along = (cart[:, :, 12:108] > 0).any(axis=(0, 1))
    assert 0.4 < along.mean() < 0.65
    # open at the back (posterior = -y): nothing behind the axis within 60 degrees
    back = (np.broadcast_to(y, grid.shape) < -6.0) & (np.abs(np.broadcast_to(x, grid.shape)) < 2.0)
    assert not cart[back].any()
    front = (np.broadcast_to(y, grid.shape) > 6.5) & (np.abs(np.broadcast_to(x, grid.shape)) < 1.0)
    assert cart[front].any()
    with pytest.raises(InputError, match="ring_mm"):
        cartilage_layer(grid, spec, pitch_mm=2.0, ring_mm=3.0)


# --- synthesis ------------------------------------------------------------------------------
def _blocks():
    """A hand-built label map: muscle, fat, a vein column and outside air; no layers."""
    shape = (20, 20, 40)
    labels = np.full(shape, LABEL["muscle"], np.uint8)
    labels[:10] = LABEL["subcutaneous_fat"]
    labels[:, :3] = LABEL["outside_air"]
    labels[14:18, 14:18] = LABEL["vein"]
    grid = Grid(shape=shape, spacing=(1.0, 1.0, 10.0), origin=(-10.0, -10.0, 0.0))
    return labels, grid


def _quiet(**changes):
    """Fixed settings without blur or noise (values can be read back exactly)."""
    s = replace(fixed_settings(), psf_fwhm_mm=0.0, noise_hu=0.0, noise_corr_mm=0.0)
    return replace(s, **changes)


def test_each_tissue_gets_its_drawn_hu():
    labels, grid = _blocks()
    settings = _quiet(
        tissue_hu={**fixed_settings().tissue_hu, "muscle": 77.0, "subcutaneous_fat": -130.0}
    )
    before = labels.copy()
    ct = synthesize_ct(
        labels,
        np.zeros_like(labels, np.int8),
        Layers.empty(labels.shape),
        np.zeros_like(labels),
        grid,
        ThoraxGeometry(),
        settings,
        np.random.default_rng(0),
    )
    assert ct.dtype == np.int16 and ct.shape == labels.shape
    assert np.array_equal(labels, before)  # inputs untouched
    assert (ct[labels == LABEL["muscle"]] == 77).all()
    assert (ct[labels == LABEL["subcutaneous_fat"]] == -130).all()
    assert (ct[labels == LABEL["outside_air"]] == -1000).all()


def test_the_veins_are_densest_at_the_thoracic_inlet():
    labels, grid = _blocks()
    geom = ThoraxGeometry(scale=1.0)
    tissue = {**fixed_settings().tissue_hu, "vein": 150.0}
    settings = _quiet(tissue_hu=tissue, inlet_hu=1800.0)
    ct = synthesize_ct(
        labels,
        np.zeros_like(labels, np.int8),
        Layers.empty(labels.shape),
        np.zeros_like(labels),
        grid,
        geom,
        settings,
        np.random.default_rng(0),
    )
    column = ct[15, 15, :]  # z from 0 to 390 mm
    assert column[5] == 150 and column[-1] == 1800  # below the SVC, above the inlet
    assert (np.diff(column.astype(int)) >= 0).all()


def test_thick_slices_blur_along_the_head_foot_axis_only():
    shape = (12, 12, 80)
    labels = np.full(shape, LABEL["muscle"], np.uint8)
    labels[:, :, 40:] = LABEL["subcutaneous_fat"]
    grid = Grid(shape=shape, spacing=(1.0, 1.0, 0.5), origin=(0.0, 0.0, 0.0))
    args = (
        np.zeros(shape, np.int8),
        Layers.empty(shape),
        np.zeros(shape, np.uint8),
        grid,
        ThoraxGeometry(),
    )
    thin = synthesize_ct(labels, *args, _quiet(), np.random.default_rng(0))
    thick = synthesize_ct(
        labels, *args, _quiet(slice_mm=5.0, slice_increment_mm=5.0), np.random.default_rng(0)
    )
    ramp = lambda ct: int(((ct[6, 6] > -95) & (ct[6, 6] < 40)).sum())  # noqa: E731
    assert ramp(thin) == 0 and ramp(thick) >= 8  # 5 mm = 10 voxels of 0.5 mm
    assert (thick[:, :, :20] == 45).all() and (thick[:, :, 60:] == -100).all()


def test_resample_axis_is_exact_on_a_ramp():
    a = np.arange(10, dtype=np.float32)[None, None, :] * np.ones((2, 3, 1), np.float32)
    out = _resample_axis(a, np.array([0.0, 2.5, 9.0, 12.0]), axis=2)
    np.testing.assert_allclose(out[1, 2], [0.0, 2.5, 9.0, 9.0])


def test_the_field_of_view_cut_sets_outside_to_air():
    labels, grid = _blocks()
    geom = ThoraxGeometry(scale=0.05)  # the body's axis at (0, -0.75) mm
    ct = synthesize_ct(
        labels,
        np.zeros_like(labels, np.int8),
        Layers.empty(labels.shape),
        np.zeros_like(labels),
        grid,
        geom,
        _quiet(fov_radius_mm=100.0),
        np.random.default_rng(0),
    )  # 100 mm at scale 0.05: 5 mm
    x, y, _ = grid.axes()
    r = np.sqrt(x**2 + (y + 0.75) ** 2) * np.ones(grid.shape)
    assert (ct[r > 5.01] == -1024).all() and (
        ct[(r < 4.9) & (labels == LABEL["muscle"])] == 45
    ).all()


def test_the_label_map_puts_the_layers_on_top():
    labels = np.full((4, 4, 4), LABEL["lung"], np.uint8)
    layers = Layers.empty(labels.shape)
    layers.vessel[0] = 255
    layers.outer[1] = 200
    layers.lumen[1, 0] = 255
    cart = np.zeros_like(labels)
    cart[2] = 130
    out = label_map(labels, layers, cart)
    base = len(TISSUES)
    assert (out[0] == base + LAYER_TISSUES.index("lung_vessel")).all()
    assert (out[1, 0] == base + LAYER_TISSUES.index("airway_lumen")).all()
    assert (out[1, 1:] == base + LAYER_TISSUES.index("airway_wall")).all()
    assert (out[2] == base + LAYER_TISSUES.index("cartilage")).all()
    assert (out[3] == LABEL["lung"]).all() and (labels == LABEL["lung"]).all()


# --- cases and cohorts ----------------------------------------------------------------------
def test_a_synthesised_case_is_reproducible_and_labelled(tmp_path):
    a = generate_synth_case(7, base="smoke", spacing_mm=4.0)
    b = generate_synth_case(7, base="smoke", spacing_mm=4.0)
    assert np.array_equal(a.case.ct, b.case.ct) and a.settings == b.settings
    assert a.case.ct.dtype == np.int16 and a.case.airway.dtype == np.uint8
    lumen = ndimage.binary_erosion(a.case.airway > 0)
    assert lumen.any() and np.median(a.case.ct[lumen]) < -600  # air in the airway
    names = TISSUES + LAYER_TISSUES
    present = {names[i] for i in np.unique(a.labels)}
    assert {"airway_lumen", "airway_wall", "lung", "heart", "vein"} <= present
    # the body family fixed: the run profile's scale, no field-of-view cut
    c = generate_synth_case(7, base="smoke", spacing_mm=4.0, families=("noise",))
    assert c.settings.scale == 0.55 and c.settings.fov_radius_mm is None


def test_a_synthesised_cohort_resumes_and_refuses_other_settings(tmp_path):
    ids = generate_synth_cohort(tmp_path, 2, seed=1, base="smoke", spacing_mm=4.0, progress=False)
    assert ids == ["PHANTOM_000", "PHANTOM_001"]
    record = json.loads((tmp_path / SYNTH_NAME).read_text())
    assert set(record["cases"]) == set(ids) and record["families"] == list(FAMILIES)
    image = tmp_path / "imagesTr" / "PHANTOM_001_0000.nii.gz"
    stamp = image.stat().st_mtime_ns
    generate_synth_cohort(tmp_path, 2, seed=1, base="smoke", spacing_mm=4.0, progress=False)
    assert image.stat().st_mtime_ns == stamp  # complete cases are skipped
    with pytest.raises(InputError, match="another families"):
        generate_synth_cohort(
            tmp_path, 2, seed=1, base="smoke", spacing_mm=4.0, families=("noise",), progress=False
        )


# --- the real samples are one more draw ------------------------------------------------------
def test_the_drawn_air_values_cover_the_real_samples(cip_ct64_dir, totalseg_ct_path):
    """The lumen and lung ranges hold cip_ct64's medians; the inlet range its densest contrast."""
    ranges = SynthRanges()
    ct = read_nifti(cip_ct64_dir / "ct.nii.gz").array
    airway = read_nifti(cip_ct64_dir / "airway.nii.gz").array > 0
    lung = read_nifti(cip_ct64_dir / "lung.nii.gz").array > 0
    lumen = np.median(ct[ndimage.binary_erosion(airway)])
    paren = np.median(ct[lung & ~ndimage.binary_dilation(airway, iterations=2)])
    assert ranges.lumen_hu[0] <= lumen <= ranges.lumen_hu[1], lumen
    assert ranges.parenchyma_hu[0] <= paren <= ranges.parenchyma_hu[1], paren
    chest = read_nifti(totalseg_ct_path).array
    # soft tissue enhanced by contrast (above 300 HU, below cortical bone's typical peak) exists
    # in the real CT, and the drawn inlet range reaches beyond it
    assert ((chest > 1000) & (chest < 2000)).any()
    assert ranges.inlet_hu[1] >= 1800.0


# --- real trees in synthesised chests -------------------------------------------------------
def test_a_ct_is_synthesised_around_a_real_tree_in_its_own_voxel_order(atm001_path):
    from deeptree.io import Volume
    from deeptree.phantom.synth_cases import synth_ct_around_mask
    from deeptree.real_scale import real_tree

    tree = real_tree(atm001_path, 3.0)
    assert tree.affine[0, 0] < 0  # atm_001 is stored LPS: the flip path is exercised
    settings = replace(draw_settings(np.random.default_rng(4)), noise_hu=0.0)
    before = tree.array.copy()
    ct, lung = synth_ct_around_mask(tree, np.random.default_rng(4), settings)
    assert np.array_equal(tree.array, before)
    assert ct.shape == tree.array.shape and ct.dtype == np.int16 and lung.dtype == np.uint8
    trachea = ndimage.binary_erosion(tree.array > 0)
    assert trachea.any() and np.median(ct[trachea]) < -500
    assert lung.any() and not (lung.astype(bool) & trachea).all()
    # the same tree stored RAS gives the same CT, flipped
    ras = Volume(
        np.ascontiguousarray(tree.array[::-1, ::-1]), np.diag([3.0, 3.0, 3.0, 1.0]), tree.spacing
    )
    ct_ras, _ = synth_ct_around_mask(ras, np.random.default_rng(4), settings)
    assert np.array_equal(ct_ras[::-1, ::-1], ct)


def test_a_cohort_holds_cases_around_real_trees(tmp_path, atm001_path):
    ids = generate_synth_cohort(
        tmp_path, 1, seed=2, base="smoke", spacing_mm=4.0, real_trees=(atm001_path,),
        real_cases=1, progress=False,
    )  # fmt: skip
    assert ids == ["PHANTOM_000", "PHANTOM_001"]
    record = json.loads((tmp_path / SYNTH_NAME).read_text())
    assert record["cases"]["PHANTOM_001"]["real_tree"] == str(atm001_path)
    assert not (tmp_path / "treesTr" / "PHANTOM_001.json").exists()  # classes parsed from the mask
    label = read_nifti(tmp_path / "labelsTr" / "PHANTOM_001.nii.gz")
    assert label.array.sum() > 100 and np.allclose(label.spacing, 4.0)
    with pytest.raises(InputError, match="real_cases"):
        generate_synth_cohort(tmp_path, 1, real_cases=-1, progress=False)


def test_the_draws_figure_shows_the_label_map_and_each_ct():
    from deeptree.phantom.figures import plot_synth_draws

    cases = [generate_synth_case(s, base="smoke", spacing_mm=5.0) for s in (1, 2)]
    fig = plot_synth_draws(cases, ["a", "b"])
    axes = fig.axes
    assert len(axes) == 6 and [a.get_title() for a in axes[:3]] == ["label map", "a", "b"]
    shown = axes[1].get_images()[0].get_array()
    assert shown.min() < -900 and shown.max() > 0  # air and tissue in the CT's axial slice


def test_cts_around_a_tree_follow_their_seeds(atm001_path):
    from deeptree.phantom.synth_cases import synth_cts_around
    from deeptree.real_scale import real_tree

    tree = real_tree(atm001_path, 4.0)
    quiet = SynthRanges(noise_hu=(0.0, 0.0), slice_mm=(0.5, 0.5))
    a, b = synth_cts_around(tree, [5, 6], quiet)
    again = synth_cts_around(tree, [5], quiet)[0]
    assert np.array_equal(a.array, again.array) and not np.array_equal(a.array, b.array)
    assert a.array.shape == tree.array.shape and np.allclose(a.affine, tree.affine)
