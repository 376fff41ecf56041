"""Tests of deeptree.metrics on hand-built trees with known answers and on the real samples."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage
from tree_builders import binary_tree, rasterize

from deeptree.io import InputError, read_nifti
from deeptree.masks import largest_components
from deeptree.metrics import (
    METRIC_KEYS,
    airway_metrics,
    format_summary,
    generation_metrics,
    prepare_ground_truth,
    summarize,
)
from deeptree.tree import parse_tree

SPACING = (1.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def case():
    """A symmetric tree of generations 0..3 (15 branches) and its prepared ground truth."""
    gt, _ = rasterize(binary_tree(depth=3, trachea_length=24, trachea_radius=3.5), SPACING)
    return gt, prepare_ground_truth(gt, SPACING)


def leaf_ids(reference):
    return [b.id for b in reference.tree.branches.values() if b.is_leaf]


def skeleton_of(reference, branch_id):
    return reference.skeleton_coords[reference.skeleton_branch == branch_id]


def blob(shape, centre, radius):
    """A ball of voxels (bool volume)."""
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def rod_with_stray_components():
    """A hand-built GT of 502 voxels in an 11 x 11 x 30 volume (3630 voxels).

    A 5 x 5 x 20 rod (500 voxels) with a one-voxel hole at its centre (5, 5, 15), enclosed
    on all sides; one voxel (8, 8, 10) touching the rod's voxel (7, 7, 10) by an edge only
    (26- but not 6-connected); a detached 2-voxel piece at (0, 0, 0), (0, 1, 0). So three
    6-connected components; the processed GT (largest one, hole filled) is the full rod,
    500 voxels. The prediction is the raw GT, whose largest 26-connected component L is
    the rod without its hole plus the edge voxel: 499 + 1 = 500 voxels.
    """
    gt = np.zeros((11, 11, 30), dtype=bool)
    gt[3:8, 3:8, 5:25] = True
    gt[5, 5, 15] = False
    gt[8, 8, 10] = True
    gt[0, 0, 0] = gt[0, 1, 0] = True
    return gt


# --------------------------------------------------------------------------------------------
# known answers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["paper", "atm22"])
def test_perfect_prediction_scores_one(case, protocol):
    gt, reference = case
    m = airway_metrics(gt, reference, SPACING, protocol)
    for key in ("BD", "TLD", "precision", "DSC", "sensitivity"):
        assert m[key] == 1.0, key
    assert m["FPR"] == 0.0
    assert m["branches_detected"] == m["branches_total"]
    assert m["skeleton_covered"] == m["skeleton_total"] > 0
    assert m["n_components"] == 1
    assert m["protocol"] == protocol


@pytest.mark.parametrize("protocol", ["paper", "atm22"])
def test_empty_prediction_scores_zero_without_warnings(case, protocol):
    gt, reference = case
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0/0 in numpy would warn
        m = airway_metrics(np.zeros_like(gt), reference, SPACING, protocol)
    for key in METRIC_KEYS:
        assert m[key] == 0.0, key
    assert m["n_components"] == 0 and m["pred_voxels"] == 0
    assert m["skeleton_total"] > 0 and m["skeleton_covered"] == 0


@pytest.mark.parametrize("protocol", ["paper", "atm22"])
def test_removing_one_branch_loses_exactly_that_branch(case, protocol):
    gt, reference = case
    leaf = leaf_ids(reference)[0]
    pred = gt & (reference.tree.branch_labels != leaf)
    m = airway_metrics(pred, reference, SPACING, protocol)
    full = airway_metrics(gt, reference, SPACING, protocol)
    assert m["branches_detected"] == full["branches_total"] - 1
    assert m["BD"] == pytest.approx((full["branches_total"] - 1) / full["branches_total"])
    lost = len(skeleton_of(reference, leaf))
    assert m["skeleton_covered"] == full["skeleton_total"] - lost
    assert m["precision"] == 1.0


def test_disconnected_blob_is_excluded_by_the_largest_component(case):
    gt, reference = case
    pred = gt.copy()
    pred[:3, :3, :3] = True  # far from the tree, in a corner
    assert not (gt[:6, :6, :6]).any()
    m = airway_metrics(pred, reference, SPACING, "atm22")
    assert m["n_components"] == 2
    assert m["precision"] == 1.0 and m["FPR"] == 0.0 and m["DSC"] == 1.0
    assert m["pred_voxels"] == gt.sum()


def test_attached_false_positive_lowers_precision_exactly(case):
    gt, reference = case
    # a ball grown off the last leaf's distal end (peripheral, far from the central airways)
    leaf = leaf_ids(reference)[-1]
    tip = reference.tree.branch_path(leaf)[-1]
    extra = blob(gt.shape, tip, 4) & ~gt
    pred = gt | extra
    k = int(extra.sum())
    assert k > 0
    atm = airway_metrics(pred, reference, SPACING, "atm22")
    assert atm["precision"] == pytest.approx(gt.sum() / (gt.sum() + k))
    assert atm["FPR"] == pytest.approx(k / (gt.size - gt.sum()))
    paper = airway_metrics(pred, reference, SPACING, "paper")
    central = np.isin(reference.tree.branch_labels, [1, 2, 3])
    outside = int((gt & ~central).sum())
    assert paper["precision"] == pytest.approx(outside / (outside + k))
    assert paper["precision_predicted"] == outside + k


def test_paper_protocol_ignores_the_central_airways(case):
    gt, reference = case
    central_ids = [b.id for b in reference.tree.branches.values() if b.generation <= 1]
    trachea = reference.tree.branch_labels == reference.tree.trachea_id
    # cut the upper half of the trachea: the tree stays connected
    top = np.argwhere(trachea)[:, 2].max()
    cut = trachea & (np.indices(gt.shape)[2] > top - 8)
    pred = gt & ~cut
    paper = airway_metrics(pred, reference, SPACING, "paper")
    assert paper["BD"] == 1.0 and paper["TLD"] == 1.0 and paper["precision"] == 1.0
    atm = airway_metrics(pred, reference, SPACING, "atm22")
    assert atm["TLD"] < 1.0 and atm["sensitivity"] < 1.0
    # only the central airways predicted: nothing of what the paper counts is found
    only_central = gt & np.isin(reference.tree.branch_labels, central_ids)
    m = airway_metrics(only_central, reference, SPACING, "paper")
    assert m["BD"] == 0.0 and m["TLD"] == 0.0
    assert m["precision_predicted"] == 0 and m["precision"] == 0.0
    n_central = len(central_ids)
    assert (
        airway_metrics(only_central, reference, SPACING, "atm22")["branches_detected"] == n_central
    )
    assert m["branches_total"] == len(reference.tree.branches) - n_central


def test_branch_threshold_is_eighty_percent_inclusive(case):
    gt, reference = case
    leaf = leaf_ids(reference)[0]
    voxels = skeleton_of(reference, leaf)
    n = len(voxels)
    allowed = int(np.floor(0.2 * n))  # removing this many keeps >= 80%
    for n_removed, detected in ((allowed, True), (allowed + 1, False)):
        pred = gt.copy()
        pred[tuple(voxels[:n_removed].T)] = False  # single voxels inside a tube: still connected
        m = airway_metrics(pred, reference, SPACING, "atm22")
        assert m["n_components"] == 1
        assert (m["branches_detected"] == m["branches_total"]) is detected, n_removed
        assert m["skeleton_covered"] == m["skeleton_total"] - n_removed


def test_connectivity_decides_whether_a_corner_touching_voxel_counts():
    gt, _ = rasterize(binary_tree(depth=2, trachea_length=20, trachea_radius=3.0), SPACING)
    reference = prepare_ground_truth(gt, SPACING)
    corner = np.argwhere(gt)[0]  # the first voxel in C order: a lowest-i voxel
    pred = gt.copy()
    diagonal = corner - 1
    assert (diagonal >= 0).all() and not gt[tuple(diagonal)]
    # the diagonal neighbour touches the tree only by a corner
    assert not ndimage.binary_dilation(gt)[tuple(diagonal)]
    pred[tuple(diagonal)] = True
    with26 = airway_metrics(pred, reference, SPACING, "atm22", connectivity=26)
    with6 = airway_metrics(pred, reference, SPACING, "atm22", connectivity=6)
    assert with26["pred_voxels"] == gt.sum() + 1 and with26["n_components"] == 1
    assert with6["pred_voxels"] == gt.sum() and with6["n_components"] == 2


def test_atm22_scores_against_the_processed_gt_by_hand():
    """Issue 23: under "atm22" precision, DSC, sensitivity and FPR use the largest
    6-connected GT component with its holes filled, as the official pipeline."""
    gt = rod_with_stray_components()
    assert gt.sum() == 502
    with pytest.warns(UserWarning, match="2 smaller 6-connected component"):
        reference = prepare_ground_truth(gt, SPACING, name="rod.nii.gz")
    assert reference.n_voxels == 502 and reference.parsed_n_voxels == 500
    assert reference.n_components_dropped == 2
    assert reference.parsed_mask[5, 5, 15] and not reference.parsed_mask[8, 8, 10]
    m = airway_metrics(gt, reference, SPACING, "atm22")
    # L = 499 rod voxels + the edge voxel; L ∩ G' = the 499 rod voxels; |G'| = 500
    assert (m["pred_voxels"], m["tp_voxels"], m["gt_voxels"]) == (500, 499, 500)
    assert m["precision"] == 499 / 500
    assert m["DSC"] == 2 * 499 / (500 + 500)
    assert m["sensitivity"] == 499 / 500
    assert m["FPR"] == 1 / (11 * 11 * 30 - 500)  # the edge voxel, outside G'
    assert m["gt_components_dropped"] == 2 and m["n_components"] == 2
    # the raw GT would have given precision 500 / 500 and DSC 2 * 500 / (500 + 502)
    assert m["precision"] < 1.0
    # predicting the processed GT itself is perfect, whatever the raw mask holds
    perfect = airway_metrics(reference.parsed_mask, reference, SPACING, "atm22")
    for key in ("TLD", "BD", "precision", "DSC", "sensitivity"):
        assert perfect[key] == 1.0, key
    assert perfect["FPR"] == 0.0


def test_paper_scores_against_the_raw_gt(case):
    """The paper protocol keeps the GT as annotated for precision, DSC, sensitivity and
    FPR: a predicted stray GT component is a true positive there, a false positive under
    "atm22"."""
    gt, _ = case
    # a voxel touching a peripheral branch by a corner only, and a detached 2-voxel piece
    near_26 = ndimage.binary_dilation(gt, ndimage.generate_binary_structure(3, 3))
    near_6 = ndimage.binary_dilation(gt, ndimage.generate_binary_structure(3, 1))
    corner = tuple(np.argwhere(near_26 & ~near_6)[-1])
    assert not (gt[:3, :3, :3].any() or near_26[:3, :3, :3].any())
    raw = gt.copy()
    raw[corner] = True
    raw[0, 0, 0] = raw[0, 0, 1] = True
    with pytest.warns(UserWarning, match="2 smaller 6-connected component"):
        reference = prepare_ground_truth(raw, SPACING)
    n = int(gt.sum())  # the tree: no hole, so the processed GT is the tree itself
    assert reference.parsed_n_voxels == n and reference.n_voxels == n + 3
    paper = airway_metrics(raw, reference, SPACING, "paper")
    atm = airway_metrics(raw, reference, SPACING, "atm22")
    # L = the tree + the corner voxel (n + 1 voxels)
    assert paper["precision"] == 1.0
    assert paper["DSC"] == 2 * (n + 1) / ((n + 1) + (n + 3))
    assert paper["sensitivity"] == (n + 1) / (n + 3)
    assert paper["FPR"] == 0.0
    assert paper["gt_voxels"] == n + 3
    assert atm["precision"] == n / (n + 1)
    assert atm["DSC"] == 2 * n / ((n + 1) + n)
    assert atm["sensitivity"] == 1.0
    assert atm["FPR"] == 1 / (gt.size - n)
    assert atm["gt_voxels"] == n
    assert paper["gt_components_dropped"] == atm["gt_components_dropped"] == 2
    # TLD and BD use the parse under both protocols
    assert paper["TLD"] == atm["TLD"] == paper["BD"] == atm["BD"] == 1.0


def test_prepared_and_fresh_ground_truth_agree(case):
    gt, reference = case
    pred = ndimage.binary_erosion(gt)
    fresh = airway_metrics(pred.astype(np.uint8), gt.astype(np.uint8), SPACING, "paper")
    with_tree = airway_metrics(pred, gt, SPACING, "paper", gt_tree=reference.tree)
    prepared = airway_metrics(pred, reference, SPACING, "paper")
    assert fresh == prepared == with_tree
    assert 0 < prepared["TLD"] < 1 and 0 < prepared["BD"] < 1


def test_generation_metrics_add_up_to_the_atm22_totals(case):
    gt, reference = case
    pred = ndimage.binary_erosion(gt, iterations=2)
    rows = generation_metrics(pred, reference, SPACING)
    total = airway_metrics(pred, reference, SPACING, "atm22")
    assert [r["generation"] for r in rows] == [0, 1, 2, 3]
    assert [r["branches_total"] for r in rows] == [1, 2, 4, 8]
    for key in ("branches_total", "branches_detected", "skeleton_total", "skeleton_covered"):
        assert sum(r[key] for r in rows) == total[key], key
    # thin distal branches suffer most from an erosion
    assert rows[0]["TLD"] >= rows[-1]["TLD"]
    assert all(r["TLD"] == 1.0 for r in generation_metrics(gt, reference, SPACING))


def test_inputs_are_not_modified(case):
    gt, reference = case
    pred = ndimage.binary_erosion(gt).astype(np.uint8)
    pred[:2, :2, :2] = 1
    pred_before, gt_before = pred.copy(), gt.copy()
    airway_metrics(pred, gt, SPACING, "paper")
    assert np.array_equal(pred, pred_before) and np.array_equal(gt, gt_before)


def test_largest_component():
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[2:5, 2:5, 2:5] = True  # 27 voxels
    mask[6:8, 6:8, 6:8] = True  # 8 voxels
    mask[5, 5, 5] = True  # touches both only by corners
    assert largest_components(mask, 1, 6)[0].sum() == 27
    assert largest_components(mask, 1, 26)[0].sum() == 27 + 8 + 1
    assert not largest_components(np.zeros((3, 3, 3), bool), 1)[0].any()


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
def test_bad_inputs_get_clear_errors(case):
    gt, reference = case
    with pytest.raises(InputError, match="pred.nii.gz: shape"):
        airway_metrics(gt[:-1], reference, SPACING, pred_name="pred.nii.gz")
    with pytest.raises(InputError, match="spacing .* does not match"):
        airway_metrics(gt, reference, SPACING, pred_spacing=(1.0, 1.0, 2.0))
    with pytest.raises(InputError, match="prepared GT has spacing"):
        airway_metrics(gt, reference, (1.0, 1.0, 0.5))
    with pytest.raises(InputError, match="binary"):
        airway_metrics(gt.astype(np.uint8) * 2, reference, SPACING)
    with pytest.raises(InputError, match="binary"):
        airway_metrics(gt * 0.5, reference, SPACING)
    with pytest.raises(InputError, match="binary"):
        airway_metrics(gt, gt.astype(np.int16) - 1, SPACING)
    with pytest.raises(InputError, match="gt.nii.gz: the ground-truth mask is empty"):
        airway_metrics(gt, np.zeros_like(gt), SPACING, gt_name="gt.nii.gz")
    with pytest.raises(InputError, match="unknown protocol"):
        airway_metrics(gt, reference, SPACING, protocol="exact09")
    with pytest.raises(InputError, match="connectivity"):
        airway_metrics(gt, reference, SPACING, connectivity=18)
    with pytest.raises(InputError, match="3D"):
        airway_metrics(gt[0], reference, SPACING)
    with pytest.raises(InputError, match="parse has shape"):
        prepare_ground_truth(gt[:, :, :-1], SPACING, reference.tree)
    with pytest.raises(InputError, match="parse was made with spacing"):
        prepare_ground_truth(gt, (1.0, 1.0, 2.0), reference.tree)


def test_ground_truth_is_parsed_in_voxel_units_as_atm22(case):
    """On an anisotropic grid the default parse (nearest skeleton voxel in mm) and the
    ATM'22 one (voxel units) differ; prepare_ground_truth uses the ATM'22 one."""
    gt, _ = case
    spacing = (0.8, 0.8, 0.5)
    reference = prepare_ground_truth(gt, spacing)
    expected = parse_tree(gt, spacing, root="atm22", nearest_in_voxels=True)
    assert np.array_equal(reference.tree.branch_labels, expected.branch_labels)
    assert reference.tree.spacing == spacing


# --------------------------------------------------------------------------------------------
# cohort summaries
# --------------------------------------------------------------------------------------------
def test_summaries_give_mean_and_std():
    rows = [{"BD": 0.9, "TLD": 0.8}, {"BD": 1.0, "TLD": 0.6}]
    summary = summarize(rows, keys=("BD", "TLD"))
    assert summary["BD"]["mean"] == pytest.approx(0.95)
    assert summary["BD"]["std"] == pytest.approx(np.std([0.9, 1.0], ddof=1))
    assert summary["TLD"]["n"] == 2
    assert summarize(rows, keys=("TLD",), ddof=0)["TLD"]["std"] == pytest.approx(0.1)
    assert format_summary(summarize(rows, keys=("TLD",), ddof=0)) == {"TLD": "70.0 ± 10.0"}
    assert summarize(rows[:1], keys=("BD",))["BD"]["std"] == 0.0
    with pytest.raises(InputError, match="no case"):
        summarize([])
    with pytest.raises(InputError, match="precision"):
        summarize(rows, keys=("precision",))


# --------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------
def test_coarse_real_airway_has_only_central_branches(cip_ct64_dir):
    """The 4 mm CIP airway parses into trachea + main bronchi only: the paper protocol has
    nothing to count and says so; the ATM'22 protocol still works."""
    volume = read_nifti(cip_ct64_dir / "airway.nii.gz")
    with pytest.warns(UserWarning, match="dropped"):
        reference = prepare_ground_truth(volume.array, volume.spacing, name="airway.nii.gz")
    m = airway_metrics(volume.array, reference, volume.spacing, "atm22")
    assert m["BD"] == 1.0 and m["TLD"] == 1.0 and m["sensitivity"] == 1.0
    # 21 stray 6-connected components, 9 of them touching the tree by an edge or corner:
    # those join the prediction's largest 26-component and count as false positives
    assert m["gt_components_dropped"] == reference.n_components_dropped == 21
    mask = volume.array > 0
    kept, _ = largest_components(mask, 1, 26)
    expected = np.count_nonzero(kept & reference.parsed_mask) / np.count_nonzero(kept)
    assert m["precision"] == pytest.approx(expected, abs=1e-12) and m["precision"] < 1.0
    assert m["n_components"] >= 1
    with pytest.raises(InputError, match="no branch beyond the main bronchi"):
        airway_metrics(volume.array, reference, volume.spacing, "paper")


