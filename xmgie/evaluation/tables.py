"""`xmgie table --spec experiments/tables/table1.yaml`: the paper's tables from result JSONs, as Markdown, CSV
and LaTeX.

A spec names datasets, methods, metric columns and where results live. Layout "rows" (Table 1) stacks one
block of method rows per dataset; layout "columns" (Table 2) puts the datasets side by side, each with its own
metric columns. In every dataset block the best value of each column is bold (direction from
HIGHER_IS_BETTER) — but only when every value compared was computed with the same backbone. Cells read:

    –          the metric does not apply to the dataset (per the spec)
    missing    no result file: nothing was run, nothing is filled in
    n/c        the result exists but this metric was not computed (e.g. no attribute classifier given)
    x†         computed with an uncalibrated (random-weights) backbone: not comparable to published numbers
    x ± s      mean and standard deviation over seeds (a result file with "metrics_std"); bold compares means
    ∞          a PSNR at its cap: every image was an exact copy there (e.g. outside the mask under PFB's 'out')

The footnote lists each metric's backbone(s) with sha256, the seeds, sample counts and DDIM steps.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xmgie.errors import UserError
from xmgie.metrics.functional import PSNR_EXACT
from xmgie.metrics.metrics import HIGHER_IS_BETTER

LABELS = {"is": "IS", "fid": "FID", "lpips": "LPIPS", "ssim": "SSIM", "psnr": "PSNR", "aa": "AA", "ips": "IPS",
          "psnr_gain": "PSNR gain", "psnr_outside_mask": "PSNR out", "psnr_inside_mask": "PSNR in",
          "lpips_outside_mask": "LPIPS out", "leakage": "Leakage", "seam": "Seam",
          "psnr_kept_in_mask": "PSNR kept", "psnr_missed_by_mask": "PSNR missed", "ips_kept": "IPS kept"}
DECIMALS = {"is": 2, "fid": 2, "lpips": 3, "ssim": 3, "psnr": 2, "aa": 3, "ips": 3, "psnr_gain": 2,
            "psnr_outside_mask": 2, "psnr_inside_mask": 2, "lpips_outside_mask": 4, "leakage": 4, "seam": 4,
            "psnr_kept_in_mask": 2, "psnr_missed_by_mask": 2, "ips_kept": 3}
NOT_APPLICABLE, MISSING, NOT_COMPUTED = "–", "missing", "n/c"


@dataclass
class DatasetSpec:
    name: str
    label: str
    columns: list[str]


@dataclass
class TableSpec:
    name: str
    caption: str
    layout: str                     # "rows" (Table 1) or "columns" (Table 2)
    columns: list[str]
    datasets: list[DatasetSpec]
    methods: list[tuple[str, str]]  # (name, label)
    results: str = "results/{dataset}/{method}.json"
    notes: list[str] = field(default_factory=list)


def read_spec(path: str | Path) -> dict[str, Any]:
    """A table spec's YAML as a dict; `extends: other.yaml` (beside it) starts from that spec's keys, which the
    file's own replace: a regime's table is its parent's methods and datasets with other results and settings."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"table spec not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    parent = raw.pop("extends", None)
    return {**read_spec(path.parent / parent), **raw} if parent else raw


def load_spec(path: str | Path) -> TableSpec:
    """Parse a table spec; an unknown metric or layout is a one-line error."""
    path = Path(path)
    raw = read_spec(path)
    columns = list(raw.get("columns", []))
    datasets = [DatasetSpec(d["name"], d.get("label", d["name"]), list(d.get("columns", columns)))
                for d in raw["datasets"]]
    methods = [(m["name"], m.get("label", m["name"])) if isinstance(m, dict) else (m, m) for m in raw["methods"]]
    spec = TableSpec(raw.get("name", path.stem), raw.get("caption", ""), raw.get("layout", "rows"), columns,
                     datasets, methods, raw.get("results", TableSpec.results), list(raw.get("notes", [])))
    unknown = {c for d in spec.datasets for c in d.columns} - set(HIGHER_IS_BETTER)
    if unknown or spec.layout not in ("rows", "columns"):
        raise UserError(f"{path}: unknown metric(s) {sorted(unknown)}" if unknown else
                        f"{path}: layout must be 'rows' or 'columns', got {spec.layout!r}")
    return spec


def read_results(spec: TableSpec, root: str | Path = ".") -> dict[tuple[str, str], dict[str, Any]]:
    """(dataset, method) -> result JSON, for the files that exist."""
    found = {}
    for d in spec.datasets:
        for method, _ in spec.methods:
            path = Path(root) / spec.results.format(dataset=d.name, method=method)
            if path.is_file():
                found[(d.name, method)] = json.loads(path.read_text())
    return found


