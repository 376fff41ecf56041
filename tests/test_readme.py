"""The README as a landing page (issue 31): one screen naming the method, the generated
pipeline figure, the reading order and the generated bottom line; two commands; then links to
the pages of docs/. The bottom-line box (deeptree.evaluation.readme_box) and the pipeline
figure (deeptree.viz.pipeline_figure) are written by code, and the committed ones are what
the code writes."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from deeptree.evaluation import readme_box
from deeptree.io import InputError
from deeptree.viz import pipeline_figure

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMITTED = ROOT / "results" / "20261202-cpu-synthetic"
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _section(text: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, heading
    return match.group(1)


# --------------------------------------------------------------------------------------------
# the README
# --------------------------------------------------------------------------------------------
def test_readme_fits_one_screen_then_links():
    lines = README.splitlines()
    assert len(lines) <= 120, f"README.md: {len(lines)} lines"
    screen = "\n".join(lines[:40])
    assert "DeepTree" in screen
    assert "](docs/figures/pipeline.png)" in screen and "![" in screen
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"](notebooks/{notebook.name})" in screen, notebook.name
    assert readme_box.START in screen and readme_box.END in screen, "the bottom line box"
    assert "has not landed yet" not in README


def test_readme_gives_two_commands_and_where_the_book_lands():
    section = _section(README, "Two commands")
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make reproduce", "make test"]
    assert "`make book`" in section and "`site/index.html`" in section
    # no time typed beside the commands: the measured times are on the Timings page
    assert "](docs/timings.md)" in section
    assert not re.search(r"\d\s*(s|min|minutes)\b", section), section


def test_every_docs_page_is_linked_and_every_relative_link_resolves():
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    more = _section(README, "More")
    for name in pages:
        assert f"](docs/{name})" in more, name
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:|#", target):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(ROOT)}: broken link {target}"


def test_the_moved_sections_keep_their_headings():
    """Tests, code comments and other pages name these sections; they moved to docs/."""
    for page, heading in [("troubleshooting.md", "# When something goes wrong"),
                          ("threads.md", "## On a busy machine"), ("timings.md", "# Timings"),
                          ("training-at-scale.md", "# Training at scale"),
                          ("segment-your-ct.md", "# Segment your own CT")]:  # fmt: skip
        assert re.search(rf"^{re.escape(heading)}$", (ROOT / "docs" / page).read_text(), re.M)


def test_readme_box_is_the_one_written_from_the_newest_run():
    folder = readme_box.newest_results(ROOT)
    box = README.split(readme_box.START + "\n", 1)[1].split(readme_box.END, 1)[0]
    assert box == readme_box.readme_bottom_line(folder, ROOT)
    assert len(box.splitlines()) <= 8
    assert readme_box.main(["--root", str(ROOT), "--check"]) == 0


# --------------------------------------------------------------------------------------------
# the bottom-line box
# --------------------------------------------------------------------------------------------
def test_bottom_line_of_the_committed_run():
    box = readme_box.readme_bottom_line(COMMITTED, ROOT)
    assert "3 training seeds x 10 test phantoms, 1200 stage-1 iterations" in box
    # the key numbers as the tables print them, beside the paper's
    assert "plain nnUNet* 36.3 [30.1, 42.9] and 81.9 [76.1, 86.7]" in box
    assert "DeepTree (amc+gul+stage2) 16.6 [0.0, 29.1] and 27.3 [0.0, 43.7]" in box
    assert "(paper, real CT: 88.9 ± 4.5 and 97.2 ± 1.1)" in box
    assert "plain -> amc -25.7 [-35.4, -12.7] hurts" in box
    assert "all not resolved at this scale (paper +1.5, +1.3, +2.8, +0.7); precision" in box
    assert readme_box.NONE_REPRODUCE in box and "2 of the 8 lie below it" in box
    row = next(line for line in box.splitlines() if "`time make reproduce PROFILE=cpu`" in line)
    assert "46.8 min" in row and "results/20261202-cpu-synthetic/run_summary.md" in row
    assert "](results/20261202-cpu-synthetic/tables.md)" in box


def _hand_built(tmp_path: Path, effects: list[dict], table2: list[dict]) -> Path:
    """A results folder as the current code writes it (``failed`` columns, ``nan`` effects)."""
    folder = tmp_path / "results" / "20990101-cpu-synthetic"
    folder.mkdir(parents=True)
    for name, rows in (("component_effects.csv", effects), ("table2_ablation.csv", table2)):
        with open(folder / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    (folder / "tables.md").write_text(
        "# DeepTree reproduction (cpu profile)\n\nWritten on 2099-01-01 00:00 UTC, commit `x`, "
        "machine: Test CPU, 4 cores. Every figure.\n\nStage 1: 2000 iterations of batch 2.\n"
    )
    (folder / "run_summary.md").write_text(
        "# s\n\nProfile `cpu`, commit `x`.\n\n| notebook | seconds | status |\n|---|---|---|\n"
        "| 00_a | 60.0 | ok |\n| 07_b | 3000.0 | ok |\n\nTotal: 51.0 min.\n"
    )
    return folder


def _effect(component, without, with_, d, lo, hi, word, paper="", failed=0):
    return {"component": component, "without": without, "with": with_, "seeds": 3 - failed,
            "failed": failed, "cases": 10, "dTLD": d, "dTLD low": lo, "dTLD high": hi,
            "TLD verdict": word, "paper dTLD": paper}  # fmt: skip


def _row(method, tld, precision, failed=0, paper=("—", "—")):
    return {"method": method, "seeds": 3 - failed, "failed": failed, "cases": 10, "TLD": tld,
            "precision": precision, "paper TLD": paper[0], "paper precision": paper[1]}  # fmt: skip


def test_bottom_line_of_a_run_with_failed_models_and_missing_paper_values(tmp_path):
    effects = [
        _effect("AMC", "plain", "amc", 3.0, 1.04, 5.0, "improves", 2.9, failed=1),
        _effect("GUL", "plain", "gul", "nan", "nan", "nan",
                "not measured (a failed model in every pair)", failed=3),
        _effect("stage 2", "plain", "plain+stage2", -0.5, -0.9, -0.1, "hurts"),
        _effect("stage 2", "amc", "amc+stage2", 0.2, 0.0, 0.5, "not resolved at this scale", 1.3),
        _effect("stage-2 option negatives", "amc+gul+stage2", "amc+gul+stage2+negatives", 2.0, 1.0, 3.0,
                "improves"),
    ]  # fmt: skip
    table2 = [
        _row("plain", "40.0 [35.0, 45.0]", "80.0 [75.0, 85.0]"),
        _row("amc+gul+stage2", "—", "—", failed=3, paper=("88.9 ± 4.5", "97.2 ± 1.1")),
    ]
    folder = _hand_built(tmp_path, effects, table2)
    box = readme_box.readme_bottom_line(folder, tmp_path)
    assert len(box.splitlines()) <= 8
    assert "2099-01-01" in box and "2000 stage-1 iterations" in box
    assert "3 training seeds x 10 test phantoms" in box
    assert "plain nnUNet* 40.0 [35.0, 45.0] and 80.0 [75.0, 85.0]; " in box, "no paper value"
    assert "DeepTree (amc+gul+stage2) — and — (3 failed model(s) left out)" in box
    assert "plain -> amc +3.0 [+1.0, +5.0] improves, 1 seed(s) left out" in box
    assert (
        "plain -> gul not measured, 3 seed(s) left out" in box
        and "(paper" not in box.split("GUL,")[1].split("\n")[0]
    )
    assert "plain -> plain+stage2 -0.5 [-0.9, -0.1] hurts" in box
    assert "amc -> amc+stage2 +0.2 [+0.0, +0.5] not resolved at this scale (paper —, +1.3)" in box
    assert "option" not in box, "the stage-2 options are not the paper's components"
    # one paper component improves: the box must not say that none reproduces
    assert readme_box.NONE_REPRODUCE not in box
    assert "1 of the 4 comparisons of the paper's components raise TLD" in box
    assert "3 of the ablation's 6 models failed" in box
    assert "51.0 min for the 2 notebooks of this run on Test CPU, 4 cores" in box
    assert "[`results/20990101-cpu-synthetic/run_summary.md`]" in box


def test_bottom_line_of_a_partial_run_over_the_bar_says_so(tmp_path):
    """A run of notebook 07 alone on an AVX2 machine, longer than the 75 minutes the cpu
    design is sized for: the box names the notebook, the CPU class and the bar."""
    effects = [_effect("AMC", "plain", "amc", 3.0, 1.0, 5.0, "improves", 2.9)]
    folder = _hand_built(tmp_path, effects, [_row("plain", "40.0 [35.0, 45.0]", "80 [75, 85]")])
    (folder / "run_summary.md").write_text(
        "# s\n\nProfile `cpu`, commit `x`, Python 3.11.7, 2 cores (AMD EPYC, AVX2 (no "
        "AVX-512)).\n\n| notebook | seconds | status |\n|---|---|---|\n"
        "| 07_evaluation | 8400.0 | ok |\n\nTotal: 140.0 min.\n"
    )
    row = readme_box.readme_bottom_line(folder, tmp_path).splitlines()[-1]
    assert "140.0 min for 07_evaluation alone (the other notebooks were not rerun)" in row
    assert "on AMD EPYC, AVX2 (no AVX-512), 2 cores, over the 75 minutes" in row
    (folder / "run_summary.md").write_text(
        (folder / "run_summary.md").read_text().replace("Total: 140.0", "Total: 70.0")
    )
    row = readme_box.readme_bottom_line(folder, tmp_path).splitlines()[-1]
    assert "70.0 min" in row and "over the" not in row


def test_bottom_line_says_when_the_time_leaves_out_reused_models(tmp_path):
    """A run whose notebook 07 loaded models an earlier invocation trained: its time is not a
    whole run's, and the box says so (tables.md's "Reused" sentence, outputs.reused_text)."""
    from deeptree.evaluation.outputs import reused_text

    effects = [_effect("AMC", "plain", "amc", 3.0, 1.0, 5.0, "improves", 2.9)]
    folder = _hand_built(tmp_path, effects, [_row("plain", "40.0 [35.0, 45.0]", "80 [75, 85]")])
    row = readme_box.readme_bottom_line(folder, tmp_path).splitlines()[-1]
    assert "reused" not in row
    assert reused_text({"seed0/plain": True, "seed0/amc": True}) == ""
    sentence = reused_text({"seed0/plain": False, "seed0/amc": False, "seed0/stage2": True})
    assert sentence.startswith("Reused: 2 of 3 models") and "`seed0/amc`, `seed0/plain`" in sentence
    with open(folder / "tables.md", "a") as f:
        f.write(sentence)
    row = readme_box.readme_bottom_line(folder, tmp_path).splitlines()[-1]
    assert "51.0 min for the 2 notebooks of this run on Test CPU, 4 cores; 2 of its 3 models" in row
    assert "so their training is not in this time" in row


def test_bottom_line_gives_stage_2s_precision_price_beside_the_papers(tmp_path):
    """Issue 30's aim: stage 2 ahead of stage 1 at a precision cost of at most 0.4 points
    (paper Table 2): the box prints the run's precision effects of stage 2 beside that bar."""
    effects = [
        {**_effect("stage 2", "plain", "plain+stage2", 4.8, 3.1, 7.0, "improves", 1.5),
         "dprecision": -6.6, "precision verdict": "hurts"},
        {**_effect("stage 2", "amc", "amc+stage2", 8.5, 5.0, 12.6, "improves", 1.3),
         "dprecision": -5.2, "precision verdict": "hurts"},
    ]  # fmt: skip
    folder = _hand_built(tmp_path, effects, [_row("plain", "40.0 [35.0, 45.0]", "80 [75, 85]")])
    box = readme_box.readme_bottom_line(folder, tmp_path)
    line = next(x for x in box.splitlines() if x.startswith("> - stage 2,"))
    assert line.endswith(
        "all improves (paper +1.5, +1.3); precision effect -6.6 to -5.2 points, "
        "all hurts (the paper's stage 2 costs 0.0 to 0.4)."
    )