@pytest.mark.slow
def test_atm001_perturbed_predictions(atm001_path):
    volume = read_nifti(atm001_path)
    gt = volume.array
    with pytest.warns(UserWarning, match="dropped"):
        reference = prepare_ground_truth(gt, volume.spacing, name="airway.nii.gz")
    tree = reference.tree
    # parsed in voxel units as ATM'22: the official code finds 187 branches on this case
    # (benchmarks/atm22_official_metrics.py); in mm there would be 182
    assert len(tree.branches) == 187
    paper_perfect = airway_metrics(gt, reference, volume.spacing, "paper")
    assert paper_perfect["BD"] == paper_perfect["TLD"] == 1.0
    assert paper_perfect["precision"] == paper_perfect["DSC"] == 1.0
    # "atm22" scores against the processed GT: 3 of the 4 dropped components touch the
    # tree by an edge or corner, so the raw GT as a prediction is not perfect there
    atm_perfect = airway_metrics(gt, reference, volume.spacing, "atm22")
    assert atm_perfect["BD"] == atm_perfect["TLD"] == atm_perfect["sensitivity"] == 1.0
    assert atm_perfect["gt_components_dropped"] == 4
    assert atm_perfect["pred_voxels"] - atm_perfect["tp_voxels"] > 0
    assert 0.999 < atm_perfect["precision"] < 1.0
    # erode inside the GT's box (+1 voxel): the same result as on the whole volume, faster
    box = []
    for axis in range(3):  # (np.argwhere on 178 M voxels is slow)
        hit = np.flatnonzero(gt.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(hit[0] - 1, 0), hit[-1] + 2))
    box = tuple(box)
    eroded = np.zeros(gt.shape, dtype=bool)
    eroded[box] = ndimage.binary_erosion(gt[box])
    atm = airway_metrics(eroded, reference, volume.spacing, "atm22")
    paper = airway_metrics(eroded, reference, volume.spacing, "paper")
    assert 0 < atm["TLD"] < 1 and 0 < atm["BD"] < 1 and atm["precision"] == 1.0
    assert atm["n_components"] > 1  # erosion breaks thin branches off
    # the paper protocol drops the central branches and their skeleton from the counts
    central = [b for b in tree.branches.values() if b.generation <= 1]
    assert paper["branches_total"] == atm["branches_total"] - len(central)
    assert paper["skeleton_total"] < atm["skeleton_total"]
    # the central airways are thick: the erosion costs them less than the periphery
    assert paper["TLD"] < atm["TLD"]


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------
def _write(path, array, spacing=SPACING):
    from deeptree.io import write_nifti

    return write_nifti(path, array.astype(np.uint8), np.diag([*spacing, 1.0]))


