"""What a reproduction writes: the :class:`ReproduceResult`, CSV and markdown tables, the JSON
summary, and the figures (per-generation curves, maximum-intensity projections, 3D views).
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeptree.config import CLDICE, ReproduceSettings, settings_record
from deeptree.evaluation.convergence import (
    convergence_text,
    model_logs,
    never_learned,
    plot_convergence,
)
from deeptree.evaluation.curves import curve_rows, plot_training_curves
from deeptree.evaluation.paper import (
    NNUNET_STAR,
    PAPER_SOURCE,
    REGION_GROWING,
    STAGE2_SUFFIX,
    TABLE1_ROWS,
    TABLE_METRICS,
    Split,
    effect_statements,
    method_label,
    paper_table1_rows,
)
from deeptree.io import atomic_write
from deeptree.report import jsonable
from deeptree.stage1.predict import OUTPUT_RULES
from deeptree.stage2.figures import repair_labels
from deeptree.stage2.task import STAGE2_OPTIONS
from deeptree.threads import cpu_description
from deeptree.viz import napari_layers
from deeptree.viz.colors import COMPARISON_COLORS, REPAIR_COLORS
from deeptree.viz.planes import comparison_labels, comparison_mip

#: What a smoke run says where a full run gives its verdicts: its models trained for a few
#: iterations, so whether a component helps cannot be read from them.
SMOKE_NO_VERDICT = "smoke run: no verdict, the models are untrained (a pipeline check)."


def plot_generation_curves(
    curves: Sequence[dict], methods: Sequence[str] | None = None, title: str | None = None
):
    """TLD and BD per GT generation, one line per method (matplotlib Figure, two panels).

    Each method has a colour and a marker of its own (a qualitative palette, no two alike up to
    20 methods); lines with stage 2 are dashed. The methods are dodged sideways by a few
    hundredths of a generation so that methods with equal values (all at 0, say) stay
    visible; the legend stands to the right of the panels, never over a curve.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    methods = (
        list(methods) if methods is not None else list(dict.fromkeys(c["method"] for c in curves))
    )
    methods = [m for m in methods if any(c["method"] == m for c in curves)]
    palette = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    markers = "osD^vP<X>hp*"
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for i, method in enumerate(methods):
        mine = [c for c in curves if c["method"] == method]
        dodge = 0.06 * (i - (len(methods) - 1) / 2)
        gens = [c["generation"] + dodge for c in mine]
        style = "--" if method.endswith(STAGE2_SUFFIX) else "-"
        for ax, key in zip(axes, ("TLD", "BD"), strict=True):
            ax.plot(
                gens,
                [100 * c[key] for c in mine],
                style,
                color=palette(i % palette.N),
                marker=markers[i % len(markers)],
                ms=5,
                label=method_label(method),
            )
    for ax, key in zip(
        axes,
        ("tree length detected per generation", "branches detected per generation"),
        strict=True,
    ):
        ax.set(xlabel="generation (0 = trachea)", ylabel="%", title=key, ylim=(-2, 102))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if methods:
        axes[1].legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_csv(path: str | os.PathLike, rows: Sequence[dict]) -> Path:
    """Write dict rows as CSV (header = keys of the first row), atomically."""
    buffer = _io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return _write_text(Path(path), buffer.getvalue())


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A GitHub markdown table of dict rows (booleans as ✓ / —)."""
    if not rows:
        return "(no rows)\n"
    columns = list(columns) if columns is not None else list(rows[0])

    def cell(v):
        if isinstance(v, bool):
            return "✓" if v else "—"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def folded(summary: str, markdown: str) -> str:
    """``markdown`` folded away under a one-line ``summary`` (an HTML ``<details>`` block).
    ``markdown="1"`` lets the book's MkDocs (``md_in_html``) render the Markdown inside, and
    the blank lines let Jupyter's renderer do the same."""
    return f'<details markdown="1">\n<summary>{summary}</summary>\n\n{markdown.strip()}\n\n</details>\n'


