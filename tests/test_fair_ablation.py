"""A fair ablation (issue 18): the stage-1 variants differ only in the component ablated: the
same initial weights (but the output heads), patch stream and iterations for one seed, each
with nnU-Net's sampler for its own labels, one output rule for all; the paper's stage 2 by
default, its additions as named options."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from test_data import hand_case  # one tube per class (the same case as the data tests)

from deeptree.config import LOSS_VARIANTS, Stage2DataConfig, TrainConfig, get_config
from deeptree.io import InputError
from deeptree.stage1.data import (
    Stage1PatchDataset,
    nnunet_forced,
)
from deeptree.stage1.predict import airway_from_probabilities, body_mask, predict_stage1
from deeptree.stage1.task import stage1_task
from deeptree.stage2.task import STAGE2_OPTIONS, stage2_checkpoint, stage2_options

NET = get_config("smoke").stage1_net
CFG = TrainConfig(iterations=6, batch_size=2, amp=False, seed=7)


@pytest.fixture(scope="module")
def tasks():
    case = hand_case()
    return {v: stage1_task([case], [], v, NET, CFG, profile="smoke") for v in LOSS_VARIANTS}


def test_variants_share_initial_weights_but_the_heads(tasks):
    weights = {v: t.model.state_dict() for v, t in tasks.items()}
    plain = weights["plain"]
    heads = set()
    for v, w in weights.items():
        assert w.keys() == plain.keys()
        for k, value in w.items():
            if value.shape == plain[k].shape:
                assert torch.equal(value, plain[k]), (v, k)
            else:
                heads.add(k.split(".")[0])
    # only the output heads (4 channels with AMC, 2 without) differ
    assert heads <= {"output_block", "deep_supervision_heads", "skip_layers"}
    for k, value in weights["amc+gul"].items():  # amc and amc+gul: the very same network
        assert torch.equal(value, weights["amc"][k])


def test_variants_share_iterations_and_patch_stream(tasks):
    lengths = {len(t.dataset) for t in tasks.values()}
    assert lengths == {CFG.iterations * CFG.batch_size}
    for index in range(12):
        items = {v: t.dataset[index] for v, t in tasks.items()}
        # same labels, same sampler: the same patches
        for a, b in (("plain", "gul"), ("amc", "amc+gul")):
            assert torch.equal(items[a]["image"], items[b]["image"]), (index, a, b)
            assert torch.equal(items[a]["label"], items[b]["label"])
        if not nnunet_forced(index, CFG.batch_size, CFG.oversample_foreground):
            # patches drawn anywhere are the same for every variant
            for v in LOSS_VARIANTS:
                assert torch.equal(items[v]["image"], items["plain"]["image"]), (index, v)


def test_nnunet_forced_positions():
    # nnU-Net v2: sample j of a batch is forced foreground when j >= round(B (1 - 0.33))
    assert [nnunet_forced(i, 2, 0.33) for i in range(4)] == [False, True, False, True]
    assert [nnunet_forced(i, 3, 0.33) for i in range(3)] == [False, False, True]
    assert not any(nnunet_forced(i, 1, 0.33) for i in range(5))
    assert all(nnunet_forced(i, 2, 1.0) for i in range(4))


def _forced_centres(dataset, n=120):
    return [dataset[i] for i in range(1, 2 * n, 2)]  # odd items: forced (batch 2)


def test_binary_variants_sample_the_whole_airway_not_the_classes():
    case = hand_case()
    relabelled = hand_case(label=(case.label > 0).astype(np.uint8))  # one class only
    kw = {"seed": 3, "oversample": 0.33, "batch_size": 2, "by_class": False}
    a = Stage1PatchDataset([case], NET.patch_size, **kw)
    b = Stage1PatchDataset([relabelled], NET.patch_size, **kw)
    for i in range(10):  # the anatomy classes do not change what a binary variant sees
        assert torch.equal(a[i]["image"], b[i]["image"]), i
    # a forced patch is centred on an airway voxel drawn uniformly: class 1 holds most of them
    drawn = [item["centre_class"] for item in _forced_centres(a)]
    assert set(drawn) == {1}  # "class 1" here means the pooled airway
    n_airway = np.count_nonzero(case.label)
    share_class1 = np.count_nonzero(case.label == 1) / n_airway
    assert share_class1 > 0.8


def test_amc_variants_draw_a_present_class_uniformly():
    label = hand_case().label.copy()
    label[label == 3] = 0  # a case without class 3 (as coarse phantoms)
    ds = Stage1PatchDataset(
        [hand_case(label=label)], NET.patch_size, seed=5, oversample=0.33, batch_size=2
    )
    drawn = np.array([item["centre_class"] for item in _forced_centres(ds, 200)])
    assert set(drawn) == {1, 2}
    assert 0.35 < np.mean(drawn == 1) < 0.65  # uniform over the present classes
    anywhere = [ds[i]["centre_class"] for i in range(0, 40, 2)]
    assert set(anywhere) == {0}


def test_dataset_rejects_bad_sampler_settings():
    with pytest.raises(InputError, match="oversample"):
        Stage1PatchDataset([hand_case()], NET.patch_size, oversample=1.5)
    with pytest.raises(InputError, match="batch_size"):
        Stage1PatchDataset([hand_case()], NET.patch_size, oversample=0.3, batch_size=0)


def test_output_rule_is_argmax_for_hand_probabilities():
    p = np.zeros((4, 1, 1, 3), np.float32)
    p[:, 0, 0, 0] = (0.4, 0.3, 0.3, 0.0)  # union 0.6 > 0.5, but background is the argmax
    p[:, 0, 0, 1] = (0.3, 0.1, 0.1, 0.5)
    p[:, 0, 0, 2] = (0.25, 0.25, 0.25, 0.25)  # a tie goes to background
    assert airway_from_probabilities(p).ravel().tolist() == [0, 1, 0]
    two = np.array([[0.6, 0.4], [0.4, 0.6]], np.float32).reshape(2, 1, 1, 2)
    assert airway_from_probabilities(torch.from_numpy(two)).flatten().tolist() == [0, 1]


def test_output_rule_is_the_same_for_every_variant(tasks):
    ct = np.full((32, 32, 32), -850, np.int16)
    ct[12:20, 12:20, :] = -1000
    ct[:2] = -1000  # outside air, cut away by the body mask
    for variant, task in tasks.items():
        with torch.no_grad():
            for p in task.model.output_block.parameters():  # make the heads decide something
                p.add_(torch.randn_like(p))
        pred = predict_stage1(task.model, ct, NET.patch_size, device="cpu")
        expected = airway_from_probabilities(pred.probabilities) & body_mask(ct)
        assert np.array_equal(pred.mask, expected.astype(np.uint8)), variant
        assert np.array_equal(pred.mask, ((pred.classes != 0) & body_mask(ct)).astype(np.uint8))


def test_union_rule_for_hand_probabilities():
    """Issue 30: the union rule calls a voxel airway where 1 - p(background) > 0.5, also where
    background is the most probable class; an unknown rule is named."""
    p = np.zeros((4, 1, 1, 3), np.float32)
    p[:, 0, 0, 0] = (0.4, 0.3, 0.3, 0.0)  # union 0.6: airway; argmax: background
    p[:, 0, 0, 1] = (0.6, 0.2, 0.1, 0.1)  # union 0.4: background
    p[:, 0, 0, 2] = (0.3, 0.1, 0.1, 0.5)
    assert airway_from_probabilities(p, "union").ravel().tolist() == [1, 0, 1]
    assert airway_from_probabilities(p, "argmax").ravel().tolist() == [0, 0, 1]
    tensor = airway_from_probabilities(torch.from_numpy(p), "union")
    assert isinstance(tensor, torch.Tensor) and tensor.flatten().tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="output rule must be one of argmax, union, got 'max'"):
        airway_from_probabilities(p, "max")


def test_both_rules_are_the_same_with_two_channels():
    """Two channels: argmax and union give the same mask voxel for voxel (ties included)."""
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(size=(2, 6, 6, 6)).astype(np.float32))
    logits[:, 0, 0, 0] = 0.0  # an exact tie: background under both rules
    p = torch.softmax(logits, dim=0)
    for probabilities in (p, p.numpy()):
        argmax = airway_from_probabilities(probabilities, "argmax")
        union = airway_from_probabilities(probabilities, "union")
        assert (argmax == union).all() and int(argmax[0, 0, 0]) == 0


def test_prediction_gives_either_rule_without_rerunning(tasks):
    """`Stage1Prediction.mask_for` gives the other rule's mask from the stored probabilities,
    with the same body mask, equal to a prediction made with that rule."""
    ct = np.full((32, 32, 32), -850, np.int16)
    ct[12:20, 12:20, :] = -1000
    ct[:2] = -1000  # outside air, cut away by the body mask
    model = tasks["amc"].model
    with torch.no_grad():
        for p in model.output_block.parameters():  # heads that share the airway out
            p.add_(torch.randn_like(p))
    pred = predict_stage1(model, ct, NET.patch_size, device="cpu")
    union = predict_stage1(model, ct, NET.patch_size, device="cpu", rule="union")
    assert pred.rule == "argmax" and union.rule == "union"
    assert np.array_equal(pred.mask_for("union"), union.mask)
    assert np.array_equal(union.mask_for("argmax"), pred.mask)
    expected = airway_from_probabilities(pred.probabilities, "union") & body_mask(ct)
    assert np.array_equal(union.mask, expected.astype(np.uint8))
    assert np.array_equal(union.body, body_mask(ct)) and union.body is not None
    assert (union.mask >= pred.mask).all()  # the union is never stricter than argmax
    with pytest.raises(ValueError, match="output rule"):
        predict_stage1(model, ct, NET.patch_size, device="cpu", rule="max")


def test_stage2_defaults_are_the_papers_but_the_start():
    # the start-up is stage 1's (config.STAGE2_START, chosen on validation: issue 30), the
    # rest of the paper's stage 2 is the default: no negatives, no fragments, the last model
    for profile in ("smoke", "cpu", "gpu"):
        run = get_config(profile)
        assert run.stage2_train.foreground_prior == 0.01
    data = Stage2DataConfig()
    assert data.negative_fraction == 0.0 and data.fragments_per_gap == 0.0


def test_each_stage2_option_changes_one_setting():
    data, cfg = Stage2DataConfig(), TrainConfig()
    assert stage2_options([], data, cfg) == (data, cfg, False)
    changed = {}
    for option in STAGE2_OPTIONS:
        d, c, best = stage2_options([option], data, cfg)
        diff = [f.name for f in fields(d) if getattr(d, f.name) != getattr(data, f.name)]
        diff += [f.name for f in fields(c) if getattr(c, f.name) != getattr(cfg, f.name)]
        diff += ["best"] if best else []
        changed[option] = diff
    assert changed == {
        "negatives": ["negative_fraction"],
        "fragments": ["fragments_per_gap"],
        "best": ["best"],
    }
    with pytest.raises(InputError, match="unknown stage-2 option 'wings'"):
        stage2_options(["wings"], data, cfg)


def test_stage2_checkpoint_is_the_last_unless_best(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"x")
    assert stage2_checkpoint(tmp_path) == tmp_path / "last.pt"
    assert stage2_checkpoint(tmp_path, best=True) == tmp_path / "last.pt"  # never validated
    (tmp_path / "best.pt").write_bytes(b"x")
    assert stage2_checkpoint(tmp_path) == tmp_path / "last.pt"
    assert stage2_checkpoint(tmp_path, best=True) == tmp_path / "best.pt"
    with pytest.raises(InputError, match="no last.pt"):
        stage2_checkpoint(tmp_path / "none")


def test_seed_changes_the_weights_and_the_stream():
    case = hand_case()
    a = stage1_task([case], [], "plain", NET, CFG)
    b = stage1_task([case], [], "plain", NET, replace(CFG, seed=8))
    assert not torch.equal(
        a.model.state_dict()["input_block.conv1.conv.weight"],
        b.model.state_dict()["input_block.conv1.conv.weight"],
    )
    assert not torch.equal(a.dataset[0]["image"], b.dataset[0]["image"])
