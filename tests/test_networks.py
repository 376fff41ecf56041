"""Tests of deeptree.networks: shapes, deep supervision outputs, profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deeptree.config import NetworkConfig, get_config
from deeptree.io import InputError
from deeptree.networks import (
    build_network,
    count_parameters,
    divisor,
    init_foreground_prior,
    stage1_network,
    stage2_network,
)

TINY = NetworkConfig(filters=(2, 4, 8, 16), patch_size=(16, 16, 16))


def test_stage1_shapes_train_and_eval():
    torch.manual_seed(0)
    net = stage1_network(TINY, "amc+gul")
    x = torch.randn(2, 1, 16, 16, 16)
    net.train()
    outs = net(x)
    assert [tuple(o.shape) for o in outs] == [(2, 4, 16, 16, 16), (2, 4, 8, 8, 8), (2, 4, 4, 4, 4)]
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (2, 4, 16, 16, 16)
    assert stage1_network(TINY, "plain").eval()(x).shape == (2, 2, 16, 16, 16)


def test_stage2_two_inputs_one_foreground_class():
    net = stage2_network(TINY).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 2, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


def test_four_levels_and_widened_filters():
    net = build_network(TINY, 1, 2)
    assert len(net.downsamples) == 2 and len(net.upsamples) == 3  # 3 downsamplings incl. bottleneck
    assert divisor() == 8
    gpu = get_config("gpu").stage1_net
    assert len(gpu.filters) == 4 and gpu.filters[-1] > 2 * gpu.filters[-2]  # widened deepest level
    for profile in ("smoke", "cpu", "gpu"):
        cfg = get_config(profile).stage1_net
        assert all(p % divisor() == 0 for p in cfg.patch_size)
    assert count_parameters(stage1_network(get_config("smoke").stage1_net)) < count_parameters(
        stage1_network(get_config("cpu").stage1_net)
    )


def test_no_deep_supervision_returns_tensor():
    net = build_network(TINY, 1, 2, deep_supervision=False).train()
    assert isinstance(net(torch.randn(1, 1, 16, 16, 16)), torch.Tensor)


def test_bad_configs():
    with pytest.raises(InputError, match="4 positive widths"):
        build_network(NetworkConfig(filters=(4, 8, 16)), 1, 2)
    with pytest.raises(InputError, match="variant"):
        stage1_network(TINY, "amc+dice")


def test_foreground_prior_sets_every_head():
    """Output weights zeroed by hand: the network then predicts exactly the prior."""
    torch.manual_seed(0)
    net = init_foreground_prior(stage2_network(TINY), 0.01)
    heads = [net.output_block, *net.deep_supervision_heads]
    assert len(heads) == 3
    for head in heads:
        bias = head.conv.conv.bias.detach()
        assert float(bias[0]) == 0.0
        assert float(bias[1]) == pytest.approx(math.log(0.01 / 0.99))
        with torch.no_grad():
            head.conv.conv.weight.zero_()
    net.train()
    for out in net(torch.randn(1, 2, 16, 16, 16)):
        prob = torch.softmax(out, dim=1)
        assert torch.allclose(prob[:, 1], torch.full_like(prob[:, 1], 0.01), atol=1e-6)


def test_foreground_prior_with_several_foreground_classes():
    net = init_foreground_prior(stage1_network(TINY, "amc"), 0.02)  # 3 foreground classes
    with torch.no_grad():
        net.output_block.conv.conv.weight.zero_()
        prob = torch.softmax(net.eval()(torch.randn(1, 1, 16, 16, 16)), dim=1)
    assert torch.allclose(prob[:, 1:], torch.full_like(prob[:, 1:], 0.02), atol=1e-6)


def test_foreground_prior_rejects_impossible_values():
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(InputError, match="foreground prior"):
            init_foreground_prior(stage2_network(TINY), bad)
    with pytest.raises(InputError, match="foreground prior"):
        init_foreground_prior(stage1_network(TINY, "amc"), 0.34)  # 3 x 0.34 > 1


def test_foreground_prior_on_a_real_ct(cip_ct64_dir):
    """On the real 64^3 CT and its airway's attention, the cpu stage-2 network starts near the
    prior instead of near 50/50 (same random weights otherwise)."""
    from deeptree.attention import breakage_attention
    from deeptree.io import read_nifti
    from deeptree.stage1.data import normalize_ct

    ct = read_nifti(cip_ct64_dir / "ct.nii.gz").array
    airway = read_nifti(cip_ct64_dir / "airway.nii.gz").array > 0
    image = np.stack([normalize_ct(ct), breakage_attention(airway)]).astype(np.float32)
    x = torch.from_numpy(image)[None, :, :64, :64, :64]
    for seed in range(3):
        torch.manual_seed(seed)
        net = stage2_network(get_config("cpu").stage2_net).eval()
        with torch.no_grad():
            before = float(torch.softmax(net(x), dim=1)[:, 1].mean())
            after = float(torch.softmax(init_foreground_prior(net, 0.01)(x), dim=1)[:, 1].mean())
        assert before > 0.2 and after < 0.05 and after < before / 5


def test_profiles_start_both_stages_at_the_prior():
    from deeptree.config import STAGE1_START, STAGE2_START
    from deeptree.stage2.task import STAGE2_OPTIONS

    # stage 2 starts as stage 1 with a lower momentum (chosen on validation, issue 30)
    assert STAGE2_START == {**STAGE1_START, "momentum": 0.9}
    assert "prior" not in STAGE2_OPTIONS  # the start is no longer an option
    for profile in ("smoke", "cpu", "gpu"):
        run = get_config(profile)
        # every stage-1 variant and stage 2 start at the recipe's foreground probability
        for cfg, start in ((run.stage1_train, STAGE1_START), (run.stage2_train, STAGE2_START)):
            assert cfg.foreground_prior == start["foreground_prior"]
            warmup = 0 if profile == "smoke" else start["warmup_iterations"]
            assert cfg.warmup_iterations == warmup
        assert run.stage1_train.momentum == 0.99  # nnU-Net's
        assert run.stage2_train.momentum == (0.99 if profile == "smoke" else 0.9)