def run_provenance() -> dict[str, str]:
    """Where and when a run's tables were made: ``date`` (UTC), ``commit`` (``git describe``
    of the checkout the package runs from, ``+dirty`` with uncommitted changes; "unknown"
    outside a git checkout), ``machine`` (CPU model and vector extension, cores, GPU if any)."""
    import datetime
    import platform
    import subprocess

    import torch

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty=+dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip() or "unknown"  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    cpu = cpu_description()  # the model and its vector extension: AVX2 and AVX-512 runs differ
    if cpu == "unknown CPU":
        cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        machine += f", {torch.cuda.get_device_name(0)}"
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {"date": date, "commit": commit, "machine": machine}


def reused_models(trained: dict) -> list[str]:
    """The models an invocation loaded instead of training, sorted (``trained``: model name
    -> True when this invocation trained it, ``ReproduceResult.trained``)."""
    return sorted(k for k, v in trained.items() if not v)


def reused_text(trained: dict) -> str:
    """The sentence saying how many models this invocation loaded instead of training (empty
    when it trained them all), so that a reader never takes its time for a whole run's.

    Parameters
    ----------
    trained : dict
        Model name (``"seed0/amc"``) -> True when this invocation trained it, False when it
        loaded a finished checkpoint of an earlier invocation (``ReproduceResult.trained``).
    """
    reused = reused_models(trained)
    if not reused:
        return ""
    return (
        f"Reused: {len(reused)} of {len(trained)} models were trained by an earlier invocation "
        "of this run and loaded here (same settings, checked), so this invocation's time leaves "
        f"their training out: {', '.join(f'`{k}`' for k in reused)}.\n"
    )


def shipped_text(shipped: str, trained: dict) -> str:
    """The sentence saying that a run's models were loaded from a results folder
    (``reproduce(..., models=...)``), so that its time is the scoring's alone."""
    return (
        f"Models: the {len(trained)} models shipped in `{shipped}/models` (every file checked "
        "against the SHA-256 of its manifest), loaded, none trained here: this invocation's "
        "time is that of the scoring alone; their training is in the convergence section.\n"
    )


def _seeds_text(result: ReproduceResult) -> str:
    s = result.settings
    seeds = ", ".join(str(x) for x in s.seeds)
    extra = ", ".join(str(x) for x in s.seeds[: s.extra_seeds])
    return (
        f"Seeds: training seeds {seeds} (initial weights and patch stream; every stage-1 "
        f"variant and the paper's stage 2 are trained once per seed); clDice and the stage-2 "
        f"options with seed(s) {extra} only. Phantoms: training and validation from cohort "
        f"seed {s.seed}, test from seed {s.test_seed}; the output rule (below) is chosen "
        "and the option `best`'s checkpoint selected on the validation phantoms, nothing on "
        "the test phantoms (the inference overlap is nnU-Net's 0.5, fixed in advance).\n"
    )


def data_text(label: str) -> str:
    """A run's data label as the tables print it: a data folder by its name only (no path of
    the machine), a synthetic cohort's description as it is."""
    if os.path.isabs(label):
        return f"the ATM'22-layout folder `{Path(label).name}`"
    return label


def rule_text(result: ReproduceResult, rule: str) -> str:
    """The sentence on the output rule of one set of tables: the rule chosen on validation
    with the validation figures (or why none was chosen), and where the other rule's tables
    are."""
    choice = result.rule or {"rule": OUTPUT_RULES[0], "text": "argmax"}
    others = [r for r in result.by_rule if r != rule] if result.by_rule else []
    if rule == choice["rule"]:
        text = f"**Output rule: {choice['text']}.** Every stage-1 model (and its stage 2) is "
        text += "scored under both rules; "
        text += (
            "the other rule's tables: " + ", ".join(f"`tables_{r}.md`" for r in others) + ".\n"
            if others
            else "only this rule was scored.\n"
        )
        return text
    return (
        f"**Output rule: {rule}, the rule NOT chosen**: the main tables (`tables.md`) use "
        f"{choice['text']}. These tables are printed beside them for comparison.\n"
    )