def test_cli_evaluate_writes_rows_summary_and_reports_missing(case, tmp_path, capsys):
    import csv

    from deeptree.cli import main

    gt, reference = case
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt" / "labelsTr").mkdir(parents=True)
    eroded = ndimage.binary_erosion(gt)
    for case_id, pred in (("A_001", gt), ("A_002", eroded)):
        _write(tmp_path / "gt" / "labelsTr" / f"{case_id}.nii.gz", gt)
        _write(tmp_path / "pred" / f"{case_id}_0000.nii.gz", pred)
    _write(tmp_path / "gt" / "labelsTr" / "A_003.nii.gz", gt)  # no prediction
    _write(tmp_path / "pred" / "A_004.nii.gz", gt)  # no ground truth
    _write(tmp_path / "pred" / "A_005.nii.gz", gt, spacing=(1.0, 1.0, 2.0))  # wrong grid
    _write(tmp_path / "gt" / "labelsTr" / "A_005.nii.gz", gt)
    out = tmp_path / "metrics.csv"
    argv = ["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]
    status = main([*argv, "--out", str(out), "--protocol", "atm22", "--no-progress"])
    assert status == 1
    err = capsys.readouterr().err
    assert "A_003: missing prediction" in err and "A_004: missing ground truth" in err
    assert "A_005: error:" in err and "affine does not match" in err
    rows = {r["case"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"A_001", "A_002", "A_003", "A_004", "A_005", "summary"}
    assert float(rows["A_001"]["BD"]) == 1.0 and rows["A_001"]["status"] == "ok"
    expected = airway_metrics(eroded, reference, SPACING, "atm22")
    assert float(rows["A_002"]["TLD"]) == pytest.approx(expected["TLD"])
    assert int(rows["A_002"]["branches_detected"]) == expected["branches_detected"]
    mean_tld = 100 * (1.0 + expected["TLD"]) / 2
    assert rows["summary"]["TLD"].startswith(f"{mean_tld:.2f} ± ")
    assert "over 2 case(s)" in rows["summary"]["status"]


def test_cli_evaluate_reports_dropped_gt_components(tmp_path):
    """The CSV says how many GT components each case's parse dropped (issue 23)."""
    import csv

    from deeptree.cli import main

    gt = rod_with_stray_components()
    for folder in ("pred", "gt"):
        (tmp_path / folder).mkdir()
    _write(tmp_path / "gt" / "R_001.nii.gz", gt)
    _write(tmp_path / "pred" / "R_001.nii.gz", gt)
    out = tmp_path / "metrics.csv"
    argv = ["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]
    with pytest.warns(UserWarning, match="R_001.nii.gz: 2 smaller 6-connected component"):
        status = main([*argv, "--out", str(out), "--protocol", "atm22", "--no-progress"])
    assert status == 0
    rows = {r["case"]: r for r in csv.DictReader(out.open())}
    assert rows["R_001"]["gt_components_dropped"] == "2"
    assert float(rows["R_001"]["precision"]) == pytest.approx(499 / 500)
    assert rows["summary"]["gt_components_dropped"] == ""


def test_cli_evaluate_bad_folder_is_one_clear_line(tmp_path, capsys):
    from deeptree.cli import main

    status = main(
        ["evaluate", "--pred", str(tmp_path / "nope"), "--gt", str(tmp_path), "--out", "x.csv"]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "--pred must be a folder" in err and "Traceback" not in err


@pytest.mark.slow
def test_atm22_protocol_matches_the_official_code_on_a_phantom():
    """protocol="atm22" against the step-by-step reimplementation of the official ATM'22
    evaluation (benchmarks/atm22_official_metrics.py), on a phantom whose branch count
    depends on the ATM'22 tie-break of the nearest skeleton voxel, with perturbed
    predictions (erosion, removed and cut branches, blobs, voxel dropout)."""
    import importlib.util
    from pathlib import Path

    from deeptree.phantom import generate_case

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "atm22_official_metrics.py"
    spec = importlib.util.spec_from_file_location("atm22_official_metrics", path)
    official = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(official)

    phantom = generate_case("cpu", 1)
    rows = official.compare_case(
        "phantom",
        np.asarray(phantom.airway),
        tuple(phantom.spacing),
        np.random.default_rng(0),
        connectivities=(26,),
    )
    assert len(rows) == 8
    for row in rows:
        assert row["ours_branches"] == row["official_branches"], row["prediction"]
        for key in METRIC_KEYS:
            assert abs(row[f"diff_{key}"]) <= 0.1, (row["prediction"], key)

    # issue 23: a GT with 30 small extra 6-connected components (half touching the tree by
    # an edge or corner) and 5 enclosed holes; the official code scores DSC and precision
    # against its processed label (largest component, holes filled), and so must we
    rows = official.compare_case(
        "phantom + stray components",
        np.asarray(phantom.airway),
        tuple(phantom.spacing),
        np.random.default_rng(1),
        connectivities=(26,),
        gt_blobs=30,
        gt_holes=5,
    )
    assert len(rows) == 8
    assert all(row["gt_components_dropped"] == 30 for row in rows)
    for row in rows:
        assert row["ours_branches"] == row["official_branches"], row["prediction"]
        for key in METRIC_KEYS:  # within the official rounding, all six
            assert abs(row[f"diff_{key}"]) <= 0.01, (row["prediction"], key)
    # the case matters: the raw GT gives other precisions than the official code
    perfect = next(row for row in rows if row["prediction"] == "perfect")
    assert perfect["raw_precision"] == 100.0
    assert perfect["official_precision"] < 99.9
