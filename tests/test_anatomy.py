"""Tests of deeptree.anatomy on hand-built trees and on the real mask atm_001."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from tree_builders import binary_tree, rasterize, voxel_at

from deeptree.anatomy import anatomy_labels, branch_classes, class_summary
from deeptree.config import AnatomyConfig
from deeptree.io import InputError, read_nifti
from deeptree.tree import parse_tree


@pytest.fixture(scope="module")
def drawn_tree():
    # radii 3.0, 2.1, 1.5, 1.05 mm -> diameters 6.0, 4.2, 3.0, 2.1 ... with depth 4 the
    # last generation is 0.72^4 * 3.0 = 0.81 mm radius (1.6 mm diameter): class 3
    spacing = (0.5, 0.5, 0.5)
    mask, drawn = rasterize(
        binary_tree(depth=4, trachea_length=30.0, trachea_radius=3.0, radius_ratio=0.72), spacing
    )
    return parse_tree(mask, spacing), drawn, spacing


def test_classes_follow_generation_and_diameter(drawn_tree):
    tree, drawn, spacing = drawn_tree
    assert len(tree.branches) == 31
    labels = anatomy_labels(tree)
    assert labels.dtype == np.uint8 and labels.shape == tree.mask.shape
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert np.array_equal(labels > 0, tree.mask)
    classes = branch_classes(tree)
    for d in drawn:
        branch = int(tree.branch_labels[voxel_at(d.point(0.5), spacing)])
        value = labels[voxel_at(d.point(0.5), spacing)]
        assert value == classes[branch]
        if d.generation <= 1:
            assert value == 1
        elif 2 * d.radius >= 3.0:  # drawn diameter far above 2 mm
            assert value == 2
        elif 2 * d.radius <= 1.7:  # far below
            assert value == 3
    # every voxel carries the class of its branch
    for branch, value in classes.items():
        assert np.all(labels[tree.branch_labels == branch] == value)


def test_thresholds_are_parameters(drawn_tree):
    tree, _, _ = drawn_tree
    default = class_summary(tree, anatomy_labels(tree))
    everything_small = AnatomyConfig(small_diameter_mm=100.0)
    summary = class_summary(tree, anatomy_labels(tree, everything_small), everything_small)
    assert summary["branches"] == {1: 3, 2: 0, 3: 28}
    only_trachea = dataclasses.replace(AnatomyConfig(), central_max_generation=0)
    summary = class_summary(tree, anatomy_labels(tree, only_trachea), only_trachea)
    assert summary["branches"][1] == 1
    assert sum(default["branches"].values()) == 31
    assert default["branches"][1] == 3
    assert sum(default["voxels"].values()) == int(tree.mask.sum())


def test_bad_config_is_a_clear_error(drawn_tree):
    tree, _, _ = drawn_tree
    with pytest.raises(InputError, match="small_diameter_mm"):
        anatomy_labels(tree, AnatomyConfig(small_diameter_mm=0.0))
    with pytest.raises(InputError, match="central_max_generation"):
        anatomy_labels(tree, AnatomyConfig(central_max_generation=-1))
    with pytest.raises(InputError, match="shape"):
        class_summary(tree, np.zeros((2, 2, 2), dtype=np.uint8))


@pytest.fixture(scope="module")
def atm001_labels(atm001_path):
    volume = read_nifti(atm001_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tree = parse_tree(volume.array, volume.spacing, name=str(atm001_path))
    return tree, anatomy_labels(tree)


@pytest.mark.slow
def test_atm001_three_classes(atm001_labels):
    tree, labels = atm001_labels
    summary = class_summary(tree, labels)
    assert sum(summary["voxels"].values()) == int(tree.mask.sum())
    assert all(n > 0 for n in summary["branches"].values())
    assert all(n > 0 for n in summary["voxels"].values())
    # trachea and both main bronchi, and nothing else, are class 1
    trachea = tree.branches[tree.trachea_id]
    central = {tree.trachea_id, *trachea.children}
    assert len(central) == 3
    assert summary["branches"][1] == 3
    box = tree._box  # the mask's bounding box (labels are 0 outside it, checked above)
    in_central = np.isin(tree.branch_labels[box], list(central))
    assert np.array_equal(in_central, labels[box] == 1)
    # class 1 holds the largest lumen volume: the trachea alone is a big share of the tree
    assert summary["voxels"][1] == max(summary["voxels"].values())
    # the small branches are many: more than a third of all branches (measured: 88 of 182,
    # against 91 in class 2: on this tree class 3 is NOT the most numerous, see RESULTS.md)
    assert summary["branches"][3] > len(tree.branches) / 3
    # and they are thin: class 3 holds far fewer voxels than class 2
    assert summary["voxels"][3] < summary["voxels"][2]


# --------------------------------------------------------------------------------------------
# the command line: deeptree labels --in labelsTr --out anatomyTr
# --------------------------------------------------------------------------------------------
def test_cli_labels_a_folder(tmp_path, capsys):
    from deeptree.cli import main
    from deeptree.io import write_nifti

    spacing = (0.8, 0.8, 0.6)
    mask, _ = rasterize(binary_tree(depth=2, trachea_length=24.0, trachea_radius=4.0), spacing)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    labels_dir, out_dir = tmp_path / "labelsTr", tmp_path / "anatomyTr"
    write_nifti(labels_dir / "CASE_001.nii.gz", mask, affine)
    write_nifti(labels_dir / "CASE_002.nii.gz", mask.astype(np.uint8) * 2, affine)  # not binary
    status = main(["labels", "--in", str(labels_dir), "--out", str(out_dir)])
    assert status == 1  # one case failed, and the run said so
    err = capsys.readouterr()
    assert "CASE_002.nii.gz" in err.out + err.err and "binary" in err.out + err.err
    written = read_nifti(out_dir / "CASE_001.nii.gz")
    assert written.array.dtype == np.uint8
    assert np.allclose(written.affine, affine)
    header_spacing = read_nifti(labels_dir / "CASE_001.nii.gz").spacing  # float32 zooms
    expected = anatomy_labels(parse_tree(mask, header_spacing))
    assert np.array_equal(written.array, expected)
    assert not (out_dir / "CASE_002.nii.gz").exists()
    # no temporary left; .deeptree-labels.json records the complete cases
    assert sorted(p.name for p in out_dir.iterdir()) == [".deeptree-labels.json", "CASE_001.nii.gz"]
    # a second run keeps what is there; the input folder is never an output
    before = (out_dir / "CASE_001.nii.gz").stat().st_mtime_ns
    main(["labels", "--in", str(labels_dir), "--out", str(out_dir)])
    assert (out_dir / "CASE_001.nii.gz").stat().st_mtime_ns == before
    assert main(["labels", "--in", str(labels_dir), "--out", str(labels_dir)]) == 2
    assert main(["labels", "--in", str(tmp_path / "missing"), "--out", str(out_dir)]) == 2
