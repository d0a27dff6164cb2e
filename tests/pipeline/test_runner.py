"""`xmgie run` / `make ablation` / `make table1` at the smoke budget: tables from measured results only, stages
kept when done, resumed when interrupted, isolated when failing."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from xmgie.cli import main
from xmgie.errors import UserError
from xmgie.pipeline import run_table
from xmgie.pipeline.budgets import load_budget
from xmgie.pipeline.plan import plan

MAKE = ["make", "-s", "-C", str(REPO), "STAMP=", f"XMGIE={sys.executable} -m xmgie.cli", "BUDGET=smoke"]


def _make(target: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MAKE, target, *extra, f"ARGS=--work {tmp}/pipe --results {tmp}"], capture_output=True,
                          text=True, timeout=600)


def _stage_records(work: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in work.rglob("stage.json")}


@pytest.fixture(scope="module")
def table1_run(module_tmp) -> Path:
    """An uninterrupted `make table1 BUDGET=smoke`: shapes is run, the six datasets on disk are not found."""
    tmp = module_tmp
    proc = _make("table1", tmp)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return tmp


def test_make_table1_runs_shapes_and_names_the_datasets_it_did_not_find(table1_run):
    md = (table1_run / "results" / "table1.md").read_text()
    rows = {line.split("|")[2].strip(): line for line in md.splitlines() if line.startswith("| shapes")}
    assert set(rows) == {"SISGAN", "TAGAN", "ManiGAN", "HiFill", "GLIDE", "PFB-Diff", "MGIE", "MGIE + latent blending",
                         "MGIE + latent blending + GB", "xMGIE"}
    assert all("missing" not in row for row in rows.values())  # every row measured, baselines included
    assert "HiFill reads no text" in md and "one generator pass" in md
    for d in ("cub", "flowers", "coco", "celebahq", "cars", "deepfashion"):
        assert f"- {d}: not run: data not found at data/{d}" in md
    assert (table1_run / "results" / "table1.png").stat().st_size > 1000
    record = json.loads((table1_run / "results" / "shapes" / "xmgie.json").read_text())
    assert record["seeds"] == [0] and Path(record["runs"][0]["result"]).is_file()


def test_make_ablation_smoke_fills_table2_for_shapes(tmp_path):
    proc = _make("ablation", tmp_path, "DATASETS=shapes")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    md = (tmp_path / "results" / "table2.md").read_text()
    for label in ("MGIE (no module)", "MGIE + latent blending (no training)", "xMGIE (full)", "w/o PFB", "w/o CAM", "w/o IE", "w/o GB"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
        assert "missing" not in row and re.search(r"\d+\.\d+", row)
    assert "CUB" not in md and "Leakage" in md and "Seam" in md  # only the datasets asked for; the new metrics
    assert len(list((tmp_path / "pipe" / "shapes").glob("generator-*"))) == 6 + 1  # the methods and one base
    result = json.loads((tmp_path / "results" / "shapes" / "ablation" / "full.json").read_text())
    base_ckpt = next((tmp_path / "pipe" / "shapes").glob("generator-base-*")) / "run/checkpoints/last.ckpt"
    base = json.loads(Path(result["runs"][0]["result"]).read_text())["base"]
    assert base["path"] == str(base_ckpt) and len(base["sha256"]) == 64


def test_an_interrupted_run_resumes_without_repeating_finished_stages(table1_run, tmp_path):
    import yaml

    # two of Table 1's methods (a GAN baseline, and MGIE with the expander stage it needs) on shapes
    spec = yaml.safe_load((REPO / "experiments/tables/table1.yaml").read_text())
    spec.update(datasets=spec["datasets"][:1], methods=[m for m in spec["methods"] if m["name"] in ("sisgan", "mgie")])
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    work = tmp_path / "pipe"
    for done in (table1_run / "pipe" / "shapes").glob("[iae][dtx]*-*"):  # identity, attributes, expander: same keys
        shutil.copytree(done, work / "shapes" / done.name)
    cmd = [sys.executable, "-m", "xmgie.cli", "run", "--spec", str(tmp_path / "spec.yaml"), "--budget", "smoke",
           "--work", str(work), "--results", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    killed_in = None
    deadline = time.time() + 300
    while time.time() < deadline and killed_in is None:
        for name, rec in _stage_records(work).items():
            if name.startswith("evaluate-") and rec.get("status") == "running":
                os.killpg(proc.pid, signal.SIGKILL)  # the runner and its stage, mid-evaluation
                killed_in = name
                break
        time.sleep(0.2)
    proc.wait(timeout=60)
    assert killed_in, "no evaluation stage was seen running"
    before = {k: v for k, v in _stage_records(work).items() if v["status"] == "done"}
    assert before and killed_in not in before
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=600)
    after = _stage_records(work)
    for name, rec in before.items():  # finished stages were kept, not run again
        assert after[name] == rec
    assert after[killed_in]["status"] == "done" and after[killed_in]["attempts"] == 2
    for method in ("sisgan", "mgie"):  # the same stages (same keys) as the uninterrupted run: the same numbers
        resumed = json.loads((tmp_path / "results" / "shapes" / f"{method}.json").read_text())
        whole = json.loads((table1_run / "results" / "shapes" / f"{method}.json").read_text())
        assert resumed["metrics"] == whole["metrics"]


def test_the_submitit_local_executor_gives_the_same_results_and_resumes_after_a_kill(table1_run, tmp_path):
    """The stages as submitit jobs (real subprocesses, the code a SLURM job runs): killed mid-evaluation, run
    again, it keeps what finished and gives the numbers of the default executor's run on the same stages."""
    import yaml

    spec = yaml.safe_load((REPO / "experiments/tables/table1.yaml").read_text())
    spec.update(datasets=spec["datasets"][:1], methods=[m for m in spec["methods"] if m["name"] == "hifill"])
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    work = tmp_path / "pipe"
    for done in (table1_run / "pipe" / "shapes").glob("[ia][dt]*-*"):  # identity, attributes: the same keys
        shutil.copytree(done, work / "shapes" / done.name)
    cmd = [sys.executable, "-m", "xmgie.cli", "run", "--spec", str(tmp_path / "spec.yaml"), "--budget", "smoke",
           "--work", str(work), "--results", str(tmp_path), "--executor", "submitit-local"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        records = _stage_records(work)
        if any(n.startswith("evaluate-") and r.get("status") == "running" for n, r in records.items()):
            os.killpg(proc.pid, signal.SIGKILL)  # the runner, the job processes and the stage
            break
        time.sleep(0.2)
    proc.wait(timeout=60)
    killed = {n: r for n, r in _stage_records(work).items() if n.startswith("evaluate-")}
    assert [r["status"] for r in killed.values()] == ["running"], "no evaluation stage was seen running"
    before = {n: r for n, r in _stage_records(work).items() if r["status"] == "done"}
    assert {n.split("-")[0] for n in before} == {"identity", "attributes", "baseline"}
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "submitted shapes/evaluate/hifill/seed0" in again.stdout and "submitted shapes/baseline" not in again.stdout
    after = _stage_records(work)
    for name, rec in before.items():  # finished stages were kept, not run again
        assert after[name] == rec
    (name, rec), = killed.items()
    assert after[name]["status"] == "done" and after[name]["attempts"] == 2
    assert any((work / "shapes" / name / "submitit").rglob("*_result.pkl"))  # it ran as a submitit job
    resumed = json.loads((tmp_path / "results" / "shapes" / "hifill.json").read_text())
    whole = json.loads((table1_run / "results" / "shapes" / "hifill.json").read_text())
    assert resumed["metrics"] == whole["metrics"]
    assert "| HiFill |" in (tmp_path / "results" / "table1.md").read_text()


def test_an_interrupted_generator_resumes_from_its_last_checkpoint(table1_run, tmp_path):
    work = shutil.copytree(table1_run / "pipe", tmp_path / "pipe")
    gen = next(work.glob("shapes/generator-xmgie-*"))
    rec = json.loads((gen / "stage.json").read_text())
    (gen / "stage.json").write_text(json.dumps({**rec, "status": "running", "pid": 2 ** 22 + 17}))  # a dead pid
    stages, _, _ = plan("experiments/tables/table1.yaml", load_budget("smoke", REPO), work=work)
    by_folder = {s.folder.name: s for s in stages}
    assert by_folder[gen.name].status() == "interrupted"
    run_table("experiments/tables/table1.yaml", "smoke", work=work, results_root=tmp_path, log=lambda _: None,
              entry=main)
    again = json.loads((gen / "stage.json").read_text())
    assert again["status"] == "done" and again["resumed"] and "--ckpt_path=" in again["command"]
    assert again["attempts"] == rec["attempts"] + 1
    assert again["code"] is None or re.fullmatch(r"[0-9a-f]{4,}(-dirty)?", again["code"])  # the commit that ran it


def test_a_failed_stage_is_reported_and_only_its_dependents_are_skipped(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  no_such_option: 1\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""name: tiny
caption: two methods
layout: rows
columns: [ssim, psnr]
results: "results/{{dataset}}/{{method}}.json"
datasets:
  - {{name: shapes, label: shapes}}
methods:
  - {{name: good, label: Good, config: experiments/ablation/base.yaml}}
  - {{name: bad, label: Bad, config: {bad}}}
""")
    lines = []
    with pytest.raises(UserError, match="2 stage\\(s\\) did not finish: shapes/generator/bad/seed0"):
        run_table(spec, "smoke", work=tmp_path / "pipe", results_root=tmp_path, log=lines.append, entry=main)
    assert any(line.startswith("failed   shapes/generator/bad/seed0") and "log.txt" in line for line in lines)
    assert any(line.startswith("blocked  shapes/evaluate/bad/seed0") for line in lines)
    md = (tmp_path / "results" / "tiny.md").read_text()
    assert "| shapes | Good |" in md and "missing" in next(r for r in md.splitlines() if "| Bad |" in r)
    status = []
    run_table(spec, "smoke", work=tmp_path / "pipe", status=True, log=status.append)
    failed = next(line for line in status if "generator/bad" in line)
    assert failed.startswith("failed") and "log: " in failed and "no_such_option" in Path(
        failed.split("log: ")[1]).read_text()


def test_stage_keys_follow_their_inputs(tmp_path):
    config = tmp_path / "m.yaml"
    config.write_text((REPO / "experiments/ablation/full.yaml").read_text())
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""name: k
layout: rows
columns: [psnr]
datasets: [{{name: shapes, label: shapes}}]
methods: [{{name: m, label: M, config: {config}}}]
""")
    budget = load_budget("smoke", REPO)
    first = {s.label: s.key for s in plan(spec, budget, work=tmp_path)[0]}
    config.write_text(config.read_text() + "\n# a comment changes no setting\n")
    assert {s.label: s.key for s in plan(spec, budget, work=tmp_path)[0]} == first
    config.write_text(config.read_text() + "trainer: {max_steps: 3}\n")
    second = {s.label: s.key for s in plan(spec, budget, work=tmp_path)[0]}
    assert first["shapes/identity"] == second["shapes/identity"]  # upstream of the method: kept
    assert first["shapes/generator/base/seed0"] == second["shapes/generator/base/seed0"]
    assert first["shapes/generator/m/seed0"] != second["shapes/generator/m/seed0"]
    assert first["shapes/evaluate/m/seed0"] != second["shapes/evaluate/m/seed0"]  # downstream: new too
    with pytest.raises(UserError, match="unknown budget"):
        load_budget("huge", REPO)
    assert load_budget("cpu", REPO)["seeds"] == [0, 1, 2]


def test_table1_builds_each_method_from_its_recipe(tmp_path):
    stages, _, _ = plan("experiments/tables/table1.yaml", load_budget("smoke", REPO), datasets=["shapes"],
                        work=tmp_path)
    by = {s.label: s for s in stages}
    order = [s.label for s in stages]
    for s in stages:  # every stage runs after what it needs
        assert all(order.index(n.label) < order.index(s.label) for n in s.needs)
    expander, mgie = by["shapes/expander"], by["shapes/generator/mgie/seed0"]
    for method in ("mgie", "xmgie"):  # they read the expander's instruction; GLIDE reads the prompt
        assert f"--model.expander={expander.output}" in by[f"shapes/generator/{method}/seed0"].argv
    assert not any(a.startswith("--model.expander") for a in by["shapes/generator/glide/seed0"].argv)
    assert "experiments/baselines/glide.yaml" in by["shapes/generator/glide/seed0"].argv
    for method in ("pfb_diff", "mgie_blend", "mgie_blend_gb"):  # training-free, from the fine-tuned MGIE
        derive = by[f"shapes/derive/{method}/seed0"]
        assert derive.needs == [mgie] and derive.argv[derive.argv.index("--from") + 1] == str(mgie.output)
        assert derive.argv[:4] == ["baseline", "derive", "--method", method]
    gan = by["shapes/baseline/sisgan/seed0"]
    assert gan.argv[:4] == ["baseline", "train", "--method", "sisgan"] and "--channels" in gan.argv
    ev = by["shapes/evaluate/hifill/seed0"]
    assert ev.needs[0] is by["shapes/baseline/hifill/seed0"] and str(ev.needs[0].output) in ev.argv


def _finetuned(stages):
    return [s for s in stages if s.kind == "generator" and any(n.method == "base" for n in s.needs)]


def test_one_base_per_dataset_is_shared_by_every_fine_tuned_method_and_by_both_tables(tmp_path):
    budget = load_budget("smoke", REPO)
    table2, _, _ = plan("experiments/tables/table2.yaml", budget, datasets=["shapes"], work=tmp_path)
    table1, _, _ = plan("experiments/tables/table1.yaml", budget, datasets=["shapes"], work=tmp_path)
    bases = [s for s in table2 if s.method == "base"]
    assert len(bases) == 1 and [s.folder for s in table1 if s.method == "base"] == [bases[0].folder]
    tuned = _finetuned(table2)
    assert len(tuned) == 6 and all(f"--model.init_from={bases[0].output}" in s.argv for s in tuned)
    assert all("experiments/finetune.yaml" in s.argv for s in tuned)
    literal, _, _ = plan("experiments/tables/literal.yaml", budget, datasets=["shapes"], work=tmp_path)
    shared = {s.folder for s in literal} & {s.folder for s in table2}  # Table 2's stages are reused, not rerun
    assert {s.label for s in literal if s.folder in shared} == {s.label for s in literal} - {
        "shapes/generator/full_literal/seed0", "shapes/evaluate/full_literal/seed0"}
    by = {s.label: s for s in table1}
    assert {s.method for s in _finetuned(table1)} == {"mgie", "xmgie"}
    glide = by["shapes/generator/glide/seed0"]  # an inpainting model: trained from scratch for base + fine-tune
    assert not any(a.startswith("--model.init_from") for a in glide.argv) and "--trainer.max_steps=6" in glide.argv


def test_a_changed_base_reruns_what_depends_on_it_and_nothing_else(tmp_path):
    budget = load_budget("smoke", REPO)
    first = {s.label: s.key for s in plan("experiments/tables/table1.yaml", budget, datasets=["shapes"],
                                          work=tmp_path)[0]}
    longer = {**budget, "base": [*budget["base"], "--trainer.max_steps=5"]}
    second = {s.label: s.key for s in plan("experiments/tables/table1.yaml", longer, datasets=["shapes"],
                                           work=tmp_path)[0]}
    changed = {label for label in first if first[label] != second[label]}
    assert changed == {"shapes/generator/base/seed0", "shapes/generator/mgie/seed0", "shapes/generator/xmgie/seed0",
                       "shapes/evaluate/mgie/seed0", "shapes/evaluate/xmgie/seed0"} | {
        f"shapes/{kind}/{m}/seed0" for kind in ("derive", "evaluate") for m in ("pfb_diff", "mgie_blend", "mgie_blend_gb")}


def test_every_row_of_the_cpu_budget_gets_the_same_number_of_updates():
    import yaml

    budget = load_budget("cpu", REPO)
    train = yaml.safe_load((REPO / "experiments/train.yaml").read_text())

    def steps(args, default):
        found = [int(a.split("=")[1]) for a in args if a.startswith("--trainer.max_steps=")]
        return found[-1] if found else default

    base = steps(budget["base"], train["trainer"]["max_steps"])
    finetune = steps(budget["finetune"], None)
    assert base == 1300 and finetune == 200
    assert steps(budget["scratch"], None) == base + finetune
    assert int(budget["baseline"][budget["baseline"].index("--steps") + 1]) == base + finetune


def test_a_specs_generator_config_reaches_the_base_and_every_generator_after_the_train_config(tmp_path):
    budget = load_budget("smoke", REPO)
    spec = tmp_path / "regime.yaml"
    raw = (REPO / "experiments/tables/table2.yaml").read_text()
    spec.write_text(raw + "generator_config: experiments/smoke.yaml\n")
    plain = {s.label: s for s in plan("experiments/tables/table2.yaml", budget, datasets=["shapes"],
                                      work=tmp_path)[0]}
    regime = {s.label: s for s in plan(spec, budget, datasets=["shapes"], work=tmp_path)[0]}
    fits = [s for s in regime.values() if s.kind == "generator"]
    assert len(fits) == 7  # the base and six fine-tuned rows
    for s in fits:
        i = s.argv.index("--config")
        assert s.argv[i + 3] == "experiments/smoke.yaml" and s.key != plain[s.label].key
    assert regime["shapes/identity"].key == plain["shapes/identity"].key  # nothing else changes


def test_rows_trained_from_scratch_take_the_budgets_scratch_seeds(tmp_path):
    budget = {**load_budget("smoke", REPO), "seeds": [0, 1, 2], "scratch_seeds": [0]}
    stages, _, _ = plan("experiments/tables/table1.yaml", budget, datasets=["shapes"], work=tmp_path)
    seeds: dict[str, set[int]] = {}
    for s in stages:
        if s.kind == "evaluate":
            seeds.setdefault(s.method, set()).add(s.seed)
    assert seeds == {"sisgan": {0}, "tagan": {0}, "manigan": {0}, "hifill": {0}, "glide": {0},
                     "mgie": {0, 1, 2}, "xmgie": {0, 1, 2}, "pfb_diff": {0, 1, 2},  # derived from fine-tuned MGIE
                     "mgie_blend": {0, 1, 2}, "mgie_blend_gb": {0, 1, 2}}
    cpu = load_budget("cpu", REPO)
    assert cpu["seeds"] == [0, 1, 2] and cpu["scratch_seeds"] == [0] and cpu["jobs"] == 2


def _fake_stages(tmp: Path) -> list:
    """a, b and c independent; d needs a and b; e needs d."""
    from xmgie.pipeline.stage import Stage

    a, b, c = (Stage("evaluate", "shapes", n, 0, [n]) for n in "abc")
    d = Stage("evaluate", "shapes", "d", 0, ["d"], [a, b])
    e = Stage("evaluate", "shapes", "e", 0, ["e"], [d])
    for s in (a, b, c, d, e):
        s.folder = tmp / s.method
    return [a, b, c, d, e]


def _finish(stage) -> str:
    stage.folder.mkdir(parents=True, exist_ok=True)
    stage.output.write_text("{}")
    (stage.folder / "stage.json").write_text(json.dumps({"status": "done", "wall_time_s": 0.3}))
    return "done"


def test_the_local_executor_runs_independent_stages_at_once_and_each_after_its_needs(tmp_path, monkeypatch):
    import threading

    from xmgie.pipeline import local as runner

    events, lock = [], threading.Lock()

    def fake_run(stage, entry=None, threads=None):
        with lock:
            events.append(("start", stage.method, threads))
        time.sleep(0.3)
        _finish(stage)
        with lock:
            events.append(("end", stage.method, threads))
        return "done"

    monkeypatch.setattr(runner, "run_stage", fake_run)
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 4)
    stages = _fake_stages(tmp_path)
    final = runner.execute(stages, log=lambda _: None, jobs=2)
    assert list(final) == [s.label for s in stages] and set(final.values()) == {"done"}
    order = [(kind, name) for kind, name, _ in events]
    assert order[:2] == [("start", "a"), ("start", "b")]  # two at once, in the plan's order
    assert all(threads == 2 for _, _, threads in events)  # 4 cores shared by 2 stages
    busy = peak = 0
    for kind, _ in order:
        busy += 1 if kind == "start" else -1
        peak = max(peak, busy)
    assert peak == 2  # never more than `jobs`
    for after, before in (("d", "a"), ("d", "b"), ("e", "d")):
        assert order.index(("start", after)) > order.index(("end", before))
    events.clear()  # a second run keeps every finished stage
    assert set(runner.execute(_fake_stages(tmp_path), log=lambda _: None, jobs=2).values()) == {"done"}
    assert events == []


