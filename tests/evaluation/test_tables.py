"""Tables from a small fixed set of result JSONs against golden files (Markdown, CSV, LaTeX)."""
import json
import os
from pathlib import Path

import pytest

from xmgie.cli import main
from xmgie.errors import UserError
from xmgie.evaluation.tables import load_spec, read_results, render, to_markdown

GOLDEN = Path(__file__).parent / "golden"
PRETRAINED = {"name": "inception", "calibrated": True, "sha256": "6726825d" + "0" * 56, "source": "w/inception.pth"}
RANDOM = {"name": "alexnet", "calibrated": False, "sha256": None, "source": "random init (seed 0)"}

SPEC = """name: small
caption: "Small table"
layout: {layout}
columns: [is, fid, lpips, psnr, aa]
datasets:
  - {{name: birds, label: Birds, columns: [is, fid, lpips, psnr]}}
  - {{name: faces, label: Faces}}
methods:
  - {{name: base, label: Baseline}}
  - {{name: ours, label: Ours}}
  - {{name: other, label: Other}}
"""


def result(metrics: dict, backbones: dict, n: int = 100) -> dict:
    return {"format": 1, "method": "m", "dataset": "d", "split": "test", "protocol": "targets", "metrics": metrics,
            "backbones": backbones, "uncalibrated": sorted(k for k, b in backbones.items() if not b["calibrated"]),
            "n_images": n, "seed": 0, "steps": 32}


def write_results(root: Path) -> None:
    files = {
        # birds: all pretrained Inception, LPIPS uncalibrated everywhere -> bold everywhere; "other" missing
        ("birds", "base"): result({"is": 3.9, "fid": 40.1234, "lpips": 0.2, "psnr": 24.0},
                                  {"is": PRETRAINED, "fid": PRETRAINED, "lpips": RANDOM}),
        ("birds", "ours"): result({"is": 4.28, "fid": 32.95, "lpips": 0.165, "psnr": 26.02},
                                  {"is": PRETRAINED, "fid": PRETRAINED, "lpips": RANDOM}),
        # faces: FID with different backbones (no bold); AA not computed for the baseline
        ("faces", "base"): result({"is": 3.6, "fid": 48.0, "lpips": 0.23, "psnr": 22.9},
                                  {"is": PRETRAINED, "fid": PRETRAINED, "lpips": RANDOM}, n=50),
        ("faces", "ours"): result({"is": 3.76, "fid": 45.28, "lpips": 0.219, "psnr": 23.14, "aa": 0.915},
                                  {"is": PRETRAINED, "fid": {**PRETRAINED, "calibrated": False, "sha256": None,
                                                             "source": "random init (seed 0)"}, "lpips": RANDOM},
                                  n=50),
        ("faces", "other"): result({"is": 3.7, "fid": 46.0, "lpips": 0.25, "psnr": 23.5, "aa": 0.9},
                                   {"is": PRETRAINED, "fid": PRETRAINED, "lpips": RANDOM}, n=50),
    }
    for (dataset, method), content in files.items():
        path = root / "results" / dataset / f"{method}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_tables_match_golden_files(layout, tmp_path):
    write_results(tmp_path)
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC.format(layout=layout))
    written = render(spec, tmp_path / "out" / "small", root=tmp_path)
    for ext, path in written.items():
        golden = GOLDEN / f"small_{layout}.{ext}"
        if os.environ.get("XMGIE_UPDATE_GOLDEN"):
            golden.write_text(path.read_text())
        assert path.read_text() == golden.read_text(), f"{path.name} differs from {golden}"


def test_missing_results_are_reported_not_filled_in(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC.format(layout="rows"))
    s = load_spec(spec)
    md = to_markdown(s, read_results(s, tmp_path))
    # a dataset where nothing was run is one row of "missing" (with "–" where a metric does not apply)
    assert "| Birds | every method | missing | missing | missing | missing | – |" in md
    assert "| Faces | every method | missing | missing | missing | missing | missing |" in md


def test_unknown_metric_in_a_spec_is_a_one_line_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.format(layout="rows").replace("aa]", "accuracy]"))
    with pytest.raises(UserError, match="unknown metric"):
        load_spec(spec)


def test_shipped_table_specs_parse():
    root = Path(__file__).resolve().parents[2] / "experiments" / "tables"
    specs = [load_spec(p) for p in sorted(root.glob("*.yaml"))]
    assert {s.name for s in specs} >= {"table1", "table2"}