def _failed_text(result: ReproduceResult) -> str:
    return (
        "Columns `seeds`: models in the mean; `failed`: models left out of it, those with an "
        "empty prediction on a test case (precision undefined, never averaged in as 0); "
        "`... per seed`: each training seed's mean over the test cases, in seed order.\n"
    )


def gt_precision_text(gt_precision: Sequence[dict]) -> str:
    """The sentence on the precision of the test cases' ground truth dilated by one voxel."""
    if not gt_precision:
        return ""
    values = np.array([100 * r["precision"] for r in gt_precision])
    return (
        "**Honest precision.** The ground truth of the test cases, dilated by one voxel "
        f"(6-connected) and scored as a prediction, has a precision of {values.mean():.1f}% "
        f"(range {values.min():.1f}-{values.max():.1f} over {len(values)} cases): a "
        "prediction with every airway voxel right but one voxel too thick everywhere would "
        "score this precision, from the voxel size alone.\n"
    )


def tables_markdown(
    result: ReproduceResult, provenance: dict | None = None, rule: str | None = None
) -> str:
    """The report of a run under one output rule (default: the one chosen on validation): a
    header written by the generator (date, commit, machine), the output rule and how it was
    chosen, both tables with intervals, per-seed values and failed models, the paper's
    numbers beside ours, the stage-2 options beside their seed-matched baseline, the honest
    precision, the component effects with their verdicts (none in a smoke run:
    :data:`SMOKE_NO_VERDICT`), the seeds, the split and the
    training lengths (markdown). Paths are relative to the run folder."""
    s = result.settings
    p = provenance if provenance is not None else run_provenance()
    chosen = (result.rule or {}).get("rule", OUTPUT_RULES[0])
    rule = rule or chosen
    tables = (
        result.by_rule[rule]
        if result.by_rule
        else {"table1": result.table1, "table2": result.table2, "effects": result.effects,
              "options": result.option_table}
    )  # fmt: skip
    t2_cols = [
        "method", "AMC", "GUL", "stage2", "seeds", "failed", "cases", "BD", "TLD",
        "TLD per seed", "precision", "precision per seed", "paper BD", "paper TLD",
        "paper precision",
    ]  # fmt: skip
    opt_cols = [
        "method", "stage-2 option", "seeds", "failed", "cases", "BD", "TLD", "TLD per seed",
        "precision", "precision per seed",
    ]  # fmt: skip
    t1_cols = [
        "name", "seeds", "failed", "cases", "BD", "TLD", "TLD per seed", "precision",
        "precision per seed", "paper method", "paper BD", "paper TLD", "paper precision",
    ]  # fmt: skip
    options = "; ".join(f"`{o}`: {STAGE2_OPTIONS[o]}" for o in s.stage2_options)
    title = f"# DeepTree reproduction ({s.profile} profile)"
    if rule != chosen:
        title += f", output rule {rule} (not the chosen one)"
    parts = [
        title + "\n",
        f"Written by `deeptree.evaluation.outputs.write_outputs` on {p['date']}, commit "
        f"`{p['commit']}`, machine: {p['machine']}. Every figure below comes from this run's "
        "results files.\n",
        f"Data: {data_text(result.data_label)}. Split: {len(result.split.train)} training, "
        f"{len(result.split.val)} validation, {len(result.split.test)} test cases. Stage 1: "
        f"{s.stage1_train.iterations} iterations of batch {s.stage1_train.batch_size}, patch "
        f"{tuple(s.stage1_net.patch_size)}, filters {tuple(s.stage1_net.filters)}; stage 2: "
        f"{s.stage2_train.iterations} iterations of batch {s.stage2_train.batch_size}, patch "
        f"{tuple(s.stage2_net.patch_size)}. Metrics: paper protocol (trachea and main bronchi "
        "excluded), percent: the mean over training seeds of the case means, with its 95% "
        "confidence interval in brackets (two-level bootstrap over seeds and cases).\n",
        rule_text(result, rule),
        *filter(None, [shipped_text(result.shipped, result.trained) if result.shipped
                       else reused_text(result.trained)]),  # fmt: skip
        _seeds_text(result),
        f"Columns `paper ...`: **{PAPER_SOURCE}** as published (mean ± std), not ours. "
        + _failed_text(result),
        "## Ablation (paper Table 2)\n",
        markdown_table(tables["table2"], t2_cols),
    ]
    if tables.get("options"):
        seeds = tables["options"][0]["seeds"] + tables["options"][0]["failed"]
        parts += [
            "## Stage-2 options (not in the paper), each beside the paper's stage 2 of the "
            "same training seeds\n",
            f"The options were trained for {seeds} training seed(s) only: the first row is the "
            "paper's stage 2 after amc+gul on exactly those seeds (the same seed's paper "
            "model), the only row they can be compared with; the ablation's means over more "
            "seeds are not.\n",
            markdown_table(tables["options"], opt_cols),
            f"Stage-2 options (the paper's stage 2 is the default): {options}.\n",
        ]
    parts += [
        gt_precision_text(result.gt_precision),
        "## Comparison (paper Table 1, methods built here)\n",
        markdown_table(tables["table1"], t1_cols),
        f"Our nnUNet* is set beside the paper's own nnUNet*, its adapted nnU-Net ({NNUNET_STAR} "
        "of the paper); Table 1's `nnUNet [3]` is the default nnU-Net, another network.\n",
        f"The paper's full Table 1 ({PAPER_SOURCE}):\n",
        markdown_table(paper_table1_rows()),
        "## Does each component help? (paired differences on the synthetic test cases)\n",
    ]
    if s.profile == "smoke":
        parts.append(f"{SMOKE_NO_VERDICT} The differences are in `component_effects.csv`.\n")
    else:
        parts += [
            'Verdicts are decided on the interval as printed (0.1 point): "improves" when its '
            'lower bound is above +0.0, "hurts" when its upper bound is below -0.0. The '
            "stage-2 options are paired with the paper's stage 2 of the same seed.\n",
            "\n".join(
                f"* {line}"
                for line in effect_statements(
                    tables["effects"], never_learned(result.convergence or [])
                )
            )
            + "\n",
        ]
    if result.convergence and s.validate:
        parts += [
            "## Training to convergence\n",
            convergence_text(result.convergence),
            markdown_table(result.convergence),
            "Each model's validation curve: `figures/convergence.png`.\n",
        ]
    if result.flags:
        parts += ["## Flagged models\n", "\n".join(f"* {f}" for f in result.flags) + "\n"]
    return "\n".join(parts)


