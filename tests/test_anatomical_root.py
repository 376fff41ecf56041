"""The anatomical root (issue 18): the trachea runs from the cranial end of the mask to the
main carina, and a bud or a tracheal bronchus does not split it.

The ATM'22 rule (the segment with the largest region) stays available as ``root="atm22"``
and under the metrics' ``protocol="atm22"``; the anatomy labels and the paper protocol use
the anatomical root. Two cases: a hand-built Y tree with a bud halfway down the trachea
(where the ATM'22 rule makes a main bronchus the root and labels the top of the trachea
class 2), and the real tree atm_001 with a 3 mm bud added halfway down its trachea.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from tree_builders import TrueBranch, draw_capsule, rasterize, voxel_at

from deeptree.anatomy import CENTRAL, anatomy_labels
from deeptree.io import InputError, read_nifti
from deeptree.metrics import airway_metrics, prepare_ground_truth
from deeptree.tree import parse_tree

SPACING = (1.0, 1.0, 1.0)


def budded_y_tree() -> list[TrueBranch]:
    """A trachea (r 5 mm, 30 mm, top at high k), two long main bronchi (r 3.5 mm, 45 mm:
    each has a larger region than either half of the trachea) and a bud (r 1.5 mm,
    protruding 4 mm beyond the tracheal wall) halfway down the trachea."""
    return [
        TrueBranch(0, -1, 0, np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, -30.0]), 5.0),
        TrueBranch(1, 0, 1, np.array([0.0, 0.0, -30.0]), np.array([-20.0, 0.0, -70.0]), 3.5),
        TrueBranch(2, 0, 1, np.array([0.0, 0.0, -30.0]), np.array([20.0, 0.0, -70.0]), 3.5),
        TrueBranch(3, 0, 2, np.array([0.0, 0.0, -15.0]), np.array([0.0, 9.0, -15.0]), 1.5),
    ]


def top_slices(mask: np.ndarray, depth_mm: float, spacing, axis: int = 2) -> np.ndarray:
    """bool: the mask's voxels within ``depth_mm`` of its most cranial slice (+axis)."""
    occupied = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(3) if a != axis)))
    top = occupied[-1]
    n = int(round(depth_mm / spacing[axis]))
    index = np.arange(mask.shape[axis])
    near_top = (index > top - n) & (index <= top)
    shape = [1, 1, 1]
    shape[axis] = -1
    return mask & near_top.reshape(shape)


def test_a_bud_does_not_split_the_trachea_hand_built():
    mask, drawn = rasterize(budded_y_tree(), SPACING)
    at = {d.index: voxel_at(d.point(0.5), SPACING) for d in drawn}
    top = top_slices(mask, 10.0, SPACING)

    tree = parse_tree(mask, SPACING)  # anatomical by default, +k cranial
    assert tree.root == "anatomical"
    assert tree.n_branches == 4
    trachea = tree.branches[1]
    assert tree.branch_labels[at[0]] == 1 and trachea.generation == 0
    assert abs(trachea.length_mm - 30.0) <= 5.0  # one branch from the top to the carina
    bronchi = {int(tree.branch_labels[at[1]]), int(tree.branch_labels[at[2]])}
    assert bronchi <= set(trachea.children) and len(bronchi) == 2
    assert all(tree.branches[b].generation == 1 for b in bronchi)
    bud = tree.branches[int(tree.branch_labels[at[3]])]
    assert bud.parent == 1 and bud.generation == 2 and bud.is_leaf
    # the trachea's path starts at the cranial end
    path = tree.branch_path(1)
    assert path[0, 2] > path[-1, 2]

    labels = anatomy_labels(tree)
    assert (labels[top] == CENTRAL).all()
    for i in (0, 1, 2):
        assert labels[at[i]] == CENTRAL
    assert labels[at[3]] != CENTRAL

    # the ATM'22 rule on the same mask: a main bronchus has the largest region and becomes
    # the root, the top of the trachea is class 2 (what the anatomical root fixes)
    official = parse_tree(mask, SPACING, root="atm22")
    assert official.n_branches == 5
    assert official.branch_labels[at[1]] == 1 or official.branch_labels[at[2]] == 1
    assert (anatomy_labels(official)[top] != CENTRAL).all()


def test_with_root_equals_a_fresh_parse():
    mask, _ = rasterize(budded_y_tree(), SPACING)
    for first, second in (("atm22", "anatomical"), ("anatomical", "atm22")):
        rerooted = parse_tree(mask, SPACING, root=first).with_root(second)
        fresh = parse_tree(mask, SPACING, root=second)
        assert rerooted.root == second
        assert np.array_equal(rerooted.branch_labels, fresh.branch_labels)
        assert np.array_equal(rerooted.skeleton_labels, fresh.skeleton_labels)
        assert rerooted.table() == fresh.table()
    tree = parse_tree(mask, SPACING)
    assert tree.with_root("anatomical") is tree


def test_the_affine_says_which_end_is_cranial():
    """The same tree flipped along k, with an affine saying k points to the feet, parses
    as the original; without the affine the caudal end is taken for the top."""
    mask, drawn = rasterize(budded_y_tree(), SPACING)
    flipped = mask[:, :, ::-1]
    n_k = mask.shape[2]

    def generations_at_drawn(tree) -> list[int]:
        out = []
        for d in drawn:
            i, j, k = voxel_at(d.point(0.5), SPACING)
            out.append(tree.branches[int(tree.branch_labels[i, j, n_k - 1 - k])].generation)
        return out

    again = parse_tree(flipped, SPACING, affine=np.diag([1.0, 1.0, -1.0, 1.0]))
    assert again.cranial == (2, -1)
    assert generations_at_drawn(again) == [0, 1, 1, 2]
    wrong_end = parse_tree(flipped, SPACING)  # +k taken as cranial: the wrong root
    assert generations_at_drawn(wrong_end)[0] != 0