def test_table_command_prints_markdown_and_writes_three_files(tmp_path, capsys):
    write_results(tmp_path)
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC.format(layout="rows"))
    main(["table", "--spec", str(spec), "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "**4.28**" in out
    assert sorted(p.name for p in (tmp_path / "results").glob("small.*")) == ["small.csv", "small.md", "small.tex"]


def test_several_seeds_render_as_mean_plus_minus_std_and_bold_compares_means(tmp_path):
    import statistics

    from xmgie.pipeline.aggregate import aggregate
    from xmgie.pipeline.stage import Stage

    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC.format(layout="rows"))
    stages = []
    for method, psnrs in (("base", [24.0, 25.0, 26.5]), ("ours", [26.0, 26.1, 25.9])):
        for seed, value in enumerate(psnrs):
            s = Stage("evaluate", "birds", method, seed, [], folder=tmp_path / "pipe" / f"{method}{seed}")
            s.folder.mkdir(parents=True)
            r = result({"psnr": value}, {})
            s.output.write_text(json.dumps({**r, "seed": seed}))
            (s.folder / "stage.json").write_text(json.dumps({"status": "done"}))
            stages.append(s)
    raw = {"results": "results/{dataset}/{method}.json"}
    aggregate(stages, raw, tmp_path)
    merged = json.loads((tmp_path / "results/birds/base.json").read_text())
    assert merged["metrics"]["psnr"] == pytest.approx(statistics.fmean([24.0, 25.0, 26.5]))
    assert merged["metrics_std"]["psnr"] == pytest.approx(statistics.stdev([24.0, 25.0, 26.5]))
    assert merged["seeds"] == [0, 1, 2] and len(merged["runs"]) == 3
    s = load_spec(spec)
    md = to_markdown(s, read_results(s, tmp_path))
    assert "| Birds | Baseline | n/c | n/c | n/c | 25.17 ± 1.26 | – |" in md
    assert "| Birds | Ours | n/c | n/c | n/c | **26.00 ± 0.10** | – |" in md
    assert "seed 0, 1, 2 (mean ± std)" in md


def test_the_footnote_says_which_rows_were_edited_under_predicted_or_no_masks(tmp_path):
    write_results(tmp_path)
    path = tmp_path / "results" / "birds" / "ours.json"
    record = json.loads(path.read_text())
    record["masks"] = {"source": "auto", "timestep": 0.8, "draws": 1, "threshold": 0.5, "smooth": 0.0, "iou": 0.4213}
    path.write_text(json.dumps(record))
    faces = tmp_path / "results" / "faces" / "base.json"
    faces.write_text(json.dumps({**json.loads(faces.read_text()), "masks": {"source": "anywhere"}}))
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC.format(layout="rows"))
    s = load_spec(spec)
    md = to_markdown(s, read_results(s, tmp_path))
    assert ("Birds: Ours edited under predicted masks (relevance map at t = 0.8·T, 1 draw(s), τ 0.5; IoU with the "
            "dataset's masks 0.421)") in md
    assert "Faces: Baseline edited without a mask (anywhere)" in md
    assert "Birds: Baseline edited" not in md


def test_a_psnr_at_its_cap_reads_infinity_and_is_the_best(tmp_path):
    """An exact copy outside the mask has no finite PSNR: the cell says ∞, not the clamp's 126 dB."""
    import torch

    from xmgie.metrics.functional import PSNR_EXACT, psnr_per_image

    x = torch.rand(2, 3, 8, 8) * 2 - 1
    capped = psnr_per_image(x, x.clone(), torch.ones(2, 1, 8, 8))
    torch.testing.assert_close(capped, torch.full((2,), PSNR_EXACT))
    spec_file = tmp_path / "small.yaml"
    spec_file.write_text(SPEC.format(layout="rows"))
    for method, value in (("base", 36.11), ("ours", float(capped.mean()))):
        path = tmp_path / "results" / "birds" / f"{method}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result({"psnr": value}, {})))
    s = load_spec(spec_file)
    md = to_markdown(s, read_results(s, tmp_path))
    assert "| Birds | Baseline | n/c | n/c | n/c | 36.11 | – |" in md
    assert "| Birds | Ours | n/c | n/c | n/c | **∞** | – |" in md
