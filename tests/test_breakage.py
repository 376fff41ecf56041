"""Tests of deeptree.breakage on hand-built capsule trees and on a region of atm_001."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi
from tree_builders import binary_tree, rasterize

from deeptree.attention import breakage_attention, breakage_centres
from deeptree.breakage import (
    Breakage,
    peripheral_branches,
    run_length_range,
    simulate_breakage,
)
from deeptree.io import InputError, read_nifti
from deeptree.masks import label_components
from deeptree.tree import parse_tree


@pytest.fixture(scope="module")
def capsule_tree():
    """A binary capsule tree with generations 0..4 (15 peripheral leaves), 1 mm voxels."""
    mask, _ = rasterize(binary_tree(depth=4, trachea_radius=4.0), (1.0, 1.0, 1.0))
    return mask.astype(np.uint8), parse_tree(mask, (1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def atm_region(atm001_path):
    """A real peripheral region of ATM_001 (one lung's lower airways), parsed."""
    volume = read_nifti(atm001_path)
    mask = np.ascontiguousarray(volume.array[250:366, 197:334, 218:420])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the crop cuts off a few pieces
        tree = parse_tree(mask, volume.spacing)
    return mask, tree


def check_simulation(mask: np.ndarray, tree, result: Breakage, run_fraction=(0.1, 0.3)) -> None:
    """Every promise of simulate_breakage, checked from the arrays themselves."""
    gt = mask.astype(bool)
    # Y^B inside the GT, broken = GT - Y^B, and the gaps' voxels make up Y^B exactly
    assert result.label.dtype == bool and result.broken.dtype == bool
    assert not (result.label & ~gt).any()
    np.testing.assert_array_equal(result.broken, gt & ~result.label)
    from_gaps = np.zeros_like(result.label)
    for gap in result.gaps:
        assert not from_gaps[tuple(gap.voxels.T)].any()  # gaps do not overlap
        from_gaps[tuple(gap.voxels.T)] = True
    np.testing.assert_array_equal(from_gaps, result.label)

    peripheral = set(peripheral_branches(tree))
    cut = [gap.branch for gap in result.gaps]
    assert len(cut) == len(set(cut)) and result.n_target <= len(peripheral)
    # as many gaps as asked, unless every peripheral branch was tried
    assert len(cut) == result.n_target or len(cut) + result.n_rejected == len(peripheral)
    components, n = label_components(result.broken)
    assert n == result.n_components
    for gap in result.gaps:
        # only peripheral branches; a contiguous run of 10-30% of the ordered skeleton
        branch = tree.branches[gap.branch]
        assert gap.branch in peripheral and branch.is_leaf and branch.generation >= 3
        assert run_fraction[0] <= gap.run_fraction <= run_fraction[1]
        assert gap.n_skeleton == branch.n_skeleton
        path = tree.branch_path(gap.branch)
        np.testing.assert_array_equal(gap.run, path[gap.run_start : gap.run_stop])
        assert 1 <= gap.run_start and gap.run_stop <= len(path) - 1  # inside the branch
        # the removed run is in Y^B, the gap's centre is one of its voxels
        assert result.label[tuple(gap.run.T)].all()
        assert result.label[gap.centre]
        # the gap really disconnects its branch: the parts on both sides are different
        # 26-components of the broken mask, and the distal part holds only this branch
        assert result.broken[gap.proximal_voxel] and result.broken[gap.distal_voxel]
        proximal = components[gap.proximal_voxel]
        distal = components[gap.distal_voxel]
        assert proximal != distal and proximal == gap.proximal_component
        assert distal in gap.distal_components and proximal not in gap.distal_components
        for label in gap.distal_components:
            assert set(np.unique(tree.branch_labels[components == label])) == {gap.branch}
    # nothing else got disconnected: the uncut branches all lie in one component
    uncut = tree.mask & result.broken & ~np.isin(tree.branch_labels, cut)
    assert len(np.unique(components[uncut])) == 1


def test_simulation_on_a_capsule_tree(capsule_tree):
    mask, tree = capsule_tree
    before = mask.copy()
    result = simulate_breakage(mask, tree, np.random.default_rng(0))
    np.testing.assert_array_equal(mask, before)  # input untouched
    assert result.n_peripheral == len(peripheral_branches(tree)) >= 8
    assert result.n_target == int(np.floor(0.5 * result.n_peripheral + 0.5))
    assert len(result.gaps) == result.n_target
    check_simulation(mask, tree, result)
    # one cut-off piece (or two for a fused fork) per gap, plus the tree itself
    assert result.n_components >= 1 + len(result.gaps)


@pytest.mark.parametrize("seed", range(12))
def test_simulation_promises_hold_for_many_seeds(capsule_tree, seed):
    mask, tree = capsule_tree
    fraction = (0.1, 0.3) if seed % 2 else (0.2, 0.25)
    result = simulate_breakage(mask, tree, seed, branch_fraction=0.7, run_fraction=fraction)
    check_simulation(mask, tree, result, fraction)


def test_same_seed_same_bytes_other_seed_other_gaps(capsule_tree):
    mask, tree = capsule_tree
    a = simulate_breakage(mask, tree, np.random.default_rng(7))
    b = simulate_breakage(mask, tree, np.random.default_rng(7))
    c = simulate_breakage(mask, tree, 7)  # an int is a seed
    assert a.label.tobytes() == b.label.tobytes() == c.label.tobytes()
    assert [g.record() for g in a.gaps] == [g.record() for g in b.gaps]
    others = [simulate_breakage(mask, tree, s).label.tobytes() for s in (8, 9)]
    assert any(o != a.label.tobytes() for o in others)


def test_branch_fraction_extremes(capsule_tree):
    mask, tree = capsule_tree
    none = simulate_breakage(mask, tree, 0, branch_fraction=0.0)
    assert none.gaps == [] and not none.label.any() and none.n_components == 1
    every = simulate_breakage(mask, tree, 0, branch_fraction=1.0)
    assert every.n_target == every.n_peripheral
    assert len(every.gaps) + every.n_rejected == every.n_peripheral
    check_simulation(mask, tree, every)


def test_broken_tree_attention_finds_the_gaps(capsule_tree):
    mask, tree = capsule_tree
    result = simulate_breakage(mask, tree, 3)
    h_bar = breakage_attention(result.broken)
    centres = breakage_centres(h_bar)
    assert len(centres) >= 1
    # every gap lies in strong attention: its centre is within a few voxels of both parts
    for gap in result.gaps:
        assert h_bar[gap.centre] > 0.5
    # and every detected centre is near a simulated gap
    gap_centres = np.array([g.centre for g in result.gaps])
    distance = np.linalg.norm(centres[:, None, :] - gap_centres[None], axis=-1).min(axis=1)
    assert distance.max() <= 6


def test_run_length_range():
    assert run_length_range(10) == (1, 3)
    assert run_length_range(30) == (3, 9)  # 0.1 * 30 is not rounded up to 4
    assert run_length_range(5) == (1, 1)
    lo, hi = run_length_range(2)
    assert lo > hi  # no run fits


def test_bad_input(capsule_tree):
    mask, tree = capsule_tree
    with pytest.raises(InputError, match="binary"):
        simulate_breakage(mask * 2, tree, 0, name="gt.nii.gz")
    with pytest.raises(InputError, match="empty"):
        simulate_breakage(np.zeros_like(mask), tree, 0)
    with pytest.raises(InputError, match="shape"):
        simulate_breakage(mask[1:], tree, 0)
    with pytest.raises(InputError, match="outside"):
        other = np.zeros_like(mask)
        other[: mask.shape[0] // 2] = mask[: mask.shape[0] // 2]
        simulate_breakage(other, tree, 0)
    with pytest.raises(InputError, match="branch_fraction"):
        simulate_breakage(mask, tree, 0, branch_fraction=1.5)
    with pytest.raises(InputError, match="run_fraction"):
        simulate_breakage(mask, tree, 0, run_fraction=(0.3, 0.1))
    with pytest.raises(InputError, match="rng"):
        simulate_breakage(mask, tree, None)
    with pytest.raises(InputError, match="rng"):
        simulate_breakage(mask, tree, "seed")


def test_parsed_holes_are_accepted(capsule_tree):
    # parse_tree fills holes: a GT with a hole still matches its tree
    mask, _ = capsule_tree
    holed = mask.copy()
    i, j, k = np.unravel_index(np.argmax(ndi.distance_transform_edt(mask)), mask.shape)
    holed[i, j, k] = 0  # the deepest voxel of the lumen
    tree = parse_tree(holed, (1.0, 1.0, 1.0))
    result = simulate_breakage(holed, tree, 1)
    assert not result.label[i, j, k] and not result.broken[i, j, k]


@pytest.mark.slow
def test_simulation_on_real_airway_region(atm_region):
    mask, tree = atm_region
    result = simulate_breakage(mask, tree, np.random.default_rng(2026))
    assert result.n_peripheral >= 20 and len(result.gaps) == result.n_target
    check_simulation(mask, tree, result)


def test_cli_simulate_then_attention(capsule_tree, tmp_path, capsys):
    import json

    from deeptree.cli import main
    from deeptree.io import write_nifti

    mask, tree = capsule_tree
    data = tmp_path / "data" / "labelsTr"
    write_nifti(data / "CASE_001.nii.gz", mask, np.eye(4))
    write_nifti(data / "CASE_002.nii.gz", mask * 2, np.eye(4))  # not binary: reported
    out = tmp_path / "out"
    status = main(
        ["simulate", str(tmp_path / "data"), "--out", str(out), "--attention", "--no-progress"]
    )
    assert status == 1
    assert "CASE_002" in capsys.readouterr().err
    record = json.loads((out / "CASE_001_gaps.json").read_text())
    broken = read_nifti(out / "CASE_001_broken.nii.gz").array
    label = read_nifti(out / "CASE_001_breakage.nii.gz").array
    expected = simulate_breakage(mask, tree, record_rng(record))
    np.testing.assert_array_equal(broken, expected.broken)
    np.testing.assert_array_equal(label, expected.label)
    assert record["n_gaps"] == len(expected.gaps) == len(record["gaps"])
    assert not (out / "CASE_002_broken.nii.gz").exists()
    simulated_attention = read_nifti(out / "CASE_001_attention.nii.gz").array
    np.testing.assert_array_equal(simulated_attention, breakage_attention(expected.broken))

    status = main(["attention", str(out / "CASE_001_broken.nii.gz"), "--out", str(out), "--save-h"])
    assert status == 0
    h_bar = read_nifti(out / "CASE_001_broken_attention.nii.gz").array
    np.testing.assert_array_equal(h_bar, breakage_attention(broken))
    centres = json.loads((out / "CASE_001_broken_centres.json").read_text())
    assert centres["n_components"] == record["n_components"]
    assert centres["centres"] == breakage_centres(h_bar).tolist()
    h = read_nifti(out / "CASE_001_broken_h.nii.gz").array
    assert h.max() == pytest.approx(19.0)  # clipped at the cutoff alpha + 14


def record_rng(record):
    from deeptree.cli.simulate import case_rng

    return case_rng(record["seed"][0], record["seed"][1])


def test_crop_around():
    from deeptree.breakage import crop_around

    assert crop_around((10, 10, 10), 8, (30, 30, 30)) == (slice(6, 14),) * 3
    assert crop_around((1, 29, 15), 8, (30, 30, 30)) == (slice(0, 8), slice(22, 30), slice(11, 19))
    assert crop_around((5, 5, 5), (64, 4, 4), (20, 30, 30))[0] == slice(0, 20)


def test_cli_dataset_layout_is_read_by_the_viewer(capsule_tree, tmp_path):
    from deeptree.cli import main
    from deeptree.io import write_nifti
    from deeptree.viz.case_folder import read_centres

    mask, _ = capsule_tree
    write_nifti(tmp_path / "labelsTr" / "CASE_001.nii.gz", mask, np.eye(4))
    args = [str(tmp_path), "--out", str(tmp_path), "--dataset-layout", "--no-progress"]
    assert main(["simulate", *args]) == 0
    broken = read_nifti(tmp_path / "brokenTr" / "CASE_001.nii.gz").array
    assert (tmp_path / "breakageTr" / "CASE_001.nii.gz").is_file()
    assert (tmp_path / "gapsTr" / "CASE_001.json").is_file()
    write_nifti(tmp_path / "stage1Tr" / "CASE_001.nii.gz", broken, np.eye(4))
    assert main(["attention", str(tmp_path / "stage1Tr"), *args[1:]]) == 0
    centres, _ = read_centres(tmp_path / "centresTr" / "CASE_001.json")
    np.testing.assert_array_equal(centres, breakage_centres(breakage_attention(broken)))
    assert (tmp_path / "attentionTr" / "CASE_001.nii.gz").is_file()