def test_unknown_root_is_a_clear_error():
    mask, _ = rasterize(budded_y_tree(), SPACING)
    with pytest.raises(InputError, match="unknown root rule 'largest'"):
        parse_tree(mask, SPACING, root="largest")
    with pytest.raises(InputError, match="unknown root rule"):
        parse_tree(mask, SPACING).with_root("top")


def test_paper_protocol_uses_the_anatomical_root_hand_built():
    mask, drawn = rasterize(budded_y_tree(), SPACING)
    reference = prepare_ground_truth(mask, SPACING)
    assert reference.tree.root == "atm22" and reference.anatomical_tree.root == "anatomical"
    # only the bud lies beyond the main bronchi
    paper = airway_metrics(mask, reference, SPACING, "paper")
    assert paper["branches_total"] == 1 and paper["BD"] == 1.0
    # the prediction without the top half of the trachea loses nothing the paper counts
    cut = mask.copy()
    cut[:, :, voxel_at(drawn[0].point(0.3), SPACING)[2] :] = False
    paper = airway_metrics(cut, reference, SPACING, "paper")
    assert paper["TLD"] == paper["BD"] == paper["precision"] == 1.0
    # the ATM'22 protocol keeps the official partition (5 branches: the trachea split)
    atm = airway_metrics(mask, reference, SPACING, "atm22")
    assert atm["branches_total"] == 5


# --------------------------------------------------------------------------------------------
# atm_001 with a bud halfway down its trachea
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def budded_atm001(atm001_path):
    """atm_001 (read, never written) and a copy with a 3 mm wide bud protruding 3 mm from
    the trachea halfway down, towards +i; the parses of both."""
    volume = read_nifti(atm001_path)
    spacing = np.asarray(volume.spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its 4 stray voxel groups are dropped
        plain = parse_tree(volume.array, volume.spacing, affine=volume.affine)
        path = plain.branch_path(1)
        centre = path[len(path) // 2] * spacing
        radius = plain.branches[1].diameter_mm / 2
        budded = volume.array > 0  # a copy
        draw_capsule(budded, spacing, centre, centre + [radius + 3.0, 0.0, 0.0], 1.5)
        tree = parse_tree(budded, volume.spacing, affine=volume.affine)
        reference = prepare_ground_truth(budded, volume.spacing, affine=volume.affine)
    assert budded.sum() > np.count_nonzero(volume.array)  # the bud adds voxels
    return volume, plain, budded, tree, reference


@pytest.mark.slow
def test_atm001_bud_top_of_trachea_and_main_bronchi_are_class_1(budded_atm001):
    volume, plain, budded, tree, reference = budded_atm001
    labels = anatomy_labels(tree)
    top = top_slices(tree.mask, 10.0, volume.spacing)
    assert top.sum() > 1000
    assert (labels[top] == CENTRAL).all()
    for bronchus in plain.branches[1].children:  # the main bronchi of the tree without bud
        region = plain.branch_labels == bronchus
        assert region.sum() > 1000
        assert (labels[region] == CENTRAL).all()
    # the trachea is one branch, as long as without the bud; the bud is a branch of its own
    assert tree.n_branches == plain.n_branches + 1
    assert abs(tree.branches[1].length_mm - plain.branches[1].length_mm) < 1.0
    # the ATM'22 rule splits the trachea at the bud and labels a main bronchus class 2
    official = anatomy_labels(tree.with_root("atm22"))
    assert any(
        (official[plain.branch_labels == b] != CENTRAL).any() for b in plain.branches[1].children
    )


@pytest.mark.slow
def test_atm001_bud_paper_protocol_treats_the_trachea_as_one_segment(budded_atm001):
    volume, plain, budded, tree, reference = budded_atm001
    anatomical = reference.anatomical_tree
    trachea = anatomical.branches[1]
    assert trachea.generation == 0
    assert abs(trachea.length_mm - plain.branches[1].length_mm) < 1.0
    assert sorted(anatomical.branches[c].generation for c in trachea.children) == [1, 1, 2]
    # beyond the main bronchi: the branches of the tree without bud, and the bud
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # its 4 stray voxel groups are dropped
        plain_reference = prepare_ground_truth(
            volume.array > 0, volume.spacing, affine=volume.affine
        )
    perfect = airway_metrics(budded, reference, volume.spacing, "paper")
    plain_perfect = airway_metrics(volume.array > 0, plain_reference, volume.spacing, "paper")
    assert perfect["branches_total"] == plain_perfect["branches_total"] + 1
    assert perfect["BD"] == perfect["TLD"] == perfect["precision"] == 1.0
    # a prediction without the top of the trachea loses nothing the paper counts
    cut = budded.copy()
    cut[top_slices(reference.parsed_mask, 10.0, volume.spacing)] = False
    m = airway_metrics(cut, reference, volume.spacing, "paper")
    assert m["BD"] == m["TLD"] == m["precision"] == 1.0
    # under "atm22" the official partition splits the trachea at the bud
    atm = airway_metrics(budded, reference, volume.spacing, "atm22")
    # (two halves of the trachea and the bud)
    atm = airway_metrics(budded, reference, volume.spacing, "atm22")
    assert atm["branches_total"] == len(plain_reference.tree.branches) + 2
