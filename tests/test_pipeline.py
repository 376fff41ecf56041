"""Tests of deeptree.pipeline: stage 2 at the centres, the merge, the two-stage segment, the
evaluation helpers and ``deeptree predict --two-stage``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tree_builders import binary_tree, rasterize

from deeptree.checkpoints import LoadedModel
from deeptree.config import NetworkConfig, TrainConfig
from deeptree.evaluation.compare import compare_on_stage1, mean_by_method
from deeptree.io import InputError, read_nifti, write_nifti
from deeptree.masks import label_components
from deeptree.networks import stage1_network, stage2_network
from deeptree.pipeline import merge, repair, segment, segment_file
from deeptree.stage2.figures import repair_sources
from deeptree.stage2.predict import Stage2Patch, paste_patches, predict_breakage
from deeptree.stage2.task import evaluate_gap_repair

TINY = NetworkConfig(filters=(2, 4, 8, 16), patch_size=(16, 16, 16))


class DarkIsAirway(torch.nn.Module):
    """A stand-in stage-1 network: 'airway' where the normalised CT is darker than ``level``
    (2 output channels: background, airway). Deterministic, so pipeline tests can reason
    about its output; it has one dummy parameter so that ``.to(device)`` works."""

    def __init__(self, level: float = 0.04):
        super().__init__()
        self.level = level
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        airway = (self.level - x) * 100.0
        return torch.cat([-airway, airway], dim=1)


class Everywhere(torch.nn.Module):
    """A stand-in stage-2 network predicting breakage in the whole box."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        ones = torch.ones_like(x[:, :1])
        return torch.cat([-ones, ones], dim=1)


def broken_tubes():
    """A long tube (main tree) and a short one beyond a 4-voxel gap, plus a far fragment."""
    mask = np.zeros((24, 24, 64), bool)
    mask[10:13, 10:13, 2:40] = True
    mask[10:13, 10:13, 44:54] = True
    mask[2:4, 20:22, 60:62] = True
    ct = np.where(mask, -1000, -100).astype(np.int16)
    ct[10:13, 10:13, 40:44] = -1000  # the lumen continues through the gap in the CT
    return ct, mask


def test_merge_keeps_every_voxel_of_the_stage1_main_tree():
    ct, mask = broken_tubes()
    added = np.zeros_like(mask)
    added[11, 11, 39:45] = True  # bridges the gap
    added[20, 2, 5] = True  # an isolated voxel: dropped
    final = merge(mask, added)
    assert final.dtype == np.uint8 and label_components(final)[1] == 1
    main = mask.copy()
    main[:, :, 44:] = False
    main[2:4] = False
    assert final[main].all()  # every voxel of the stage-1 main tree
    assert final[10:13, 10:13, 44:54].all()  # the reconnected piece
    assert not final[2:4, 20:22, 60:62].any() and not final[20, 2, 5]
    assert np.array_equal(mask, broken_tubes()[1])  # input untouched


def test_merge_keeps_the_main_tree_even_if_another_union_is_larger():
    main = np.zeros((30, 30, 30), bool)
    main[5, 5, 5:15] = True  # 10 voxels
    main[20, 20, 0:8] = True  # two fragments of 8
    main[20, 20, 10:18] = True
    added = np.zeros_like(main)
    added[20, 20, 8:10] = True  # joins the fragments into 18 > 10 voxels
    final = merge(main, added)
    assert final[5, 5, 5:15].all() and final.sum() == 10
    # an empty stage-1 mask: the largest piece of what was added
    assert merge(np.zeros_like(main), added).sum() == 2
    assert merge(np.zeros_like(main), np.zeros_like(main)).sum() == 0


