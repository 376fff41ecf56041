"""Tests of deeptree.networks: shapes, deep supervision outputs, profiles."""

from __future__ import annotations

import pytest
import torch

from deeptree.config import NetworkConfig, get_config
from deeptree.io import InputError
from deeptree.networks import (
    build_network,
    count_parameters,
    divisor,
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
