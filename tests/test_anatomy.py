"""Tests of deeptree.anatomy on hand-built trees and on the real mask atm_001."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from tree_builders import binary_tree, rasterize, voxel_at

from deeptree.anatomy import anatomy_labels, branch_classes, class_summary, generator_diameters
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


# --------------------------------------------------------------------------------------------
# a phantom's classes from its generator's radii (issue 30)
# --------------------------------------------------------------------------------------------
def spec_of(drawn, radius=None):
    """The drawn capsules as a phantom generator's tree (world mm = the volume's mm frame);
    ``radius`` replaces every radius of generation 2 and deeper."""
    from deeptree.phantom.growth import AirwayTreeSpec
    from deeptree.phantom.growth import Branch as SpecBranch

    branches = tuple(
        SpecBranch(
            id=d.index,
            parent=d.parent,
            generation=d.generation,
            start_mm=tuple(d.start),
            end_mm=tuple(d.end),
            radius_mm=d.radius if radius is None or d.generation < 2 else radius,
            wall_mm=0.5,
            flow=1.0,
            side="T",
        )
        for d in drawn
    )
    return AirwayTreeSpec(branches)


def test_generator_diameters_are_the_drawn_ones(drawn_tree):
    tree, drawn, spacing = drawn_tree
    true = generator_diameters(tree, spec_of(drawn), np.diag([*spacing, 1.0]))
    assert set(true) == set(tree.branches)
    for d in drawn:
        branch = int(tree.branch_labels[voxel_at(d.point(0.5), spacing)])
        # a parsed branch's first skeleton voxels may lie nearer its parent's axis
        assert true[branch] == pytest.approx(2 * d.radius, rel=0.05), d.index


def test_given_diameters_split_classes_2_and_3(drawn_tree):
    tree, _, _ = drawn_tree
    measured = branch_classes(tree)
    for value, expected in ((1.0, 3), (5.0, 2)):
        classes = branch_classes(tree, diameters=dict.fromkeys(tree.branches, value))
        for b, c in classes.items():
            assert c == (1 if measured[b] == 1 else expected)
    labels = anatomy_labels(tree, diameters=dict.fromkeys(tree.branches, 1.0))
    assert set(np.unique(labels)) == {0, 1, 3}
    with pytest.raises(InputError, match="diameters: no value for branch"):
        branch_classes(tree, diameters={1: 10.0})


def write_phantom_like_cohort(root, spacing=(0.5, 0.5, 0.5), spec_radius=None):
    """A capsule tree in the phantom cohort layout (imagesTr, labelsTr, treesTr)."""
    import json

    from deeptree.io import write_nifti

    mask, drawn = rasterize(
        binary_tree(depth=2, trachea_length=20.0, trachea_radius=3.0, radius_ratio=0.72), spacing
    )
    affine = np.diag([*spacing, 1.0])
    write_nifti(root / "labelsTr" / "PHANTOM_000.nii.gz", mask.astype(np.uint8), affine)
    ct = np.where(mask, -1000, 0).astype(np.int16)
    write_nifti(root / "imagesTr" / "PHANTOM_000_0000.nii.gz", ct, affine, dtype=np.int16)
    (root / "treesTr").mkdir()
    text = json.dumps(spec_of(drawn, spec_radius).to_dict())
    (root / "treesTr" / "PHANTOM_000.json").write_text(text)
    return mask, drawn


def test_phantom_labels_use_the_generator_radii(tmp_path, capsys):
    """Stage-1 preparation and ``deeptree labels`` read treesTr/<id>.json beside labelsTr:
    a generation-2 branch drawn 3.0 mm wide is class 2 when measured, class 3 when its
    generator says 1.6 mm."""
    from deeptree.cli import main
    from deeptree.io import list_cases
    from deeptree.stage1.cache import load_stage1_case

    spacing = (0.5, 0.5, 0.5)
    _, drawn = write_phantom_like_cohort(tmp_path, spacing, spec_radius=0.8)
    lobar = [voxel_at(d.point(0.5), spacing) for d in drawn if d.generation == 2]
    (case,) = list_cases(tmp_path)
    label = load_stage1_case(case, tmp_path / "cache").label
    assert all(label[v] == 3 for v in lobar)
    assert main(["labels", "--in", str(tmp_path / "labelsTr"), "--out", str(tmp_path / "a")]) == 0
    written = read_nifti(tmp_path / "a" / "PHANTOM_000.nii.gz").array
    assert all(written[v] == 3 for v in lobar)
    assert "phantom's radii (PHANTOM_000.json)" in capsys.readouterr().out
    # without the generator's tree (a real dataset) the measured 3 mm decide: class 2
    (tmp_path / "treesTr" / "PHANTOM_000.json").unlink()
    label = load_stage1_case(case, tmp_path / "cache").label  # the cache key saw the change
    assert all(label[v] == 2 for v in lobar)
    assert main(["labels", "--in", str(tmp_path / "labelsTr"), "--out", str(tmp_path / "a")]) == 0
    written = read_nifti(tmp_path / "a" / "PHANTOM_000.nii.gz").array
    assert all(written[v] == 2 for v in lobar)


def test_a_broken_phantom_tree_fails_its_case_only(tmp_path, capsys):
    from deeptree.cli import main

    write_phantom_like_cohort(tmp_path)
    (tmp_path / "treesTr" / "PHANTOM_000.json").write_text("{not json")
    assert main(["labels", "--in", str(tmp_path / "labelsTr"), "--out", str(tmp_path / "a")]) == 1
    out = capsys.readouterr()
    assert "PHANTOM_000.json: not a phantom tree JSON" in out.out + out.err


def test_labels_of_the_former_diameter_are_refused(tmp_path, capsys):
    """Labels written before issue 30 (2 x EDT diameters; their record has no "diameters"
    setting) are other settings: refused unless --overwrite; a changed tree JSON redoes the
    case."""
    import json

    from deeptree.cli import main

    write_phantom_like_cohort(tmp_path)
    args = ["labels", "--in", str(tmp_path / "labelsTr"), "--out", str(tmp_path / "a")]
    assert main(args) == 0
    record = tmp_path / "a" / ".deeptree-labels.json"
    data = json.loads(record.read_text())
    del data["settings"]["diameters"]
    record.write_text(json.dumps(data))
    assert main(args) == 2
    assert "diameters" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    tree_json = tmp_path / "treesTr" / "PHANTOM_000.json"
    tree_json.write_text(tree_json.read_text().replace('"side": "T"', '"side": "R"'))
    capsys.readouterr()
    assert main(args) == 0
    assert "already complete, kept" not in capsys.readouterr().out


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
    # the small branches are a real share: at least a tenth of all branches (measured from
    # the cross-sections: 34 of 182, against 145 in class 2; the former 2 x EDT, biased
    # narrow at 2-3 voxels across, counted 88: see RESULTS.md, "Anatomy classes")
    assert summary["branches"][3] >= len(tree.branches) / 10
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
