"""Tests of deeptree.evaluation.compare's shared helpers, the stage-1 variant table and the
connector and device arguments."""

from __future__ import annotations

import math

import pytest
import torch

from deeptree.checkpoints import LoadedModel
from deeptree.config import LOSS_VARIANTS, VARIANTS, check_variant, n_output_channels, uses_gul
from deeptree.evaluation.compare import group_by_method, mean_by_method
from deeptree.evaluation.paper import method_label
from deeptree.io import InputError
from deeptree.networks import choose_device
from deeptree.stage2.predict import split_connector

ROWS = [
    {"case": "a", "method": "x", "BD": 0.5, "TLD": 1.0, "n": 2, "ok": True},
    {"case": "a", "method": "y", "BD": 0.0, "TLD": float("nan"), "n": 4, "ok": False},
    {"case": "b", "method": "x", "BD": 1.0, "TLD": 0.0, "n": 4, "ok": True},
    {"case": "b", "method": "y", "BD": 1.0, "TLD": 0.5, "n": 6, "ok": False},
]


def test_group_by_method_keeps_the_order_of_first_appearance():
    groups = group_by_method(ROWS)
    assert list(groups) == ["x", "y"]
    assert [r["case"] for r in groups["y"]] == ["a", "b"]


def test_mean_by_method_named_keys_skip_nan_by_default():
    means = mean_by_method(ROWS, keys=("BD", "TLD", "DSC"))
    assert means == {"x": {"BD": 0.75, "TLD": 0.5}, "y": {"BD": 0.5, "TLD": 0.5}}


def test_mean_by_method_of_every_numeric_column_can_keep_nan():
    means = mean_by_method(ROWS, keys=None, ignore_nan=False)
    assert set(means["x"]) == {"BD", "TLD", "n"}  # strings and bools are no figures
    assert means["x"]["n"] == 3.0 and math.isnan(means["y"]["TLD"])


def test_variant_table_drives_channels_gul_and_labels():
    assert LOSS_VARIANTS == ("plain", "amc", "gul", "amc+gul")
    assert [n_output_channels(v) for v in LOSS_VARIANTS] == [2, 4, 2, 4]
    assert [uses_gul(v) for v in LOSS_VARIANTS] == [False, False, True, True]
    assert method_label("amc+gul+stage2") == "nnUNet* + AMC + GUL + stage 2"
    assert method_label("cldice") == VARIANTS["cldice"].label == "clDice"
    with pytest.raises(InputError, match="cldice"):
        check_variant("cldice")  # clDice has a task of its own


def test_connectors_are_typed():
    net = torch.nn.Conv3d(2, 2, 1)
    loaded = LoadedModel(net, {"patch_size": [8, 8, 8]})
    model, meta = loaded  # unpacks as (model, meta)
    assert model is net and meta == {"patch_size": [8, 8, 8]}
    assert split_connector(loaded) == (net, {"patch_size": [8, 8, 8]})
    assert split_connector(net) == (net, {})
    assert split_connector(None) == (None, {})
    assert split_connector("gapfill") == ("gapfill", {})
    with pytest.raises(InputError, match="unknown connector"):
        split_connector("glue")
    with pytest.raises(InputError, match="tuple"):
        split_connector((net, {}))


def test_choose_device():
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
