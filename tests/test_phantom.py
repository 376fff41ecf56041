"""Tests of the synthetic airway CT (deeptree.phantom)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from deeptree import io
from deeptree.anatomy import anatomy_labels, class_summary
from deeptree.config import UnknownProfileError
from deeptree.phantom import (
    DIAMETER_EXPONENT,
    AirwayTreeSpec,
    ThoraxGeometry,
    case_paths,
    generate_case,
    generate_cohort,
    grow_airway_tree,
    kitaoka_angle,
    phantom_profile,
    read_tree,
    wall_thickness_mm,
    write_case,
)
from deeptree.phantom.raster import Grid, centreline_voxels
from deeptree.tree import parse_tree


# --------------------------------------------------------------------------------------------
# fixtures: one adult tree (anatomy), one cpu case (HU), one smoke case (files)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adult_geom():
    return ThoraxGeometry(scale=1.0)


@pytest.fixture(scope="module")
def adult_tree(adult_geom):
    return grow_airway_tree(adult_geom, np.random.default_rng(3), min_lumen_mm=1.2, n_points=12000)


@pytest.fixture(scope="module")
def cpu_case():
    return generate_case("cpu", seed=1)


@pytest.fixture(scope="module")
def smoke_case():
    return generate_case("smoke", seed=0)


def _axis(b):
    v = np.subtract(b.end_mm, b.start_mm)
    return v / np.linalg.norm(v)


def _angle_deg(u, v):
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v), -1.0, 1.0))))


# --------------------------------------------------------------------------------------------
# profiles and rules
# --------------------------------------------------------------------------------------------
def test_profiles():
    assert phantom_profile("gpu") == phantom_profile("standard")
    smoke, cpu, std = (phantom_profile(p) for p in ("smoke", "cpu", "gpu"))
    assert smoke.spacing_mm > cpu.spacing_mm > std.spacing_mm
    assert 0.6 <= std.spacing_mm <= 0.8 and std.min_lumen_mm <= 1.0 and std.scale == 1.0
    assert cpu.spacing_mm <= 1.0  # fine enough for class 3 (branches <= 2 mm)
    with pytest.raises(UnknownProfileError, match="unknown profile 'huge'"):
        phantom_profile("huge")


def test_kitaoka_angle_rule():
    # symmetric split: arccos(1 / (2 * 0.5**(2/2.8))) = 34.9 degrees
    assert np.degrees(kitaoka_angle(0.5)) == pytest.approx(34.9, abs=0.1)
    angles = [kitaoka_angle(r) for r in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert all(
        a > b for a, b in zip(angles, angles[1:], strict=False)
    )  # smaller daughter turns more


def test_wall_thickness_grows_with_lumen():
    assert wall_thickness_mm(18.0) == pytest.approx(2.36)
    assert 0.1 * 2.0 < wall_thickness_mm(2.0) - 0.2 < 0.2 * 2.0 + 1e-9


# --------------------------------------------------------------------------------------------
# tree anatomy (numbers from the spec itself)
# --------------------------------------------------------------------------------------------
def test_trachea_and_main_bronchi(adult_tree):
    b = adult_tree.branches
    trachea = b[0]
    assert trachea.parent == -1 and trachea.generation == 0
    assert 15.0 <= 2 * trachea.radius_mm <= 20.0
    assert 100.0 <= trachea.length_mm <= 120.0
    assert trachea.start_mm[2] > trachea.end_mm[2]  # from the neck (high z) down to the carina
    right, left = (
        (x for x in b if x.generation == 1 and x.side == "R"),
        (x for x in b if x.generation == 1 and x.side == "L"),
    )
    right, left = next(right), next(left)
    assert right.radius_mm > left.radius_mm  # right main bronchus wider
    t_axis = _axis(trachea)
    assert _angle_deg(t_axis, _axis(right)) < _angle_deg(t_axis, _axis(left))  # and steeper
    assert right.length_mm < left.length_mm
    assert right.end_mm[0] > 0 > left.end_mm[0]  # RAS: +x is the patient's right


def test_diameter_and_angle_rules(adult_tree):
    b = adult_tree.branches
    checked = 0
    for child in b:
        if child.generation < 2:
            continue
        parent = b[child.parent]
        r = child.flow / parent.flow
        assert 2 * child.radius_mm == pytest.approx(
            2 * parent.radius_mm * r ** (1 / DIAMETER_EXPONENT), rel=1e-9
        )
        assert _angle_deg(_axis(parent), _axis(child)) == pytest.approx(
            np.degrees(kitaoka_angle(r)), abs=1e-6
        )
        d = 2 * child.radius_mm
        assert d - 1e-9 <= child.length_mm <= 3 * d + 1e-9  # length about 3 diameters, never over
        assert child.wall_mm == pytest.approx(wall_thickness_mm(d))
        checked += 1
    assert checked > 100
    # flows of sisters add up to the parent's flow (or less where a daughter was not grown)
    for parent in b:
        kids = adult_tree.children(parent.id)
        if kids and parent.generation >= 1:
            assert sum(b[k].flow for k in kids) <= parent.flow * (1 + 1e-9)
            assert len(kids) <= 2


def test_branch_counts_and_generations(adult_tree):
    arr = adult_tree.arrays()
    gens, diam = arr["generation"], 2 * arr["radius"]
    assert len(adult_tree.branches) >= 150
    assert gens.max() >= 8
    assert diam.min() >= 1.2
    means = [diam[gens == g].mean() for g in range(8)]
    assert all(
        a > b for a, b in zip(means, means[1:], strict=False)
    )  # thinner with each generation
    counts = np.bincount(gens)
    assert list(counts[:3]) == [1, 2, 4]  # trachea, two main bronchi, four lobar-level branches


def test_no_branch_outside_the_lung(adult_tree, adult_geom):
    for b in adult_tree.branches:
        if b.generation < 2:
            continue
        t = np.linspace(0.0, 1.0, 20)[:, None]
        q = np.asarray(b.start_mm) + t * np.subtract(b.end_mm, b.start_mm)
        side = adult_geom.lung_side(q[:, 0], q[:, 1], q[:, 2])
        assert (side == (1 if b.side == "R" else -1)).all(), f"branch {b.id} leaves its lung"


def test_no_two_branches_overlap_except_at_their_joint(adult_tree):
    arr = adult_tree.arrays()
    a, b, radius, parent = arr["start"], arr["end"], arr["radius"], arr["parent"]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    step = 0.2  # centreline sampling (mm): distances are exact to within step / 2
    worst = np.inf
    for j in range(len(a)):
        reach = radius + radius[j]
        near = np.all((lo - reach[:, None] <= hi[j]) & (hi + reach[:, None] >= lo[j]), axis=1)
        near[j] = False
        # joints: parent, daughters and sister share an end point
        near &= (parent != j) & (np.arange(len(a)) != parent[j]) & (parent != parent[j])
        if not near.any():
            continue
        n = int(np.ceil(np.linalg.norm(b[j] - a[j]) / step)) + 1
        q = a[j] + np.linspace(0.0, 1.0, n)[:, None] * (b[j] - a[j])
        d = b[near] - a[near]
        rel = q[:, None, :] - a[near][None]
        t = np.clip((rel * d).sum(-1) / (d * d).sum(-1), 0.0, 1.0)
        dist = np.linalg.norm(rel - t[..., None] * d, axis=-1).min(axis=0)
        worst = min(worst, float((dist - reach[near]).min()))
    assert worst > -step / 2, f"two lumens overlap by {-worst:.2f} mm"


def test_tree_json_round_trip(adult_tree):
    data = json.loads(json.dumps(adult_tree.to_dict()))
    assert AirwayTreeSpec.from_dict(data) == adult_tree


# --------------------------------------------------------------------------------------------
# rasterisation
# --------------------------------------------------------------------------------------------
def test_centreline_voxels_are_6_connected():
    grid = Grid(shape=(20, 20, 20), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    idx = centreline_voxels(grid, (1.2, 2.7, 3.1), (17.9, 14.2, 16.8))
    mask = np.zeros(grid.shape, bool)
    mask[tuple(idx.T)] = True
    _, n = ndimage.label(mask)  # default structure: 6-connectivity
    assert n == 1
    assert mask[1, 3, 3] and mask[18, 14, 17]


def test_partial_volume_of_a_capsule_matches_its_volume():
    from deeptree.phantom.raster import capsule_box, coverage_u8

    grid = Grid(shape=(40, 40, 40), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    a, b, r = np.array([10.3, 12.1, 8.7]), np.array([27.9, 25.4, 30.2]), 3.2
    sl, dist = capsule_box(grid, a, b, r + 2.0)
    frac = coverage_u8(dist, r, 1.0).astype(float) / 255.0
    exact = np.pi * r**2 * np.linalg.norm(b - a) + 4.0 / 3.0 * np.pi * r**3
    assert frac.sum() == pytest.approx(exact, rel=0.02)
    assert ((frac > 0) & (frac < 1)).any()  # a partial-volume edge, not a binary shape
    full = np.zeros(grid.shape)
    full[sl] = frac
    i, j, k = np.rint((a + b) / 2).astype(int)
    assert full[i, j, k] == 1.0 and full[0, 0, 0] == 0.0


# --------------------------------------------------------------------------------------------
# cases: geometry, ground truth, HU
# --------------------------------------------------------------------------------------------
def test_case_arrays_and_affine(smoke_case):
    c = smoke_case
    assert c.ct.dtype == np.int16 and c.airway.dtype == np.uint8 and c.lung.dtype == np.uint8
    assert c.ct.shape == c.airway.shape == c.lung.shape
    assert max(c.ct.shape) <= 80 and min(c.ct.shape) >= 40
    assert set(np.unique(c.airway)) == {0, 1} and set(np.unique(c.lung)) == {0, 1}
    np.testing.assert_allclose(np.diag(c.affine)[:3], c.spacing)
    assert c.id == "PHANTOM_000"
    # the trachea is at high k (cranial): its top end lies in the upper slices
    top = np.linalg.solve(c.affine, [*c.tree.branches[0].start_mm, 1.0])[:3]
    assert top[2] >= c.ct.shape[2] - 1
    ks = np.flatnonzero(c.airway.any(axis=(0, 1)))
    assert ks[-1] == c.ct.shape[2] - 1  # the trachea leaves through the top slice
    arr = c.tree.arrays()
    assert (arr["generation"] >= 3).sum() >= 4  # a few generations beyond the lobar level


def test_ground_truth_is_one_6_connected_tree(smoke_case, cpu_case):
    for c in (smoke_case, cpu_case):
        _, n = ndimage.label(c.airway)
        assert n == 1


def test_ground_truth_matches_branch_positions(cpu_case):
    """The voxel nearest a branch's centre is airway. A lumen narrower than the voxel
    diagonal (radius < sqrt(3)/2 voxel, the cpu phantoms' 1.2 mm bronchi at 1 mm) is drawn
    by its 6-connected centreline voxels, which can pass beside that voxel: then the voxel
    must touch the airway (26-neighbours)."""
    c = cpu_case
    grid_index = np.linalg.inv(c.affine)
    voxel = min(c.spacing)
    for b in c.tree.branches:
        mid = 0.5 * (np.asarray(b.start_mm) + np.asarray(b.end_mm))
        i, j, k = np.rint(grid_index @ [*mid, 1.0])[:3].astype(int)
        if all(0 <= v < s for v, s in zip((i, j, k), c.ct.shape, strict=True)):
            if b.radius_mm >= np.sqrt(3) / 2 * voxel:
                assert c.airway[i, j, k] == 1, f"branch {b.id} centre not in the ground truth"
            else:
                around = c.airway[
                    max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2, max(k - 1, 0) : k + 2
                ]
                assert around.any(), f"branch {b.id} centre not next to the ground truth"


def test_peripheral_airways_lie_in_the_lung_mask(cpu_case):
    c = cpu_case
    arr = c.tree.arrays()
    # voxels of the ground truth far from the trachea and main bronchi
    central = np.zeros(c.airway.shape, bool)
    for b in c.tree.branches:
        if b.generation <= 1:
            idx = centreline_voxels(_grid(c), b.start_mm, b.end_mm)
            central[tuple(idx.T)] = True
    far = (
        ndimage.distance_transform_edt(~central, sampling=c.spacing)
        > arr["radius"].max() + 3 * c.spacing[0]
    )
    periph = (c.airway == 1) & far
    assert periph.sum() > 500
    assert (c.lung[periph] == 1).mean() > 0.97


def _grid(c):
    return Grid(shape=c.ct.shape, spacing=tuple(c.spacing), origin=tuple(c.affine[:3, 3]))


def test_cpu_phantoms_have_three_real_classes(cpu_case):
    """Issue 18: the cpu cohort has the paper's class 3: at least a quarter of a phantom's
    parsed branches measure 2 mm or less (real trees: about half, atm_001 88 of 182)."""
    c = cpu_case
    tree = parse_tree(c.airway, c.spacing, affine=c.affine, name=c.id)
    diameters = np.array([b.diameter_mm for b in tree.branches.values()])
    assert np.mean(diameters <= 2.0) >= 0.25
    summary = class_summary(tree, anatomy_labels(tree))
    assert all(summary["voxels"][k] > 0 for k in (1, 2, 3))
    assert summary["branches"][3] >= 0.25 * tree.n_branches


def test_cpu_phantom_diameters_are_measured_not_floored(cpu_case):
    """Issue 30: 2 x the distance to the nearest background voxel centre read every class-3
    branch of the 1 mm phantoms as exactly 2.00 mm. Measured from the cross-sections, the
    thin branches spread out, and the well-resolved ones (>= 2.5 mm) agree with the
    generator's own radii (median within 10%)."""
    c = cpu_case
    tree = parse_tree(c.airway, c.spacing, affine=c.affine, name=c.id)
    measured = {b.id: b.diameter_mm for b in tree.branches.values() if b.generation >= 2}
    small = np.array([d for d in measured.values() if d <= 2.0])
    assert len(small) >= 5
    assert len(np.unique(np.round(small, 2))) >= 0.8 * len(small)
    from deeptree.anatomy import generator_diameters

    true = generator_diameters(tree, c.tree, c.affine)
    wide = [b for b in measured if true[b] >= 2.5]
    assert len(wide) >= 10
    assert np.median([abs(measured[b] / true[b] - 1) for b in wide]) <= 0.10


def test_hu_statistics_per_tissue(cpu_case):
    c = cpu_case
    ct = c.ct.astype(float)
    airway, lung = c.airway.astype(bool), c.lung.astype(bool)
    # lumen: deep inside the trachea and main bronchi (two voxels from the wall)
    deep = ndimage.binary_erosion(airway, iterations=2)
    assert deep.sum() > 200
    assert -1010 <= np.median(ct[deep]) <= -960
    # parenchyma: lung voxels away from the airways
    paren = lung & ~ndimage.binary_dilation(airway, iterations=3)
    med = np.median(ct[paren])
    assert -900 <= med <= -830, med
    q25, q75 = np.percentile(ct[paren], [25, 75])
    assert 20 <= q75 - q25 <= 150  # textured, not flat, not noise-dominated
    # airway wall of the trachea: a ring just outside the lumen is far denser than air
    trachea = c.tree.branches[0]
    grid = _grid(c)
    x, y, z = grid.axes()
    a, e = np.asarray(trachea.start_mm), np.asarray(trachea.end_mm)
    u = (e - a) / np.linalg.norm(e - a)
    rel = np.stack(np.broadcast_arrays(x - a[0], y - a[1], z - a[2]), axis=-1)
    t = rel @ u
    radial = np.linalg.norm(rel - t[..., None] * u, axis=-1)
    ring = (
        (np.abs(radial - (trachea.radius_mm + trachea.wall_mm / 2)) < 0.5)
        & (t > 30)
        & (t < trachea.length_mm - 10)
    )
    assert ring.sum() > 30
    assert np.median(ct[ring]) > -450
    # outside air in a corner of the field of view
    corner = ct[:5, :5, :]
    assert abs(corner.mean() + 1000) < 15


def test_mucus_plugs_raise_lumen_density_but_stay_in_ground_truth(cpu_case):
    c = cpu_case
    assert len(c.tree.plugs) == phantom_profile("cpu").n_plugs
    inv = np.linalg.inv(c.affine)
    for plug in c.tree.plugs:
        b = c.tree.branches[plug["branch"]]
        a, e = np.asarray(b.start_mm), np.asarray(b.end_mm)
        mid = a + 0.5 * (plug["t0"] + plug["t1"]) * (e - a)
        i, j, k = np.rint(inv @ [*mid, 1.0])[:3].astype(int)
        assert c.airway[i, j, k] == 1
        assert c.ct[i, j, k] > -750, (plug, c.ct[i, j, k])


def test_same_seed_same_bytes_other_seed_other_case(smoke_case):
    again = generate_case("smoke", seed=0)
    assert again.ct.tobytes() == smoke_case.ct.tobytes()
    assert again.airway.tobytes() == smoke_case.airway.tobytes()
    assert again.tree == smoke_case.tree
    other = generate_case("smoke", seed=1)
    assert other.ct.tobytes() != smoke_case.ct.tobytes()


# --------------------------------------------------------------------------------------------
# bad parameters
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spacing", [(0.0, 2.6, 2.6), (-1.0, -1.0, -1.0)])
def test_bad_spacing(spacing):
    with pytest.raises(io.InputError, match="spacing"):
        generate_case("smoke", 0, spacing=spacing)


def test_spacing_too_coarse_for_the_trachea():
    with pytest.raises(io.InputError, match="too coarse for a trachea"):
        generate_case("smoke", 0, spacing=(6.0, 6.0, 6.0))


def test_volume_too_small_for_the_trachea():
    with pytest.raises(io.InputError, match="too small for the lungs and the trachea"):
        generate_case("smoke", 0, shape=(64, 64, 20))


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile"):
        generate_case("tiny", 0)


# --------------------------------------------------------------------------------------------
# files: ATM'22 layout, cohort, resume, atomic writes
# --------------------------------------------------------------------------------------------
def test_write_case_atm22_layout(smoke_case, tmp_path):
    paths = write_case(smoke_case, tmp_path)
    assert paths["image"] == tmp_path / "imagesTr" / "PHANTOM_000_0000.nii.gz"
    assert paths["label"] == tmp_path / "labelsTr" / "PHANTOM_000.nii.gz"
    assert paths["lung"] == tmp_path / "lungsTr" / "PHANTOM_000.nii.gz"
    assert paths["tree"] == tmp_path / "treesTr" / "PHANTOM_000.json"
    [listed] = io.list_cases(tmp_path)
    case = io.load_case(listed.image, listed.label)
    assert case.id == "PHANTOM_000"
    np.testing.assert_array_equal(case.ct, smoke_case.ct)
    assert case.ct.dtype == np.int16
    np.testing.assert_array_equal(case.label, smoke_case.airway)
    np.testing.assert_allclose(case.affine, smoke_case.affine)
    np.testing.assert_allclose(case.spacing, smoke_case.spacing, rtol=1e-6)
    assert read_tree(paths["tree"]) == smoke_case.tree


def test_cohort_resumes_and_never_leaves_partial_files(tmp_path, monkeypatch):
    import nibabel as nib

    real_save = nib.save
    calls = {"n": 0}

    def interrupted_save(img, filename):
        calls["n"] += 1
        if calls["n"] == 5:  # second NIfTI of the second case: killed half-way
            Path(filename).write_bytes(b"half a file")
            raise KeyboardInterrupt
        return real_save(img, filename)

    monkeypatch.setattr(nib, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        generate_cohort(tmp_path, "smoke", n=3, seed=7, progress=False)
    monkeypatch.setattr(nib, "save", real_save)
    assert not case_paths(tmp_path, "PHANTOM_001")["label"].exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == []
    first = case_paths(tmp_path, "PHANTOM_000")
    stamps = {k: p.stat().st_mtime_ns for k, p in first.items()}
    ids = generate_cohort(tmp_path, "smoke", n=3, seed=7, progress=False)
    assert ids == ["PHANTOM_000", "PHANTOM_001", "PHANTOM_002"]
    assert {k: p.stat().st_mtime_ns for k, p in first.items()} == stamps  # not regenerated
    assert len(io.list_cases(tmp_path)) == 3
    # a case is the same whichever run produced it
    fresh = generate_case("smoke", (7, 1), case_id="PHANTOM_001")
    on_disk = io.read_nifti(case_paths(tmp_path, "PHANTOM_001")["image"]).array
    np.testing.assert_array_equal(on_disk, fresh.ct)


def test_atomic_write_failure_leaves_no_file(smoke_case, tmp_path, monkeypatch):
    import nibabel as nib

    def broken_save(img, filename):
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_case(smoke_case, tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_cli_phantom(tmp_path, capsys):
    from deeptree.cli import main

    out = tmp_path / "cohort"
    assert (
        main(["phantom", "--profile", "smoke", "--n", "1", "--out", str(out), "--no-progress"]) == 0
    )
    assert (out / "imagesTr" / "PHANTOM_000_0000.nii.gz").is_file()
    assert main(["phantom", "--profile", "huge", "--out", str(out)]) == 2
    assert "unknown profile" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# CT around a given airway mask
# --------------------------------------------------------------------------------------------
def _y_tree(shape=(60, 50, 70), spacing=2.0):
    """A hand-built airway: a vertical trachea that splits into two bronchi (lumen mask)."""
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    ci, cj = shape[0] / 2, shape[1] / 2
    trachea = ((i - ci) ** 2 + (j - cj) ** 2 <= 9) & (k >= 45)
    bronchi = np.zeros(shape, bool)
    for sign in (1, -1):
        bi = ci + sign * (45 - k) * 0.6
        bronchi |= ((i - bi) ** 2 + (j - cj) ** 2 <= 4) & (k >= 20) & (k < 47)
    return trachea | bronchi


def test_simulate_ct_around_a_hand_built_mask():
    from deeptree.phantom import simulate_ct

    mask = _y_tree()
    before = mask.copy()
    ct = simulate_ct(mask, (2.0, 2.0, 2.0), np.random.default_rng(0))
    np.testing.assert_array_equal(mask, before)
    assert ct.dtype == np.int16 and ct.shape == mask.shape
    deep = ndimage.binary_erosion(mask, iterations=1)
    assert np.median(ct[deep]) < -900  # air in the lumen
    ring = ndimage.binary_dilation(mask, iterations=1) & ~mask
    assert np.median(ct[ring]) > np.median(ct[deep]) + 300  # a wall around it
    again = simulate_ct(mask.astype(np.uint8), (2.0, 2.0, 2.0), np.random.default_rng(0))
    assert again.tobytes() == ct.tobytes()


def test_simulate_ct_bad_inputs():
    from deeptree.phantom import simulate_ct

    mask = _y_tree()
    rng = np.random.default_rng(0)
    with pytest.raises(io.InputError, match="binary"):
        simulate_ct(mask * 2, (2.0, 2.0, 2.0), rng)
    with pytest.raises(io.InputError, match="empty"):
        simulate_ct(np.zeros((10, 10, 10), bool), (2.0, 2.0, 2.0), rng)
    with pytest.raises(io.InputError, match="spacing"):
        simulate_ct(mask, (2.0, -1.0, 2.0), rng)
    with pytest.raises(io.InputError, match="does not match"):
        simulate_ct(mask, (2.0, 2.0, 2.0), rng, lung=np.ones((5, 5, 5), bool))


@pytest.mark.slow
def test_simulate_ct_around_the_real_atm_tree(atm001_path):
    from deeptree.phantom import simulate_ct

    vol = io.read_nifti(atm001_path)
    step = (4, 4, 6)  # 0.82 x 0.82 x 0.5 mm -> 3.3 x 3.3 x 3 mm, for speed
    mask = vol.array[:: step[0], :: step[1], :: step[2]] > 0
    spacing = tuple(s * f for s, f in zip(vol.spacing, step, strict=True))
    ct = simulate_ct(mask, spacing, np.random.default_rng(0), affine=vol.affine)
    assert ct.shape == mask.shape and ct.dtype == np.int16
    trachea = ndimage.binary_erosion(mask, iterations=1)
    assert np.median(ct[trachea]) < -850
    # parenchyma: dark regions that do not touch the sides of the volume (outside air does)
    labels, _ = ndimage.label((ct < -600) & ~ndimage.binary_dilation(mask, iterations=2))
    outside = np.unique(np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel()]))
    paren = (labels > 0) & ~np.isin(labels, outside)
    assert paren.sum() * np.prod(spacing) / 1e6 > 1.5  # litres of lung
    assert -920 <= np.median(ct[paren]) <= -820


# --------------------------------------------------------------------------------------------
# realism helpers
# --------------------------------------------------------------------------------------------
def test_tissue_samples_on_a_hand_built_volume():
    from deeptree.phantom.stats import hu_summary, tissue_samples

    ct = np.full((20, 20, 20), -880.0)
    airway = np.zeros(ct.shape, bool)
    airway[8:12, 8:12, :] = True
    ct[airway] = -1000.0
    wall = ndimage.binary_dilation(airway) & ~airway
    ct[wall] = 30.0
    lung = np.ones(ct.shape, bool)
    s = tissue_samples(ct, airway, lung, (1.0, 1.0, 1.0), margin_mm=2.0)
    assert (
        set(s["lumen"]) == {-1000.0}
        and set(s["wall"]) == {30.0}
        and set(s["parenchyma"]) == {-880.0}
    )
    assert hu_summary(s["wall"]) == {
        "median": 30.0,
        "q25": 30.0,
        "q75": 30.0,
        "iqr": 0.0,
        "n": int(wall.sum()),
    }
    with pytest.raises(io.InputError, match="airway"):
        tissue_samples(ct, airway[:-1], lung, (1.0, 1.0, 1.0))


def test_tissue_samples_on_the_real_ct(cip_ct64_dir):
    from deeptree.phantom.stats import tissue_samples

    ct, airway, lung = (
        io.read_nifti(cip_ct64_dir / f"{n}.nii.gz") for n in ("ct", "airway", "lung")
    )
    s = tissue_samples(ct.array, airway.array, lung.array, ct.spacing)
    assert -960 < np.median(s["parenchyma"]) < -850
    assert np.median(s["lumen"]) < np.median(s["parenchyma"]) < np.median(s["wall"])


def test_branch_detection_and_generation_table(smoke_case):
    from deeptree.phantom.stats import branch_detection, format_table, generation_table

    full = branch_detection(smoke_case.airway, smoke_case.tree, smoke_case.affine)
    assert np.nanmin(full) == 1.0  # the ground truth holds every centreline
    none = branch_detection(np.zeros_like(smoke_case.airway), smoke_case.tree, smoke_case.affine)
    assert np.nanmax(none) == 0.0
    rows = generation_table(smoke_case.tree)
    assert [r["branches"] for r in rows[:2]] == [1, 2]
    assert sum(r["branches"] for r in rows) == len(smoke_case.tree.branches)
    assert "diameter_mm" in format_table(rows).splitlines()[0]


def test_notebook_figures(smoke_case):
    import matplotlib

    matplotlib.use("Agg")
    from deeptree.phantom.figures import plot_branching_rules, plot_hu_histograms
    from deeptree.phantom.stats import tissue_samples

    c = smoke_case
    assert len(plot_branching_rules(c.tree).axes) == 3
    fig = plot_hu_histograms({"phantom": tissue_samples(c.ct, c.airway, c.lung, c.spacing)})
    assert len(fig.axes) == 3


# the book shows a figure at most about 800 px wide: a figure W inches wide (100 dpi) is shrunk
# to 800 px, so text of f points is f / 72 * 800 / W px tall, which should stay >= 8 px (a
# figure narrower than 8 inches is shown at its own size)
BOOK_WIDTH_PX, MIN_TEXT_PX = 800, 8


def _smallest_text_px(fig) -> float:
    """Height in px of the figure's smallest visible text when shown BOOK_WIDTH_PX wide."""
    from matplotlib.text import Text

    fig.canvas.draw()  # creates the tick labels
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    width_in = fig.get_size_inches()[0]
    return min(sizes) / 72 * BOOK_WIDTH_PX / max(width_in, BOOK_WIDTH_PX / 100)


def test_notebook_figures_text_is_readable_at_the_book_width(smoke_case):
    import matplotlib

    matplotlib.use("Agg")
    from deeptree.phantom.figures import plot_branching_rules, plot_hu_histograms
    from deeptree.phantom.stats import tissue_samples

    c = smoke_case
    samples = tissue_samples(c.ct, c.airway, c.lung, c.spacing)
    for fig in (plot_branching_rules(c.tree), plot_hu_histograms({"a": samples, "b": samples})):
        assert _smallest_text_px(fig) >= MIN_TEXT_PX