@dataclass
class Cell:
    text: str
    value: float | None = None
    bold: bool = False


def _backbone_key(result: dict, metric: str) -> tuple:
    b = result.get("backbones", {}).get(metric)
    return (b["name"], b["calibrated"], b["sha256"]) if b else ("pixels",)


def dataset_block(spec: TableSpec, d: DatasetSpec, results: dict, columns: list[str]) -> list[list[Cell]]:
    """One row of cells per method for dataset `d` over `columns`, with the best value per column in bold."""
    rows = []
    for method, _ in spec.methods:
        result = results.get((d.name, method))
        row = []
        for metric in columns:
            if metric not in d.columns:
                row.append(Cell(NOT_APPLICABLE))
            elif result is None:
                row.append(Cell(MISSING))
            elif metric not in result["metrics"]:
                row.append(Cell(NOT_COMPUTED))
            else:
                v = float(result["metrics"][metric])
                dagger = "†" if metric in result.get("uncalibrated", []) else ""
                places = DECIMALS.get(metric, 3)
                std = result.get("metrics_std", {}).get(metric)  # several seeds: mean ± std
                spread = f" ± {float(std):.{places}f}" if std is not None else ""
                if metric.startswith("psnr") and v >= PSNR_EXACT - 1e-3:
                    row.append(Cell(f"∞{dagger}", v))  # every image, every seed an exact copy
                else:
                    row.append(Cell(f"{v:.{places}f}{spread}{dagger}", v))
        rows.append(row)
    for j, metric in enumerate(columns):
        have = [(i, rows[i][j].value) for i in range(len(rows)) if rows[i][j].value is not None]
        same_backbone = len({_backbone_key(results[(d.name, spec.methods[i][0])], metric) for i, _ in have}) == 1
        if len(have) > 1 and same_backbone:
            best = (max if HIGHER_IS_BETTER[metric] else min)(v for _, v in have)
            for i, v in have:
                rows[i][j].bold = v == best
    return rows


def header(metric: str) -> str:
    return f"{LABELS.get(metric, metric)} {'↑' if HIGHER_IS_BETTER[metric] else '↓'}"


def build_grid(spec: TableSpec, results: dict) -> tuple[list[str], list[list[Any]]]:
    """Header and body rows (first cells plain strings, metric cells Cell) in the spec's layout."""
    if spec.layout == "rows":
        head = ["Dataset", "Method"] + [header(c) for c in spec.columns]
        body = []
        for d in spec.datasets:
            block = dataset_block(spec, d, results, spec.columns)
            if not any((d.name, m) in results for m, _ in spec.methods):  # nothing run here: one line says so
                body.append([d.label, "every method", *block[0]])
                continue
            for (_, label), cells in zip(spec.methods, block):
                body.append([d.label, label, *cells])
        return head, body
    head = ["Method"] + [f"{d.label}: {header(c)}" for d in spec.datasets for c in d.columns]
    blocks = [dataset_block(spec, d, results, d.columns) for d in spec.datasets]
    body = [[label, *[c for block in blocks for c in block[i]]] for i, (_, label) in enumerate(spec.methods)]
    return head, body