def test_paste_patches_clips_at_the_border():
    patches = [
        Stage2Patch(np.array([0, 0, 0]), np.array([-2, -2, -2]), np.ones((4, 4, 4), bool)),
        Stage2Patch(np.array([9, 9, 9]), np.array([8, 8, 8]), np.ones((4, 4, 4), bool)),
        Stage2Patch(np.array([50, 50, 50]), np.array([48, 48, 48]), np.ones((4, 4, 4), bool)),
    ]
    out = paste_patches((10, 10, 10), patches)
    assert out.sum() == 8 + 8
    assert out[:2, :2, :2].all() and out[8:, 8:, 8:].all()


def test_paste_patches_averages_overlapping_boxes():
    """Two boxes overlap on a 2-voxel slab: there the mean probability decides."""

    def box(start_i: int, value: float) -> Stage2Patch:
        p = np.full((4, 4, 4), value, np.float32)
        return Stage2Patch(np.array([start_i + 2, 2, 2]), np.array([start_i, 0, 0]), p > 0.5, p)

    out = paste_patches((6, 4, 4), [box(0, 0.9), box(2, 0.05)])
    assert out[:2].all() and not out[2:].any()  # overlap: (0.9 + 0.05) / 2 < 0.5
    out = paste_patches((6, 4, 4), [box(0, 0.9), box(2, 0.3)])
    assert out[:4].all() and not out[4:].any()  # overlap: (0.9 + 0.3) / 2 > 0.5
    # masks without probabilities: a voxel needs more than half of its boxes
    ones, zeros = np.ones((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    votes = [
        Stage2Patch(np.array([2, 2, 2]), np.array([0, 0, 0]), ones),
        Stage2Patch(np.array([2, 2, 2]), np.array([0, 0, 0]), zeros),
    ]
    assert not paste_patches((4, 4, 4), votes).any()
    assert paste_patches((4, 4, 4), [*votes, votes[0]]).all()


def test_predict_breakage_one_patch_per_centre_in_place():
    image = np.zeros((20, 20, 20), np.float32)
    h_bar = np.zeros_like(image)
    centres = np.array([[0, 0, 0], [10, 10, 10], [19, 5, 3]])
    patches = predict_breakage(
        Everywhere(), image, h_bar, centres, (8, 8, 8), device="cpu", batch_size=2
    )
    assert len(patches) == 3
    for p, c in zip(patches, centres, strict=True):
        assert p.mask.shape == (8, 8, 8) and p.mask.all()
        assert np.array_equal(p.start, c - 4) and np.array_equal(p.centre, c)
    torch.manual_seed(0)
    net = stage2_network(TINY).eval()
    patches = predict_breakage(net, image, h_bar, centres[:1], TINY.patch_size, device="cpu")
    assert patches[0].mask.dtype == bool and patches[0].mask.shape == (16, 16, 16)
    prob = patches[0].probability
    assert prob.dtype == np.float32 and prob.shape == (16, 16, 16)
    assert ((prob >= 0) & (prob <= 1)).all() and np.array_equal(patches[0].mask, prob > 0.5)


def test_repair_with_the_gap_filler_and_with_a_network():
    ct, mask = broken_tubes()
    filled = repair(mask, ct, "gapfill")
    assert len(filled.centres) >= 1 and filled.joins
    assert label_components(filled.mask)[1] == 1
    assert filled.mask[10:13, 10:13, 44:54].all()  # the piece beyond the gap is back
    assert not filled.mask[2:4, 20:22, 60:62].any()  # the far fragment is not (too far)
    dark = repair(mask, ct, "gapfill-intensity")
    assert dark.mask[10:13, 10:13, 44:54].all()
    net = repair(mask, ct, Everywhere(), stage2_patch=(8, 8, 8), device="cpu")
    assert len(net.patches) == len(net.centres) and net.mask[10:13, 10:13, 44:54].all()
    none = repair(mask, ct, None)
    assert np.array_equal(none.mask.astype(bool), mask & (np.arange(64) < 40)[None, None])
    assert set(filled.seconds) >= {"stage1", "attention", "stage2", "merge", "total"}


def test_repair_bounds_the_components_it_considers():
    """Specks beyond ``max_components`` (the smallest) make no centre and are not joined;
    the main tree and the piece beyond its gap are still repaired."""
    ct, mask = broken_tubes()
    specks = mask.copy()
    for k in range(2, 62, 4):  # 15 one-voxel specks, far from the tubes
        specks[20, 2, k] = True
    assert label_components(specks)[1] == 18
    full = repair(specks, ct, "gapfill", max_components=None)
    with pytest.warns(UserWarning, match="has 18 components.*largest 3.*leave out 15"):
        bounded = repair(specks, ct, "gapfill", max_components=3)
    assert (full.ignored_components, bounded.ignored_components) == (0, 15)
    assert len(bounded.centres) < len(full.centres)
    assert bounded.mask[10:13, 10:13, 44:54].all()  # the gap is still repaired
    assert not bounded.mask[20, 2].any()
    # the attention is that of the 3 largest components alone
    np.testing.assert_array_equal(bounded.h_bar, repair(mask, ct, None).h_bar)
    with pytest.raises(InputError, match="max_components"):
        repair(mask, ct, "gapfill", max_components=0)


def test_segment_on_a_smoke_phantom_is_one_component_with_shape_and_affine():
    from deeptree.phantom import generate_case

    case = generate_case("smoke", 0)
    torch.manual_seed(0)
    stage2 = LoadedModel(stage2_network(TINY).eval(), {"patch_size": [16, 16, 16], "alpha": 5.0})
    stage1 = LoadedModel(DarkIsAirway(), {"patch_size": [32, 32, 32], "overlap": 0.25})
    result = segment(case.ct, stage1, stage2, case.spacing, affine=case.affine, device="cpu")
    assert result.mask.shape == case.ct.shape and result.mask.dtype == np.uint8
    assert np.array_equal(result.affine, case.affine)
    assert label_components(result.mask)[1] == 1
    # the dark threshold finds the airway and leaves pieces: there is something to connect
    s1_labels, n1 = label_components(result.stage1_mask)
    assert n1 >= 2 and len(result.centres) >= 1 and len(result.patches) == len(result.centres)
    sizes = np.bincount(s1_labels.ravel())
    sizes[0] = 0
    assert result.mask[s1_labels == np.argmax(sizes)].all()  # the stage-1 main tree is kept
    assert result.h_bar.shape == case.ct.shape and result.seconds["stage1"] > 0
    # the same with a precomputed stage-1 mask and the gap filler
    again = segment(case.ct, result.stage1_mask, "gapfill", affine=case.affine)
    assert label_components(again.mask)[1] == 1 and again.mask.shape == case.ct.shape


def test_segment_file_writes_the_input_affine(tmp_path):
    from deeptree.phantom import generate_case

    case = generate_case("smoke", 1)
    affine = case.affine.copy()
    affine[:3, 3] = [-40.0, 12.5, 7.0]
    write_nifti(tmp_path / "ct.nii.gz", case.ct, affine)
    stage1 = LoadedModel(DarkIsAirway(), {"patch_size": [32, 32, 32]})
    out = segment_file(
        tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz", stage1, "gapfill", device="cpu"
    )
    written = read_nifti(out)
    assert np.allclose(written.affine, affine) and written.array.shape == case.ct.shape
    assert label_components(written.array)[1] == 1


def test_bad_input():
    ct, mask = broken_tubes()
    with pytest.raises(InputError, match="shape"):
        repair(mask[:-1], ct, None)
    with pytest.raises(InputError, match="stage2_patch"):
        repair(mask, ct, Everywhere())
    with pytest.raises(InputError, match="connector"):
        repair(mask, ct, "magic")
    with pytest.raises(InputError, match="stage1_patch"):
        segment(ct, DarkIsAirway(), None)
    with pytest.raises(InputError, match="affine"):
        segment(ct, mask, None, affine=np.eye(3))


def test_evaluate_gap_repair_and_compare_on_stage1():
    from deeptree.config import Stage2DataConfig
    from deeptree.stage2.data import prepare_stage2_source, simulate_stage2_sample

    gt, _ = rasterize(binary_tree(depth=3, trachea_radius=3.0), (1.0, 1.0, 1.0))
    ct = np.where(gt, -1000, -850).astype(np.int16)
    src = prepare_stage2_source(ct, gt, (1.0, 1.0, 1.0), "capsules")
    sample = simulate_stage2_sample(src, np.random.default_rng(3), Stage2DataConfig())
    filled = evaluate_gap_repair([sample], "gapfill")
    assert filled["gaps"] == len(sample.gaps) >= 3
    assert filled["repair_rate"] >= 0.75 and filled["gap_dice"] > 0.1
    nothing = evaluate_gap_repair([sample], Everywhere(), (2, 2, 2))
    assert nothing["gaps"] == filled["gaps"]
    # compare_on_stage1: the broken GT as a stage-1 output; the filler lowers the
    # component count and raises TLD
    rows = compare_on_stage1(
        [
            {
                "id": "c",
                "ct": ct,
                "stage1": sample.mask & ~sample.fragments,
                "gt": gt,
                "spacing": (1, 1, 1),
            }
        ],
        {"gap filler": "gapfill"},
    )
    means = mean_by_method(rows, keys=None, ignore_nan=False)
    assert [r["method"] for r in rows] == ["stage 1", "gap filler"]
    assert means["stage 1"]["n_components"] > 1 and means["gap filler"]["n_components"] == 1
    assert means["gap filler"]["TLD"] > means["stage 1"]["TLD"]


def test_real_ct_two_stage_with_a_precomputed_mask(cip_ct64_dir):
    """The real CT with its coarse airway cut through below the carina: the filler's
    intensity path joins the pieces through the real lumen; shape and affine are kept."""
    ct = read_nifti(cip_ct64_dir / "ct.nii.gz")
    airway = read_nifti(cip_ct64_dir / "airway.nii.gz").array > 0
    labels, n = label_components(airway)
    cut = airway.copy()
    zs = np.nonzero(airway.any(axis=(0, 1)))[0]
    k = int(zs[len(zs) * 2 // 3])
    cut[:, :, k : k + 2] = False
    assert label_components(cut)[1] > n
    result = segment(ct.array, cut, "gapfill-intensity", affine=ct.affine)
    assert label_components(result.mask)[1] == 1 and result.mask.shape == ct.array.shape
    assert np.array_equal(result.affine, ct.affine)
    assert result.mask.sum() > merge(cut, np.zeros_like(cut)).sum()


def _save_checkpoint(path, model, meta):
    from deeptree.checkpoints import save_checkpoint
    from deeptree.train import make_optimizer

    cfg = TrainConfig(iterations=1)
    save_checkpoint(path, model, make_optimizer(model, cfg), 1, cfg, meta)


def test_cli_predict_two_stage(tmp_path, capsys):
    from deeptree.cli import main
    from deeptree.phantom import generate_case

    case = generate_case("smoke", 2)
    folder = tmp_path / "images"
    write_nifti(folder / "PHANTOM_002_0000.nii.gz", case.ct, case.affine)
    torch.manual_seed(0)
    s1 = NetworkConfig(filters=(2, 4, 8, 16), patch_size=(32, 32, 32))
    _save_checkpoint(
        tmp_path / "s1.pt",
        stage1_network(s1, "plain"),
        {
            "stage": 1,
            "variant": "plain",
            "filters": [2, 4, 8, 16],
            "patch_size": [32, 32, 32],
            "overlap": 0.25,
        },
    )
    _save_checkpoint(
        tmp_path / "s2.pt",
        stage2_network(TINY),
        {"stage": 2, "filters": [2, 4, 8, 16], "patch_size": [16, 16, 16], "alpha": 5.0},
    )
    code = main(
        [
            "predict",
            "--two-stage",
            "--checkpoint",
            str(tmp_path / "s1.pt"),
            "--stage2-checkpoint",
            str(tmp_path / "s2.pt"),
            "--input",
            str(folder),
            "--out",
            str(tmp_path / "pred"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    written = read_nifti(tmp_path / "pred" / "PHANTOM_002.nii.gz")
    assert np.allclose(written.affine, case.affine) and written.array.shape == case.ct.shape
    assert label_components(written.array)[1] <= 1


def test_repair_sources_on_a_hand_built_line():
    gt = np.zeros((14, 12, 22), bool)
    gt[5, 5, 2:20] = True
    stage1 = gt.copy()
    stage1[5, 5, 10:12] = False  # a gap: the main tree is z 2..9, the far piece z 12..19
    stage1[6, 5, 4] = True  # one voxel too wide
    stage1[5, 6:9, 6] = True  # a spur: its first voxel touches the GT, the rest does not
    stage1[9, 9, 15] = True  # a false fragment
    stage1[12, 0, 0] = True  # a piece the repair does not reach
    final = stage1.copy()
    final[5, 5, 10:12] = True  # the gap, drawn
    final[4, 5, 11] = True  # drawn too wide
    final[[6, 7, 8], [6, 7, 8], [12, 13, 14]] = True  # a false bridge to the fragment
    final[12, 0, 0] = False
    before = (stage1.copy(), final.copy(), gt.copy())
    labels = repair_sources(stage1, final, gt)
    assert labels.dtype == np.uint8 and labels.shape == gt.shape
    assert labels[6, 5, 4] == 1 and labels[5, 6, 6] == 1
    assert labels[5, 7, 6] == labels[5, 8, 6] == 2
    assert (labels[5, 5, 12:20] == 3).all() and labels[9, 9, 15] == 4
    assert (labels[5, 5, 10:12] == 5).all()
    assert labels[4, 5, 11] == 6 and (labels[[6, 7, 8], [6, 7, 8], [12, 13, 14]] == 6).all()
    assert (labels[5, 5, 2:10] == 0).all() and labels[12, 0, 0] == 0
    assert np.bincount(labels.ravel(), minlength=7)[1:].tolist() == [2, 2, 8, 1, 2, 4]
    for array, original in zip((stage1, final, gt), before, strict=True):
        assert np.array_equal(array, original)  # inputs untouched
    with pytest.raises(InputError, match="shape"):
        repair_sources(stage1, final[:, :, :-1], gt)


def test_repair_sources_on_the_real_cip_ct64_airway(cip_ct64_dir):
    gt = read_nifti(cip_ct64_dir / "airway.nii.gz").array > 0
    slices = np.flatnonzero(gt.any(axis=(0, 1)))
    cut = slice(slices[len(slices) // 2], slices[len(slices) // 2] + 2)
    stage1 = gt.copy()
    stage1[:, :, cut] = False  # a gap through the whole tree at mid-height
    labels = repair_sources(stage1, gt, gt)  # a perfect repair
    counts = np.bincount(labels.ravel(), minlength=7)[1:]
    assert counts[0] == counts[1] == counts[3] == counts[5] == 0  # nothing outside the GT
    assert counts[4] == np.count_nonzero(gt[:, :, cut])  # the gap is drawn, all in the GT
    main = merge(stage1, np.zeros_like(stage1)).astype(bool)
    assert counts[2] == np.count_nonzero(stage1 & ~main) > 0  # the pieces beyond the gap


def test_box_overlap_clips_to_the_volume():
    from deeptree.stage2.predict import box_overlap

    dst, src = box_overlap((-2, 3, 8), (4, 4, 4), (10, 10, 10))
    assert dst == (slice(0, 2), slice(3, 7), slice(8, 10))
    assert src == (slice(2, 4), slice(0, 4), slice(0, 2))
    assert box_overlap((10, 0, 0), (4, 4, 4), (10, 10, 10)) is None
    assert box_overlap((0, -4, 0), (4, 4, 4), (10, 10, 10)) is None