def test_a_failed_stage_blocks_only_its_dependents_when_stages_run_at_once(tmp_path, monkeypatch):
    from xmgie.pipeline import local as runner

    monkeypatch.setattr(runner, "run_stage", lambda stage, entry=None, threads=None:
                        "failed" if stage.method == "a" else _finish(stage))
    stages = _fake_stages(tmp_path)
    final = runner.execute(stages, log=lambda _: None, jobs=3)
    assert [final[s.label] for s in stages] == ["failed", "done", "done", "blocked", "blocked"]
    assert [s.status() for s in stages] == ["pending", "done", "done", "pending", "pending"]


def test_jobs_below_one_is_a_one_line_error():
    from tests.test_cli import run_cli

    proc = run_cli("run", "--spec", "experiments/tables/table2.yaml", "--budget", "smoke", "--jobs", "0")
    assert proc.returncode == 2 and "--jobs must be at least 1, got 0" in proc.stderr


def test_budgets_declare_every_stage_in_one_syntax_checked_against_its_command(tmp_path):
    smoke = load_budget("smoke", REPO)
    assert smoke["identity"] == ["--steps", "4", "--batch-size", "8", "--resolution", "16"]
    assert smoke["generator"][:2] == ["--config", "experiments/smoke.yaml"]
    assert "--data.init_args.resolution=16" in smoke["generator"] and smoke["base"][0] == "--trainer.max_steps=4"
    assert load_budget("paper", REPO)["base"] is None  # no base stage: the pretrained folder is the base
    (tmp_path / "experiments").mkdir()
    budgets = tmp_path / "experiments" / "budgets.yaml"
    budgets.write_text("b: {seeds: [0], generator: {trainer.enable_progress_bar: false, config: a.yaml}}\n")
    assert load_budget("b", tmp_path)["generator"] == ["--trainer.enable_progress_bar=false", "--config", "a.yaml"]
    for text, message in (("b: {seeds: [0], identity: {stepz: 4}}", r"budgets.yaml b.identity: unknown setting"),
                          ("b: {seeds: [0], evaluate: {limit: all}}", "b.evaluate: --limit: expected int"),
                          ("b: {seeds: [0], base: [--trainer.max_steps=4]}", "b.base: expected settings as a map"),
                          ("b: {seeds: [0], mllm: {steps: 4}}", r"b: unknown entr\(ies\) mllm; known: seeds")):
        budgets.write_text(text + "\n")
        with pytest.raises(UserError, match=message):
            load_budget("b", tmp_path)