def test_bottom_line_says_none_reproduces_exactly_when_none_improves(tmp_path):
    effects = [_effect("AMC", "plain", "amc", -3.0, -5.0, -1.0, "hurts", 2.9),
               _effect("stage 2", "plain", "plain+stage2", 0.4, 0.0, 1.0,
                       "not resolved at this scale", 1.5)]  # fmt: skip
    table2 = [_row("plain", "40.0 [35.0, 45.0]", "80.0 [75.0, 85.0]")]
    box = readme_box.readme_bottom_line(_hand_built(tmp_path, effects, table2), tmp_path)
    assert readme_box.NONE_REPRODUCE in box and "1 of the 2 lie below it" in box
    assert "DeepTree (amc+gul+stage2): not in this run" in box


def test_bottom_line_names_a_missing_file_or_value(tmp_path):
    effects = [_effect("AMC", "plain", "amc", -3.0, -5.0, -1.0, "hurts", 2.9)]
    folder = _hand_built(tmp_path, effects, [_row("plain", "1 [0, 2]", "1 [0, 2]")])
    (folder / "run_summary.md").write_text("Profile `cpu`.\n")
    with pytest.raises(InputError, match=r"run_summary\.md: no total time"):
        readme_box.readme_bottom_line(folder, tmp_path)
    (folder / "tables.md").unlink()
    with pytest.raises(InputError, match=r"tables\.md: missing"):
        readme_box.readme_bottom_line(folder, tmp_path)
    with pytest.raises(InputError, match="no committed cpu run"):
        readme_box.newest_results(tmp_path / "nothing")