def footnote(spec: TableSpec, results: dict) -> list[str]:
    """Backbones per metric, seeds, sample counts, steps, the cell legend."""
    used = list(results.values())
    lines = []
    metrics = sorted({c for d in spec.datasets for c in d.columns}, key=list(HIGHER_IS_BETTER).index)
    for metric in metrics:
        records = {json.dumps(r["backbones"][metric], sort_keys=True) for r in used if metric in r.get("backbones", {})}
        if not records:
            continue
        described = []
        for rec in sorted(records):
            b = json.loads(rec)
            described.append(f"UNCALIBRATED {b['name']} ({b['source']})" if not b["calibrated"] else
                             f"{b['name']} {b['source']}" + (f" sha256 {b['sha256']}" if b["sha256"] else ""))
        lines.append(f"{LABELS.get(metric, metric)}: " + "; ".join(described))
    for d in spec.datasets:
        runs = [(m, results[(d.name, m)]) for m, _ in spec.methods if (d.name, m) in results]
        if runs:
            info = sorted({f"{r['n_images']} images, seed {r['seed']}, "
                           f"{'one generator pass' if r.get('steps') is None else str(r['steps']) + ' steps'}, "
                           f"{r['split']} split, "
                           f"{r['protocol']} protocol" for _, r in runs})
            lines.append(f"{d.label}: " + " | ".join(info))
            notes = sorted({f"{topic}: {what}" for _, r in runs for topic, what in r.get("data_notes", {}).items()})
            lines += [f"{d.label}: {note}" for note in notes]  # what the data fell back on (e.g. the split)
            bases = sorted({f"{r['base']['sha256'][:12]} ({r['base']['global_step']} steps)"
                            for _, r in runs if r.get("base")})
            if bases:
                tuned = [label for m, label in spec.methods if results.get((d.name, m), {}).get("base")]
                lines.append(f"{d.label}: {', '.join(tuned)} fine-tuned from the trained base editor "
                             f"{' | '.join(bases)}")
            for m, label in spec.methods:  # edits not made under the dataset's own masks
                given = results.get((d.name, m), {}).get("masks", {"source": "dataset"})
                how = (f"the learned predictor {given.get('net')}" if given.get("net") else
                       f"relevance map at t = {given.get('timestep')}·T, {given.get('draws')} draw(s)")
                if given["source"] == "auto":
                    lines.append(f"{d.label}: {label} edited under predicted masks ({how}, τ {given['threshold']}; "
                                 f"IoU with the dataset's masks {given['iou']:.3f}); scored against the dataset's "
                                 "masks")
                elif given["source"] == "anywhere":
                    lines.append(f"{d.label}: {label} edited without a mask (anywhere); scored against the "
                                 f"dataset's masks")
    lines.append(f"{NOT_APPLICABLE} does not apply; {MISSING}: no result file; {NOT_COMPUTED}: not computed; "
                 "† uncalibrated backbone (random weights): not comparable to published numbers; "
                 "bold: best in the dataset's column when all its values share one backbone.")
    return lines + spec.notes


def _text(cell: Any, bold: str) -> str:
    if isinstance(cell, Cell):
        return bold.format(cell.text) if cell.bold else cell.text
    return str(cell)


def to_markdown(spec: TableSpec, results: dict) -> str:
    head, body = build_grid(spec, results)
    lines = [f"**{spec.caption}**", ""] if spec.caption else []
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_text(c, "**{}**") for c in row) + " |" for row in body]
    return "\n".join(lines + [""] + [f"- {n}" for n in footnote(spec, results)]) + "\n"


def to_csv(spec: TableSpec, results: dict) -> str:
    head, body = build_grid(spec, results)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(head)
    writer.writerows([[c.text if isinstance(c, Cell) else c for c in row] for row in body])
    return buf.getvalue()


def _latex_escape(s: str) -> str:
    return (s.replace("&", r"\&").replace("%", r"\%").replace("_", r"\_").replace("#", r"\#")
            .replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$").replace("†", r"$^\dagger$")
            .replace("–", "--"))


def to_latex(spec: TableSpec, results: dict) -> str:
    head, body = build_grid(spec, results)
    text_columns = 2 if spec.layout == "rows" else 1
    lines = [r"\begin{table}[t]", r"\centering",
             r"\begin{tabular}{" + "l" * text_columns + "c" * (len(head) - text_columns) + "}", r"\toprule",
             " & ".join(_latex_escape(h) for h in head) + r" \\", r"\midrule"]
    previous = None
    for row in body:
        if spec.layout == "rows" and previous is not None and row[0] != previous:
            lines.append(r"\midrule")
        previous = row[0]
        lines.append(" & ".join(_latex_escape(_text(c, r"\textbf{{{}}}")) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_latex_escape(spec.caption)}}}",
              rf"\label{{tab:{spec.name}}}", r"\end{table}", ""]
    lines += ["% " + _latex_escape(n) for n in footnote(spec, results)]
    return "\n".join(lines) + "\n"


def render(spec_path: str | Path | TableSpec, out: str | Path | None = None, root: str | Path = ".") -> dict[str, Path]:
    """Write <out>.md, <out>.csv and <out>.tex (default out: results/<spec name>, where `xmgie run` writes it too) and return their paths.
    `spec_path`: a spec file, or a TableSpec already loaded (and narrowed by the caller)."""
    spec = spec_path if isinstance(spec_path, TableSpec) else load_spec(spec_path)
    results = read_results(spec, root)
    out = Path(out) if out else Path(root) / "results" / spec.name
    out.parent.mkdir(parents=True, exist_ok=True)
    written = {}
    for ext, fn in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
        path = out.with_name(out.name + f".{ext}")
        path.write_text(fn(spec, results))
        written[ext] = path
    return written