@dataclass
class ReproduceResult:
    """Everything :func:`~deeptree.evaluation.reproduce.reproduce` produced.

    Attributes
    ----------
    settings : ReproduceSettings
    data_label : str
        "synthetic cohort (...)" or the data folder.
    split : Split
    rows : list of dict
        Per case, training seed and method (:func:`~deeptree.evaluation.reproduce.evaluate_case`
        plus ``seed``; None for the region-growing baseline).
    generation_rows : list of dict
        Of the first training seed.
    summary : dict
        :func:`~deeptree.evaluation.reproduce.summarize_methods`.
    table1, table2 : list of dict
        :func:`~deeptree.evaluation.paper.table1_rows`, :func:`~deeptree.evaluation.paper.table2_rows`.
    effects : list of dict
        :func:`~deeptree.evaluation.paper.component_effects`.
    curves : list of dict
        :func:`~deeptree.evaluation.paper.generation_curves`.
    figure_case : dict
        First test case, first seed: ``id``, ``ct``, ``gt``, ``spacing``, ``masks`` (method ->
        mask), ``repair`` (SegmentationResult of amc+gul + stage 2 or None).
    checkpoints : dict
        The first training seed's models: name -> checkpoint path.
    trained : dict
        ``seed<s>/<name>`` -> True if trained in this call, False if reused.
    seconds : dict
        Wall time per phase (``data``, ``train seed<s> <name>``, ``evaluate``, ``total``).
    all_checkpoints : dict
        ``seed<s>/<name>`` -> checkpoint path, every model.
    gt_precision : list of dict
        ``case``, ``precision`` of the ground truth dilated by one voxel.
    flags : list of str
        Models that output nothing on the test cases or are flagged on validation
        (``reproduce.weak_model_flags``), paths relative to the run folder.
    estimate : dict
        ``reproduce.estimate_seconds`` of the settings (seconds per phase).
    paths : dict
        Written files (tables, figures).
    rule : dict
        The output rule of the tables (``deeptree.evaluation.scoring.choose_output_rule``).
    by_rule : dict
        Output rule -> its tables (``reproduce.rule_tables``: ``summary``, ``table1``,
        ``table2``, ``options``, ``effects``); ``summary``, ``table1``, ``table2`` and
        ``effects`` above are those of the chosen rule.
    option_table : list of dict
        The stage-2 options beside the paper's stage 2 of the same seeds (chosen rule,
        ``deeptree.evaluation.paper.option_rows``).
    logs : dict
        ``seed<s>/<name>`` -> the ``log.jsonl`` of every stage-1 model (its training curves:
        ``deeptree.evaluation.curves``).
    convergence : list of dict
        Every trained model's flattening check and training time
        (``deeptree.evaluation.convergence.convergence_rows``).
    shipped : str
        The name of the results folder the models were loaded from (``reproduce(...,
        models=...)``); empty when they were trained or reused in the run folder.
    """

    settings: ReproduceSettings
    data_label: str
    split: Split
    rows: list
    generation_rows: list
    summary: dict
    table1: list
    table2: list
    effects: list
    curves: list
    figure_case: dict
    checkpoints: dict
    trained: dict
    seconds: dict
    all_checkpoints: dict = field(default_factory=dict)
    gt_precision: list = field(default_factory=list)
    flags: list = field(default_factory=list)
    estimate: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)
    rule: dict = field(default_factory=dict)
    by_rule: dict = field(default_factory=dict)
    option_table: list = field(default_factory=list)
    logs: dict = field(default_factory=dict)
    convergence: list = field(default_factory=list)
    shipped: str = ""

    def results(self) -> dict:
        """Key figures for ``deeptree.report.save_results`` (flat, JSON-friendly)."""
        s = self.settings
        out = {
            "profile": s.profile,
            "data": data_text(self.data_label),
            "split": f"{len(self.split.train)}/{len(self.split.val)}/{len(self.split.test)}",
            "training seeds": list(s.seeds),
            "test seed": s.test_seed,
            "stage1_iterations": s.stage1_train.iterations,
            "stage2_iterations": s.stage2_train.iterations,
            "models_reused": reused_models(self.trained),
            "models_shipped": self.shipped,
            "output rule": self.rule.get("rule", OUTPUT_RULES[0]),
            "output rule validation": dict(self.rule.get("validation", {})),
            # what rebuilds the run's settings and its rule (deeptree.evaluation.shipped)
            "settings": settings_record(s),
            "output rule choice": jsonable(self.rule),
        }
        labelled = [(r, method_label(r["method"])) for r in self.table2]
        labelled += [
            (r, f"{method_label(r['method'])} ({r['seeds'] + r['failed']} seed(s), options table)")
            for r in self.option_table
        ]
        for row, label in labelled:
            for key in TABLE_METRICS:
                out[f"T2 {label} {key}"] = row[key]
            out[f"T2 {label} failed"] = row["failed"]
        for row in self.table1:
            if row["method"] in (CLDICE, REGION_GROWING):
                for key in TABLE_METRICS:
                    out[f"T1 {method_label(row['method'])} {key}"] = row[key]
        smoke = s.profile == "smoke"  # untrained models: the differences without a verdict
        for e in self.effects:
            out[f"{e['component']} {e['without']}->{e['with']}"] = {
                key: f"{e[f'd{key}']:+.1f} [{e[f'd{key} low']:+.1f}, {e[f'd{key} high']:+.1f}]"
                + ("" if smoke else f" {e[f'{key} verdict']}")
                for key in TABLE_METRICS
            }
        if self.gt_precision:
            out["dilated GT precision (mean, %)"] = round(
                100 * float(np.mean([r["precision"] for r in self.gt_precision])), 1
            )
        out["flags"] = list(self.flags)
        out["estimate_s"] = dict(self.estimate)
        out["seconds"] = {k: round(v, 1) for k, v in self.seconds.items()}
        out["tables"] = "tables/tables.md"  # relative to the run folder
        return out