def test_the_command_rewrites_only_the_box(tmp_path):
    shutil.copytree(COMMITTED, tmp_path / "results" / COMMITTED.name)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{readme_box.START}\nold box\n{readme_box.END}\n\n## Rest\n")
    assert readme_box.main(["--root", str(tmp_path), "--check"]) == 1
    assert readme_box.main(["--root", str(tmp_path)]) == 0
    text = readme.read_text()
    assert text.startswith(f"# Title\n\n{readme_box.START}\n> **The bottom line**")
    assert text.endswith(f"{readme_box.END}\n\n## Rest\n") and "old box" not in text
    assert readme_box.main(["--root", str(tmp_path), "--check"]) == 0
    assert not list(tmp_path.glob(".*tmp*")), "written through a temporary name"
    readme.write_text("# no markers\n")
    assert readme_box.main(["--root", str(tmp_path)]) == 2
    with pytest.raises(InputError, match="README.md: needs one"):
        readme_box.replace_box("# no markers\n", "box\n")


# --------------------------------------------------------------------------------------------
# the pipeline figure
# --------------------------------------------------------------------------------------------
def test_pipeline_figure_command_writes_a_png_of_the_expected_size(tmp_path):
    out = tmp_path / "figures" / "pipeline.png"
    assert pipeline_figure.main([str(out)]) == 0
    pixels, text = pipeline_figure.read_png(out)
    width, height = (round(s * pipeline_figure.DPI) for s in pipeline_figure.FIGSIZE)
    assert pixels.shape == (height, width, 4) and pixels.dtype == np.uint8
    assert pipeline_figure.source_digest() in text[pipeline_figure.DIGEST_KEY]
    assert (pixels[..., :3] < 128).any() and (pixels[..., :3] > 250).mean() > 0.5, "drawn"
    assert not list(out.parent.glob(".*tmp*")), "written through a temporary name"


