"""Tests of deeptree.stage2: simulated stage-2 samples, crops, the dataset and the task."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from tree_builders import binary_tree, rasterize

from deeptree.config import NetworkConfig, Stage2DataConfig, TrainConfig, stage2_data_config
from deeptree.io import InputError, read_nifti
from deeptree.masks import CONNECTIVITY_26, label_components
from deeptree.stage2.data import (
    Stage2CropDataset,
    add_fragments,
    crop_stage2,
    crop_start,
    prepare_stage2_source,
    random_shift,
    simulate_stage2_sample,
    split_centres,
)
from deeptree.stage2.task import stage2_task


def tree_ct(mask: np.ndarray) -> np.ndarray:
    """A toy CT: air in the lumen, parenchyma around (HU)."""
    return np.where(mask, -1000, -850).astype(np.int16)


@pytest.fixture(scope="module")
def source():
    """A binary capsule tree with generations 0..3 (8 peripheral leaves), 1 mm voxels."""
    mask, _ = rasterize(binary_tree(depth=3, trachea_radius=3.0), (1.0, 1.0, 1.0))
    return prepare_stage2_source(tree_ct(mask), mask, (1.0, 1.0, 1.0), "capsules")


# the options "negatives" and "fragments" on (the paper's default has neither): these tests
# exercise them
CFG = Stage2DataConfig(crops_per_simulation=2, negative_fraction=0.5, fragments_per_gap=0.5)


def test_sample_is_a_real_breakage_with_clean_fragments(source):
    sample = simulate_stage2_sample(source, np.random.default_rng(3), CFG)
    assert len(sample.gaps) >= 3
    # Y^B lies in the GT and is exactly what the broken mask lacks
    assert not (sample.label & ~source.airway).any()
    assert np.array_equal(sample.mask & ~sample.fragments, source.airway & ~sample.label)
    # fragments exist, never touch the airway, and keep clear of the gaps
    assert sample.fragments.any()
    near_airway = ndi.binary_dilation(source.airway, CONNECTIVITY_26)
    assert not (sample.fragments & near_airway).any()
    # every gap yields a positive centre within the match distance of its voxels
    for gap in sample.gaps:
        d = np.linalg.norm(sample.positives[:, None, :] - gap.voxels[None], axis=-1).min()
        assert d <= CFG.match_distance
    # negatives are attention peaks away from every gap
    gap_voxels = np.argwhere(sample.label)
    for c in sample.negatives:
        assert np.linalg.norm(gap_voxels - c, axis=1).min() > CFG.match_distance
    assert sample.h_bar.dtype == np.float32 and sample.h_bar.shape == source.airway.shape


def test_same_seed_same_sample_other_seed_other(source):
    a = simulate_stage2_sample(source, np.random.default_rng(7), CFG)
    b = simulate_stage2_sample(source, np.random.default_rng(7), CFG)
    c = simulate_stage2_sample(source, np.random.default_rng(8), CFG)
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.label, b.label)
    assert np.array_equal(a.h_bar, b.h_bar) and np.array_equal(a.positives, b.positives)
    assert not np.array_equal(a.label, c.label)


def test_crop_is_aligned_on_a_hand_built_volume():
    shape = (20, 21, 22)
    image = (np.arange(np.prod(shape)).reshape(shape) / np.prod(shape)).astype(np.float32)
    h_bar = (image * 0.5).astype(np.float32)
    label = np.zeros(shape, bool)
    label[10, 11, 12] = True
    start = crop_start((10, 11, 12), (8, 8, 8), shift=(1, -2, 0))
    assert start.tolist() == [10 + 1 - 4, 11 - 2 - 4, 12 - 4]
    item = crop_stage2(image, h_bar, label, start, (8, 8, 8))
    assert item["image"].shape == (2, 8, 8, 8) and item["image"].dtype == torch.float32
    assert item["label"].shape == (1, 8, 8, 8) and item["label"].dtype == torch.int64
    box = tuple(slice(s, s + 8) for s in start)
    assert np.array_equal(item["image"][0].numpy(), image[box])
    assert np.array_equal(item["image"][1].numpy(), h_bar[box])
    # the single target voxel sits where the shift puts it: offset 4 - shift
    assert np.argwhere(item["label"][0].numpy()).tolist() == [[4 - 1, 4 + 2, 4]]
    assert item["image"][0, 3, 6, 4] == image[10, 11, 12]


def test_crops_at_the_border_are_padded_inside_the_box():
    shape = (10, 12, 14)
    image = np.full(shape, 0.7, np.float32)
    h_bar = np.full(shape, 0.9, np.float32)
    label = np.ones(shape, bool)
    item = crop_stage2(image, h_bar, label, crop_start((0, 11, 13), (8, 8, 8)), (8, 8, 8))
    ct, att, target = item["image"][0].numpy(), item["image"][1].numpy(), item["label"][0].numpy()
    assert ct.shape == att.shape == target.shape == (8, 8, 8)
    inside = np.zeros((8, 8, 8), bool)
    inside[4:, :5, :5] = True  # rows -4..3 -> 0..3, cols 7..14 -> 7..11, 9..16 -> 9..13
    assert np.all(ct[inside] == 0.7) and np.all(ct[~inside] == 0.0)
    assert np.all(att[inside] == np.float32(0.9)) and np.all(att[~inside] == 0.0)
    assert np.all(target[inside] == 1) and np.all(target[~inside] == 0)
    # a box wholly outside is all padding
    far = crop_stage2(image, h_bar, label, (50, 50, 50), (4, 4, 4))
    assert far["image"].abs().sum() == 0 and far["label"].sum() == 0


def test_random_shift_range_and_determinism():
    shifts = np.array([random_shift((64, 64, 32), np.random.default_rng(s)) for s in range(300)])
    assert shifts.min(axis=0).tolist() == [-16, -16, -8]
    assert shifts.max(axis=0).tolist() == [16, 16, 8]
    assert np.array_equal(
        random_shift((8, 8, 8), np.random.default_rng(1)),
        random_shift((8, 8, 8), np.random.default_rng(1)),
    )


def test_split_centres_by_hand():
    label = np.zeros((30, 30, 30), bool)
    label[10, 10, 10:13] = True

    class FakeGap:
        voxels = np.argwhere(label)
        centre = (10, 10, 11)

    centres = np.array([[10, 12, 11], [25, 25, 25]])
    pos, neg = split_centres(centres, label, [FakeGap()], match_distance=5)
    assert pos.tolist() == [[10, 12, 11]] and neg.tolist() == [[25, 25, 25]]
    # an unmatched gap brings its own centre
    pos, neg = split_centres(np.array([[25, 25, 25]]), label, [FakeGap()], match_distance=5)
    assert pos.tolist() == [[10, 10, 11]] and neg.tolist() == [[25, 25, 25]]
    pos, neg = split_centres(np.zeros((0, 3)), np.zeros_like(label), [], 5)
    assert pos.shape == neg.shape == (0, 3)


def test_fragments_by_hand():
    airway = np.zeros((40, 40, 40), bool)
    airway[20, 20, 5:35] = True
    avoid = np.zeros_like(airway)
    avoid[20, 20, 30] = True
    cfg = Stage2DataConfig(fragment_distance=(3.0, 5.0), gap_clearance=8.0)
    frag = add_fragments(airway, 4, np.random.default_rng(0), cfg, avoid=avoid)
    _, n = label_components(frag)
    assert 1 <= n <= 4
    dist = ndi.distance_transform_edt(~airway)
    assert dist[frag].min() >= 2.0  # never 26-adjacent
    assert dist[frag].max() <= 5.0 + cfg.fragment_length[1] / 2 + cfg.fragment_radius[1] + 1e-6
    assert (
        not frag[:, :, 24:].any()
        or np.linalg.norm(np.argwhere(frag) - [20, 20, 30], axis=1).min() > 8.0 - 3.0
    )
    assert not add_fragments(airway, 0, np.random.default_rng(0), cfg).any()


def test_dataset_items_are_pure_functions_of_the_index(source):
    ds = Stage2CropDataset([source], (16, 16, 16), CFG, seed=5)
    first = [ds[i] for i in range(5)]
    again = Stage2CropDataset([source], (16, 16, 16), CFG, seed=5)
    for i in (4, 0, 3):
        assert torch.equal(again[i]["image"], first[i]["image"])
        assert torch.equal(again[i]["label"], first[i]["label"])
    for item in first:
        assert item["image"].shape == (2, 16, 16, 16) and item["label"].shape == (1, 16, 16, 16)
        assert set(item["label"].unique().tolist()) <= {0, 1}
        assert 0.0 <= float(item["image"][1].min()) and float(item["image"][1].max()) <= 1.0
    # positives mostly hold gap voxels; crops sit on attention (H_bar > 0.5 somewhere)
    pos = [it for it in first if not it["negative"]]
    assert pos and all(it["image"][1].max() > 0.5 for it in first)
    assert sum(int(it["label"].sum() > 0) for it in pos) >= len(pos) - 1
    # consecutive items share a simulation, and the target matches its Y^B
    sample = ds.simulation(0)
    assert ds.simulation(0) is sample


def test_simulation_numbers_of_streams_are_one_to_one_and_follow_a_worker():
    """S streams of batches: every simulation serves exactly c items, and the batches one
    DataLoader worker gets (b, b + S, b + 2S, ...) run through its simulations in order."""
    b, c, s = 2, 4, 3
    cfg = Stage2DataConfig(crops_per_simulation=c, simulation_streams=s)
    ds = Stage2CropDataset([object()], (8, 8, 8), cfg, batch_size=b)
    n_items = 4 * s * c  # whole cycles
    numbers = [ds.simulation_number(i) for i in range(n_items)]
    assert sorted(set(numbers)) == list(range(n_items // c))
    assert np.bincount(numbers).tolist() == [c] * (n_items // c)
    # worker w of s: batches w, w + s, ...; c / b = 2 consecutive batches per simulation
    for w in range(s):
        own = [numbers[k * b + j] for k in range(w, n_items // b, s) for j in range(b)]
        assert len(own) == n_items // s
        assert own == [w + s * (q // c) for q in range(len(own))]
    # one stream: the plain order
    plain = Stage2CropDataset([object()], (8, 8, 8), replace(cfg, simulation_streams=1))
    assert [plain.simulation_number(i) for i in range(9)] == [i // c for i in range(9)]


def test_streams_make_each_worker_reuse_its_simulation(source, monkeypatch):
    """Cache misses of one worker's item sequence: one per c items with streams = workers,
    one per batch without (consecutive batches go to different workers)."""
    import deeptree.stage2.data as stage2_module

    calls = []
    real = stage2_module.simulate_stage2_sample

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stage2_module, "simulate_stage2_sample", counting)
    b, c, workers = 2, 4, 2
    for streams, expected in ((workers, 8 // (c // b)), (1, 8)):
        cfg = replace(CFG, crops_per_simulation=c, simulation_streams=streams)
        ds = Stage2CropDataset([source], (16,) * 3, cfg, seed=2, batch_size=b)
        calls.clear()
        for batch in range(0, 2 * 8, workers):  # worker 0's 8 batches
            for j in range(b):
                ds[batch * b + j]
        assert len(calls) == expected


def test_crops_do_not_depend_on_the_number_of_workers(source):
    cfg = replace(CFG, crops_per_simulation=4, simulation_streams=2)
    ds = Stage2CropDataset([source], (16,) * 3, cfg, seed=4, length=12, batch_size=2)

    def batches(workers):
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers)
        return list(loader)

    alone, parallel = batches(0), batches(2)
    assert len(alone) == len(parallel) == 6
    for a, p in zip(alone, parallel, strict=True):
        assert torch.equal(a["image"], p["image"]) and torch.equal(a["label"], p["label"])
        assert torch.equal(a["simulation"], p["simulation"])
    assert [a["simulation"].tolist() for a in alone] == [
        [0, 0],
        [1, 1],
        [0, 0],
        [1, 1],
        [2, 2],
        [3, 3],
    ]


def test_negative_fraction_extremes(source):
    all_neg = Stage2CropDataset([source], (16,) * 3, replace(CFG, negative_fraction=1.0), seed=1)
    no_neg = Stage2CropDataset([source], (16,) * 3, replace(CFG, negative_fraction=0.0), seed=1)
    assert all(no_neg[i]["negative"] == 0 for i in range(4))
    negs = [all_neg[i]["negative"] for i in range(4)]
    has_negatives = [len(all_neg.simulation(i // 2).negatives) > 0 for i in range(4)]
    assert negs == [int(h) for h in has_negatives]


def test_bad_input(source):
    with pytest.raises(InputError, match="shape"):
        prepare_stage2_source(np.zeros((5, 5, 5)), np.ones((5, 5, 6)), (1, 1, 1))
    with pytest.raises(InputError, match="empty"):
        prepare_stage2_source(np.zeros((5, 5, 5)), np.zeros((5, 5, 5)), (1, 1, 1))
    with pytest.raises(InputError, match="spacing"):
        prepare_stage2_source(np.zeros((5, 5, 5)), np.ones((5, 5, 5)), (1, 0, 1))
    with pytest.raises(InputError, match="crops_per_simulation"):
        Stage2CropDataset([source], (8, 8, 8), Stage2DataConfig(crops_per_simulation=0))
    with pytest.raises(InputError, match="simulation_streams"):
        Stage2CropDataset([source], (8, 8, 8), Stage2DataConfig(simulation_streams=0))
    with pytest.raises(InputError, match="batch_size"):
        Stage2CropDataset([source], (8, 8, 8), batch_size=0)
    with pytest.raises(InputError, match="no training cases"):
        Stage2CropDataset([], (8, 8, 8))
    with pytest.raises(ValueError, match="profile"):
        stage2_data_config("laptop")


def test_inputs_are_not_modified(source):
    mask, _ = rasterize(binary_tree(depth=3, trachea_radius=4.0), (1.0, 1.0, 1.0))
    ct = tree_ct(mask)
    before = (mask.copy(), ct.copy())
    prepare_stage2_source(ct, mask, (1.0, 1.0, 1.0))
    assert np.array_equal(mask, before[0]) and np.array_equal(ct, before[1])


def test_stage2_task_trains_through_the_shared_loop(source, tmp_path):
    from deeptree.stage2.predict import load_stage2_model
    from deeptree.train import train

    net = NetworkConfig(filters=(2, 4, 8, 16), patch_size=(16, 16, 16))
    cfg = TrainConfig(iterations=1, batch_size=2, validate_every=1, checkpoint_every=1, amp=False)
    task = stage2_task([source], [source], net, cfg, data=CFG, profile="smoke")
    assert task.meta["stage"] == 2 and task.meta["patch_size"] == [16, 16, 16]
    # TrainConfig's default: nnU-Net's zero output bias; the profiles set the prior (below)
    assert float(task.model.output_block.conv.conv.bias.detach().abs().max()) == 0.0
    result = train(task, cfg, tmp_path, progress=False, device="cpu")
    assert result.iteration == 1
    assert task.select == "gap_dice" and result.best == tmp_path / "best.pt"  # validated once
    val = [e["val"] for e in result.history if "val" in e]
    assert val and 0.0 <= val[-1]["repair_rate"] <= 1.0 and val[-1]["gaps"] >= 3
    model, meta = load_stage2_model(result.checkpoint)
    assert meta["stage"] == 2 and meta["filters"] == [2, 4, 8, 16]
    assert not model.training
    with pytest.raises(InputError, match="stage-1"):
        from deeptree.stage1.predict import load_stage1_model

        load_stage1_model(result.checkpoint)


def test_real_ct_and_airway_give_aligned_crops(cip_ct64_dir):
    """The real 64 x 64 x 79 CT with its coarse airway: simulation and crops stay aligned."""
    ct = read_nifti(cip_ct64_dir / "ct.nii.gz")
    airway = read_nifti(cip_ct64_dir / "airway.nii.gz")
    lung = read_nifti(cip_ct64_dir / "lung.nii.gz")
    src = prepare_stage2_source(ct.array, airway.array, ct.spacing, "cip_ct64", lung.array > 0)
    cfg = Stage2DataConfig(min_generation=1, crops_per_simulation=1, max_shift_fraction=0.0)
    ds = Stage2CropDataset([src], (32, 32, 32), cfg, seed=0)
    sample = ds.simulation(0)
    assert len(sample.gaps) >= 1 and not (sample.label & ~src.airway).any()
    item = ds[0]
    assert item["image"].shape == (2, 32, 32, 32)
    centres = sample.negatives if item["negative"] else sample.positives
    # without shift, the item is the box centred on one of its sample's centres
    matches = [
        crop_stage2(src.image, sample.h_bar, sample.label, crop_start(c, (32,) * 3), (32,) * 3)
        for c in centres
    ]
    assert any(
        torch.equal(m["image"][1], item["image"][1]) and torch.equal(m["label"], item["label"])
        for m in matches
    )
    # the CT channel is the normalised CT up to the intensity augmentation (a monotone map)
    m = next(m for m in matches if torch.equal(m["image"][1], item["image"][1]))
    corr = np.corrcoef(m["image"][0].numpy().ravel(), item["image"][0].numpy().ravel())[0, 1]
    assert corr > 0.9


def test_cli_train_stage2_on_a_phantom_cohort(tmp_path, capsys):
    from deeptree.checkpoints import load_checkpoint
    from deeptree.cli import main
    from deeptree.phantom import generate_cohort

    generate_cohort(tmp_path / "cohort", "smoke", 2, seed=0, progress=False)
    argv = ["train", "--stage", "2", "--profile", "smoke", "--data", str(tmp_path / "cohort")]
    # validation is covered above; here only the command's plumbing
    argv += ["--out", str(tmp_path / "run"), "--iterations", "1", "--val", "0", "--no-progress"]
    assert main(argv) == 0
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["meta"]["stage"] == 2 and state["iteration"] == 1
    assert state["meta"]["patch_size"] == [32, 32, 32]  # the smoke profile's stage-2 patch
    assert "2 training and 0 validation cases" in capsys.readouterr().out


def test_cli_train_stage2_refuses_an_out_folder_of_stage1(tmp_path, capsys):
    from deeptree.checkpoints import save_checkpoint
    from deeptree.cli import main
    from deeptree.networks import stage1_network
    from deeptree.train import make_optimizer

    model = stage1_network(NetworkConfig(filters=(2, 4, 8, 16)), "plain")
    cfg = TrainConfig(iterations=1)
    save_checkpoint(tmp_path / "last.pt", model, make_optimizer(model, cfg), 1, cfg, {"stage": 1})
    before = (tmp_path / "last.pt").read_bytes()
    argv = ["train", "--stage", "2", "--data", str(tmp_path / "none"), "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "stage-1 checkpoint" in capsys.readouterr().err
    assert (tmp_path / "last.pt").read_bytes() == before
    # and the other way round: stage 1 never overwrites a stage-2 model
    save_checkpoint(tmp_path / "last.pt", model, make_optimizer(model, cfg), 1, cfg, {"stage": 2})
    before = (tmp_path / "last.pt").read_bytes()
    argv = ["train", "--stage", "1", "--data", str(tmp_path / "none"), "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "stage-2 checkpoint" in capsys.readouterr().err
    assert (tmp_path / "last.pt").read_bytes() == before


def test_fragment_centres_respect_distance_room_and_gaps():
    """Many fragments of radius 0 length 0 are single voxels: each one is its own centre."""
    airway = np.zeros((48, 48, 48), bool)
    airway[24, 20:28, 4:44] = True
    avoid = np.zeros_like(airway)
    avoid[24, 24, 40:44] = True
    room = np.zeros_like(airway)
    room[:, :24] = True  # only one side of the airway
    cfg = Stage2DataConfig(
        fragment_distance=(3.0, 5.0),
        fragment_length=(0.0, 0.0),
        fragment_radius=(0.0, 0.0),
        gap_clearance=8.0,
    )
    frag = add_fragments(airway, 30, np.random.default_rng(3), cfg, avoid=avoid, room=room)
    centres = np.argwhere(frag)
    assert 20 <= len(centres) <= 30
    dist = ndi.distance_transform_edt(~airway)
    assert dist[frag].min() >= 3.0 and dist[frag].max() <= 5.0
    assert room[frag].all()
    gap_dist = ndi.distance_transform_edt(~avoid)
    assert gap_dist[frag].min() > 8.0
    same = add_fragments(airway, 30, np.random.default_rng(3), cfg, avoid=avoid, room=room)
    assert np.array_equal(frag, same)


def test_stage2_task_starts_at_the_foreground_prior(source):
    net = NetworkConfig(filters=(2, 4, 8, 16), patch_size=(16, 16, 16))
    cfg = TrainConfig(iterations=1, batch_size=1, amp=False, foreground_prior=0.01)
    task = stage2_task([source], [], net, cfg, data=CFG)
    assert task.select is None  # nothing to select on without validation cases
    for head in (task.model.output_block, *task.model.deep_supervision_heads):
        bias = head.conv.conv.bias.detach()
        assert float(bias[1] - bias[0]) == pytest.approx(np.log(0.01 / 0.99))
