"""Tests of the run profiles, the results/summary files and the command line."""

from __future__ import annotations

import json

import pytest

from deeptree import report
from deeptree.cli import build_parser, main
from deeptree.config import PROFILES, UnknownProfileError, check_profile, get_config


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_keep_the_papers_method_defaults(profile):
    config = get_config(profile)
    assert config.profile == profile
    assert config.attention.alpha == 5.0
    assert config.anatomy.small_diameter_mm == 2.0
    assert config.breakage.branch_fraction == 0.5
    assert config.breakage.run_fraction == (0.1, 0.3)
    # 3 downsamplings = 4 resolution levels, as in the paper
    assert len(config.stage1_net.filters) == 4
    assert len(config.stage2_net.filters) == 4


def test_gpu_profile_uses_the_papers_patch_sizes():
    config = get_config("gpu")
    assert config.stage1_net.patch_size == (128, 128, 128)
    assert config.stage2_net.patch_size == (64, 64, 64)


def test_gpu_profile_trains_the_papers_500_epochs_of_250_iterations():
    """Paper: 500 epochs for both stages; an nnU-Net epoch is 250 iterations."""
    config = get_config("gpu")
    assert config.stage1_train.iterations == 500 * 250 == 125_000
    assert config.stage2_train.iterations == 500 * 250


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(
        UnknownProfileError, match="unknown profile 'laptop': choose one of smoke, cpu, gpu"
    ):
        check_profile("laptop")


def test_save_results_and_summary(tmp_path):
    import numpy as np

    report.save_results("01_b", {"TLD": np.float32(0.5), "n": np.int64(3)}, tmp_path)
    report.save_results("00_a", {"device": "cpu"}, tmp_path)
    entries = report.load_results(tmp_path)
    assert [e["notebook"] for e in entries] == ["00_a", "01_b"]
    assert entries[1]["results"] == {"TLD": 0.5, "n": 3}
    summary = report.write_summary(tmp_path, header="profile smoke").read_text()
    assert "## 00_a" in summary and "| TLD | 0.5 |" in summary and "profile smoke" in summary
    assert not list(tmp_path.glob(".*tmp*"))


def test_summary_carries_relative_paths_only(tmp_path):
    """Issue 30: run_summary.md is committed with the results: a path inside the run folder
    (notebook 06 names notebook 05's model) is written relative to it."""
    model = tmp_path / "05_stage1" / "run" / "last.pt"
    report.save_results("06_b", {"stage1_model": f"notebook 05: {model}"}, tmp_path)
    summary = report.write_summary(tmp_path).read_text()
    assert "| stage1_model | notebook 05: 05_stage1/run/last.pt |" in summary
    assert str(tmp_path) not in summary


def test_summary_of_an_empty_run(tmp_path):
    assert "No notebook wrote results." in report.write_summary(tmp_path).read_text()


def test_results_json_is_valid_json(tmp_path):
    path = report.save_results("x", {"nested": {"a": [1, 2]}}, tmp_path)
    assert json.loads(path.read_text())["results"]["nested"]["a"] == [1, 2]


def test_cli_lists_every_subcommand_and_info_runs(capsys):
    parser = build_parser()
    help_text = parser.format_help()
    assert "info" in help_text and "notebooks" in help_text
    assert main(["info", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "profile smoke" in out


def test_cli_bad_profile_is_one_clear_line(capsys):
    assert main(["info", "--profile", "nope"]) == 2
    err = capsys.readouterr().err
    assert "deeptree info: error: unknown profile 'nope'" in err
    assert "Traceback" not in err