def test_committed_pipeline_figure_is_the_one_the_code_draws():
    committed, text = pipeline_figure.read_png(ROOT / "docs" / "figures" / "pipeline.png")
    assert pipeline_figure.source_digest() in text.get(pipeline_figure.DIGEST_KEY, ""), (
        "docs/figures/pipeline.png was drawn by another version of deeptree/viz/"
        "pipeline_figure.py: run `make readme`"
    )
    fresh, _ = pipeline_figure.read_png(pipeline_figure.png_bytes())
    assert fresh.shape == committed.shape
    difference = np.abs(fresh.astype(np.int16) - committed.astype(np.int16)).mean()
    assert difference <= pipeline_figure.PIXEL_TOLERANCE, difference


def test_timings_page_gives_each_run_its_own_row():
    """Issue 31: the Timings table stacked several `make test` runs (and several reproductions)
    in one row; each measured run has a row of its own, with its one date."""
    lines = (ROOT / "docs" / "timings.md").read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| step ")]
    for row in rows:
        assert len(set(re.findall(r"\b\d{4}-\d{2}-\d{2}\b", row))) <= 1, row
    ci = [row for row in rows if "`CI=true bash .ci/run`" in row]
    assert len(ci) >= 2, "the make test runs, one row each"
    for row in ci:
        assert len(re.findall(r"\b\d+ s on \d{4}-\d{2}-\d{2}\b", row)) == 1, row