def write_outputs(result: ReproduceResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the tables (CSV + markdown), per-case and per-generation CSVs, the training
    curves of every stage-1 model (``tables/training_curves.csv`` and
    ``figures/training_curves.png``, :mod:`deeptree.evaluation.curves`; a damaged log is
    left out with a warning), the curve and MIP figures and ``results.json`` under
    ``out_dir`` (every file atomically).

    Returns
    -------
    dict name -> Path
    """
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    paths = {
        "table1_csv": write_csv(out / "tables" / "table1_comparison.csv", result.table1),
        "table2_csv": write_csv(out / "tables" / "table2_ablation.csv", result.table2),
        "paper_table1_csv": write_csv(out / "tables" / "paper_table1.csv", paper_table1_rows()),
        "effects_csv": write_csv(out / "tables" / "component_effects.csv", result.effects),
        "per_case_csv": write_csv(out / "tables" / "per_case.csv", result.rows),
        "gt_precision_csv": write_csv(
            out / "tables" / "dilated_gt_precision.csv", result.gt_precision
        ),
        "generations_csv": write_csv(out / "tables" / "per_generation.csv", result.curves),
    }
    if result.option_table:
        paths["options_csv"] = write_csv(out / "tables" / "stage2_options.csv", result.option_table)
    provenance = run_provenance()
    chosen = result.rule.get("rule", OUTPUT_RULES[0])
    paths["tables_md"] = _write_text(
        out / "tables" / "tables.md", tables_markdown(result, provenance)
    )
    for rule, tables in result.by_rule.items():  # the other rule's tables, beside
        if rule == chosen:
            continue
        paths[f"tables_{rule}_md"] = _write_text(
            out / "tables" / f"tables_{rule}.md", tables_markdown(result, provenance, rule)
        )
        for name in ("table1", "table2", "effects", "options"):
            stem = {"effects": "component_effects", "table1": "table1_comparison",
                    "table2": "table2_ablation", "options": "stage2_options"}[name]  # fmt: skip
            if tables[name]:
                paths[f"{name}_{rule}_csv"] = write_csv(
                    out / "tables" / f"{stem}_{rule}.csv", tables[name]
                )
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    fig = plot_generation_curves(
        result.curves, title=f"per-generation detection, {len(result.split.test)} test cases"
    )
    paths["curves_png"] = atomic_write(
        figures / "generation_curves.png", lambda tmp: fig.savefig(tmp, dpi=100, format="png")
    )
    plt.close(fig)
    # every stage-1 model's loss, airway probability and validation figures (issue 30)
    training = curve_rows(result.logs, skip_damaged=True)
    paths["training_curves_csv"] = write_csv(out / "tables" / "training_curves.csv", training)
    fig = plot_training_curves(training, title="training curves", offscreen=True)
    paths["training_curves_png"] = atomic_write(
        figures / "training_curves.png", lambda tmp: fig.savefig(tmp, dpi=100, format="png")
    )
    fc = result.figure_case
    shown = [m for m, _, _ in TABLE1_ROWS if m in fc["masks"]]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.6), squeeze=False)
    for ax, method in zip(axes[0], shown, strict=True):
        comparison_mip(
            fc["masks"][method], fc["gt"], fc["spacing"], ax=ax, title=method_label(method)
        )
        if ax is not axes[0][-1] and ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.suptitle(
        f"{fc['id']}: true positive red, false negative blue, false positive green (coronal MIP)"
    )
    fig.tight_layout()
    paths["fig3_mip_png"] = atomic_write(
        figures / "fig3_mip.png", lambda tmp: fig.savefig(tmp, dpi=100, format="png")
    )
    plt.close(fig)
    if result.convergence:  # every model's validation curve and its flattening check
        paths["convergence_csv"] = write_csv(out / "tables" / "convergence.csv", result.convergence)
        fig = plot_convergence(result.convergence, model_logs(result.all_checkpoints),
                               title="validation curves, last quarter shaded")  # fmt: skip
        paths["convergence_png"] = atomic_write(
            figures / "convergence.png", lambda tmp: fig.savefig(tmp, dpi=90, format="png")
        )
    result.paths.update(paths)
    text = json.dumps(jsonable(result.results()), indent=2)
    paths["results_json"] = _write_text(out / "results.json", text + "\n")
    result.paths.update(paths)
    return paths


def percent_rows(rows: Sequence[dict], keys: Sequence[str] = (*TABLE_METRICS, "DSC")) -> list[dict]:
    """Copies of ``rows`` with the fraction columns ``keys`` as percent strings (``"87.5"``;
    ``"—"`` for None), for display."""
    return [
        {k: ("—" if v is None else f"{100 * v:.1f}") if k in keys else v for k, v in r.items()}
        for r in rows
    ]


def render_figures(
    result: ReproduceResult,
    out_dir: str | os.PathLike,
    methods: Sequence[str] | None = None,
    size=(500, 400),
) -> dict[str, np.ndarray]:
    """napari screenshots (needs a display, e.g. ``xvfb-run``): the paper's Fig. 3 comparison
    (true positive red, false negative blue, false positive green) of each Table-1 method on
    the first test case, and the stage-1 breakages of AMC + GUL before and after stage 2
    (``deeptree.stage2.figures.repair_labels`` colours). Written as PNG under ``out_dir/figures``.

    Parameters
    ----------
    result : ReproduceResult
    out_dir : path-like
    methods : sequence of str, optional
        Method ids to render (default: the Table-1 methods).
    size : (height, width)

    Returns
    -------
    dict name -> RGBA picture (uint8 (H, W, 4)); names ``fig3 <method>``, ``repair before``,
    ``repair after``.
    """

    fc = result.figure_case
    figures = Path(out_dir) / "figures"
    methods = [m for m, _, _ in TABLE1_ROWS] if methods is None else list(methods)
    pictures = {}
    for method in [m for m in methods if m in fc["masks"]]:
        layer = napari_layers.LabelLayer(
            method, comparison_labels(fc["masks"][method], fc["gt"]), COMPARISON_COLORS
        )
        pictures[f"fig3 {method}"] = napari_layers.render_3d([layer], fc["spacing"], size=size)
        napari_layers.save_png(
            pictures[f"fig3 {method}"], figures / f"fig3_{method.replace('+', '_')}.png"
        )
    if fc.get("repair") is not None:
        before, after = repair_labels(fc["repair"])
        for name, labels in (("repair before", before), ("repair after", after)):
            layer = napari_layers.LabelLayer(name, labels, REPAIR_COLORS)
            pictures[name] = napari_layers.render_3d([layer], fc["spacing"], size=size)
            napari_layers.save_png(pictures[name], figures / f"{name.replace(' ', '_')}.png")
    return pictures