REFERENCE_TABLES = (
    "# DeepTree reproduction (cpu profile)\n\nWritten on 2099-02-01 00:00 UTC, commit `x`, "
    "machine: Test CPU, 4 cores. Every figure.\n\nStage 1: 12000 iterations of batch 2.\n\n"
    "Models: the 26 models shipped in `results/20990201-cpu-reference/models` (every file "
    "checked against the SHA-256 of its manifest), loaded, none trained here.\n\n"
    "**25 of 26 validated models meet the flattening rule** (validation score ...). Training "
    "time of all 26 models: 31.4 CPU hours (33.0 wall hours of their processes).\n"
)


def test_the_reference_run_is_the_repository_s_results_once_it_is_complete(tmp_path):
    """A reference folder with a run summary wins over a newer cpu run; one still training
    (partial models only) is passed over; the box says the models were shipped, not trained."""
    effects = [_effect("AMC", "plain", "amc", 3.0, 1.0, 5.0, "improves", 2.9)]
    synthetic = _hand_built(tmp_path, effects, [_row("plain", "40.0 [35.0, 45.0]", "80 [75, 85]")])
    newer = synthetic.parent / "20990301-cpu-synthetic"
    shutil.copytree(synthetic, newer)
    partial = synthetic.parent / "20990401-cpu-reference"
    (partial / "partial-models").mkdir(parents=True)
    assert readme_box.newest_results(tmp_path) == newer
    reference = synthetic.parent / "20990201-cpu-reference"
    shutil.copytree(synthetic, reference)
    (reference / "tables.md").write_text(REFERENCE_TABLES)
    assert readme_box.committed_results(tmp_path) == [partial, reference, newer, synthetic]
    assert readme_box.newest_results(tmp_path) == reference
    box = readme_box.readme_bottom_line(reference, tmp_path)
    assert "12000 stage-1 iterations, the models shipped with the tables)" in box
    assert (
        "notebook 07 loads the 26 models shipped in `results/20990201-cpu-reference/models` and "
        "scores them (it trains none: its time is the scoring's); their training took 31.4 CPU "
        "hours, and 25 of 26 validated models meet the flattening rule" in box
    )
    # a cpu run's box says nothing of shipped models
    assert "shipped" not in readme_box.readme_bottom_line(newer, tmp_path)
