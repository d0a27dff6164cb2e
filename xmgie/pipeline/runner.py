"""`xmgie run --spec experiments/tables/table2.yaml`: a table as a resumable pipeline of stages.

Per dataset whose data is present:
    identity     E_id (`xmgie identity train`)            when the dataset has identity labels
    attributes   AA classifier (`xmgie attributes train`) when it has attributes
    expander     the instruction expander (`xmgie expander train`) when a method reads its output
    base         `xmgie fit` of the trained editor the fine-tuned methods start from (once per dataset: the
                 budget's `base`; none where the budget's train config starts from pretrained weights)
    generator    `xmgie fit` per method and seed           (the spec's config, or the method's recipe in
                                                            xmgie/baselines; needs E_id for IE, the expander;
                                                            a fine-tuned method also the base: init_from)
    baseline     `xmgie baseline train` per GAN baseline and seed
    derive       `xmgie baseline derive` (PFB-Diff) per seed from its source method's generator
    evaluate     `xmgie evaluate` per method and seed      (needs its checkpoint, E_id, the classifier)
then per method the mean ± std over seeds into the spec's result file, and the table (+ a plot). A spec's
`generator_config` (a file or a list) goes after the train config of every generator stage, the base's included:
a whole table in another regime (e.g. a generator that never sees the mask) without touching the methods.

Every stage runs as a subprocess into its own folder runs/pipeline/<dataset>/<stage>-<key>/, where <key> hashes
the stage's resolved command, the settings of every config file it reads and the keys of the stages it needs:
change anything upstream and everything downstream gets a new folder, change nothing and a finished stage is
skipped. `stage.json` records status, wall time and the log; an interrupted generator resumes from its
last.ckpt; a failed stage is reported with its log and only the stages that need it are skipped.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from xmgie.errors import UserError
from xmgie.stage_config import to_argv

BUDGETS_FILE = "experiments/budgets.yaml"
TRAIN_CONFIG = "experiments/train.yaml"
FINETUNE_CONFIG = "experiments/finetune.yaml"
BASE = "base"  # the method name of the shared base editor's generator stage
STAGE_KINDS = ("identity", "attributes", "expander", "generator", "baseline", "derive", "evaluate")
EDITORS = ("generator", "baseline", "derive")  # stages whose output is a checkpoint `xmgie evaluate` reads


@dataclass
class Stage:
    """One unit of work: `argv` (after `xmgie`) run in `folder`; `output` exists when it has finished."""

    kind: str
    dataset: str
    method: str
    seed: int
    argv: list[str]
    needs: list["Stage"] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # config files whose text is part of the key
    key: str = ""
    folder: Path = Path()

    @property
    def label(self) -> str:
        return "/".join(p for p in (self.dataset, self.kind, self.method, f"seed{self.seed}" if self.method else "")
                        if p)

    @property
    def output(self) -> Path:
        return self.folder / {"identity": "encoder.pt", "attributes": "classifier.pt", "expander": "expander.pt",
                              "generator": "run/checkpoints/last.ckpt", "baseline": "baseline.ckpt",
                              "derive": "baseline.ckpt", "evaluate": "result.json"}[self.kind]

    def record(self) -> dict[str, Any]:
        path = self.folder / "stage.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def status(self) -> str:
        """done | running | queued (a submitted job waiting) | failed | blocked | interrupted | pending."""
        rec = self.record()
        state = rec.get("status", "pending")
        if state in ("running", "queued") and rec.get("slurm_job"):  # its process lives on another node
            return state if slurm_job_state(rec["slurm_job"]) in SLURM_ALIVE else "interrupted"
        if state == "queued" and not _alive(int(rec.get("job") or 0)):  # a local submitit job, by its pid
            return "interrupted"
        if state == "running" and not _alive(rec.get("pid")):
            return "interrupted"
        if state == "done" and not self.output.exists():
            return "pending"
        return state


def _alive(pid: int | None) -> bool:
    """Whether process `pid` runs (a zombie, ended but not yet reaped by its parent, does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: os.kill's answer


SLURM_ALIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


def slurm_job_state(job: str) -> str | None:
    """The state SLURM reports for `job` (PENDING, RUNNING, …), or None once it has left the queue (or where
    there is no squeue)."""
    try:
        out = subprocess.run(["squeue", "--noheader", "--jobs", job, "--format", "%T"], capture_output=True,
                             text=True, timeout=60).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


def _key(stage: Stage, repo: Path) -> str:
    """What the stage reads: its command, the settings in its config files (parsed: a comment or a re-wrapped line
    keeps the key) and the keys of the stages it needs."""
    settings = {f: yaml.safe_load((repo / f).read_text()) for f in stage.files}
    blob = json.dumps({"kind": stage.kind, "dataset": stage.dataset, "method": stage.method, "seed": stage.seed,
                       "argv": stage.argv, "files": settings, "needs": [s.key for s in stage.needs]},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_budget(name: str, repo: Path) -> dict[str, Any]:
    """A budget of experiments/budgets.yaml with each stage's settings as its command-line options
    (`budget_argv`); "auto": "paper" with a GPU, else "cpu"."""
    if name == "auto":
        import torch

        name = "paper" if torch.cuda.is_available() else "cpu"
    budgets = yaml.safe_load((repo / BUDGETS_FILE).read_text())
    if name not in budgets:
        raise UserError(f"unknown budget {name!r}; {BUDGETS_FILE} has {', '.join(budgets)}")
    budget = {"name": name, **budgets[name]}
    unknown = sorted(set(budget) - {"name", *BUDGET_KEYS, *FIT_SETTINGS, *STAGE_CONFIGS})
    if unknown:
        raise UserError(f"{BUDGETS_FILE} {name}: unknown entr(ies) {', '.join(unknown)}; known: "
                        f"{', '.join((*BUDGET_KEYS, *FIT_SETTINGS, *STAGE_CONFIGS))}")
    for entry in (*FIT_SETTINGS, *STAGE_CONFIGS):
        if budget.get(entry) is not None:  # `base: null`: no base stage
            budget[entry] = budget_argv(budget, entry)
    return budget


FIT_SETTINGS = ("generator", "base", "finetune", "scratch")  # budget entries of `xmgie fit` (jsonargparse keys)
BUDGET_KEYS = ("seeds", "scratch_seeds", "jobs", "train_config", "resources")  # the rest of a budget


def _stage_configs() -> dict[str, type]:
    from xmgie.evaluation.config import EvaluateStageConfig
    from xmgie.training.config import (AttributeStageConfig, BaselineStageConfig, ExpanderStageConfig,
                                       IdentityStageConfig)

    return {"identity": IdentityStageConfig, "attributes": AttributeStageConfig, "expander": ExpanderStageConfig,
            "baseline": BaselineStageConfig, "evaluate": EvaluateStageConfig}


STAGE_CONFIGS = _stage_configs()  # budget entries of the stage commands declared by a config (stage_config.py)


def budget_argv(budget: dict[str, Any], entry: str) -> list[str]:
    """A budget entry's settings (`{field: value}`) as its command's options. Stage commands take their config's
    field names (`steps: 1000` → `--steps 1000`; an unknown field or a wrong type is an error naming the budget);
    `xmgie fit` takes jsonargparse keys (`trainer.max_steps: 200` → `--trainer.max_steps=200`, `config: [a.yaml]`
    → `--config a.yaml`)."""
    settings = budget[entry]
    where = f"{BUDGETS_FILE} {budget['name']}.{entry}"
    if not isinstance(settings, dict):
        raise UserError(f"{where}: expected settings as a mapping (field: value), got {settings!r}")
    if entry in STAGE_CONFIGS:
        return to_argv(STAGE_CONFIGS[entry], settings, where)
    argv: list[str] = []
    for key, value in settings.items():
        if key == "config":
            argv += [a for c in ([value] if isinstance(value, str) else value) for a in ("--config", c)]
        else:
            argv.append(f"--{key}={json.dumps(value) if isinstance(value, bool) else value}")
    return argv


def dataset_facts(dataset: str, root: str | None) -> tuple[bool, str, int, int]:
    """(present, where, identities, attributes): whether the data can be read, and its label counts."""
    from data_modules import build_datamodule
    from data_modules.records import DatasetMissing

    try:
        dm = build_datamodule(dataset, root=root)
        return True, str(getattr(dm, "root", "embedded")), dm.num_identities, dm.num_attributes
    except DatasetMissing as err:
        return False, str(err).split(";")[0].removeprefix(f"{dataset}: expected "), 0, 0


def plan(spec_path: str | Path, budget: dict[str, Any], datasets: list[str] | None = None,
         roots: dict[str, str] | None = None, work: str | Path = "runs/pipeline",
         repo: str | Path = ".") -> tuple[list[Stage], dict[str, str], dict[str, Any]]:
    """The stages of a table spec: (stages in run order, {dataset: why it is not run}, the raw spec)."""
    repo, roots = Path(repo), roots or {}
    raw = yaml.safe_load((repo / spec_path).read_text())  # an absolute spec_path stays as it is
    names = [d["name"] for d in raw["datasets"]]
    if datasets:
        unknown = set(datasets) - set(names)
        if unknown:
            raise UserError(f"{spec_path} has no dataset(s) {sorted(unknown)}; it lists {', '.join(names)}")
        names = [n for n in names if n in datasets]
    stages: list[Stage] = []
    skipped: dict[str, str] = {}
    for dataset in names:
        root = roots.get(dataset)
        present, where, n_ids, n_attrs = dataset_facts(dataset, root)
        if not present:
            skipped[dataset] = f"not run: data not found at {where}"
            continue
        stages += dataset_stages(raw, dataset, root, budget, n_ids, n_attrs)
    for s in stages:  # in order: every stage's needs come before it
        s.key = _key(s, repo)
        s.folder = Path(work) / s.dataset / f"{s.kind}{'-' + s.method if s.method else ''}" \
            f"{'-s' + str(s.seed) if s.method else ''}-{s.key}"
    _fill_paths(stages)
    return stages, skipped, raw


def method_recipe(entry: dict | str):
    """How a spec's method is built: its own `config` (one file or a list) on top of experiments/train.yaml,
    fine-tuning the base editor unless the entry says `finetune: false`, else the recipe registered under its name
    in xmgie/baselines; None when neither exists (its cells stay "missing")."""
    from xmgie.baselines import METHODS, Recipe

    entry = entry if isinstance(entry, dict) else {"name": entry}
    config = entry.get("config")
    if config:
        return Recipe("fit", configs=tuple([config] if isinstance(config, str) else config),
                      finetune=bool(entry.get("finetune", True)))
    return METHODS.get(entry["name"])


def dataset_stages(raw: dict, dataset: str, root: str | None, budget: dict, n_ids: int, n_attrs: int) -> list[Stage]:
    """identity, attributes, the expander, then per runnable method and seed its checkpoint stage + evaluate."""
    data = ["--data-root", root] if root else []
    out: list[Stage] = []
    identity = attributes = expander = None
    if n_ids > 0:
        identity = Stage("identity", dataset, "", 0, ["identity", "train", "--dataset", dataset, *data,
                                                      *budget.get("identity", [])])
        out.append(identity)
    if n_attrs > 0:
        attributes = Stage("attributes", dataset, "", 0, ["attributes", "train", "--dataset", dataset, *data,
                                                          *budget.get("attributes", [])])
        out.append(attributes)
    recipes = [(m["name"] if isinstance(m, dict) else m, method_recipe(m)) for m in raw["methods"]]
    recipes = [(name, r) for name, r in recipes if r is not None]
    train_config = budget.get("train_config", TRAIN_CONFIG)
    regime = raw.get("generator_config") or ()  # the spec's configs for every generator, the base's included
    regime = (regime,) if isinstance(regime, str) else tuple(regime)
    data_yaml = f"experiments/data/{dataset}.yaml"
    base = None
    if any(r.finetune for _, r in recipes) and budget.get("base") is not None:
        base = _fit_stage(BASE, regime, dataset, root, 0, budget, data_yaml, [], train_config, budget["base"])
        out.append(base)
    if any(r.kind == "fit" and _reads_expander(r.configs) for _, r in recipes):
        expander = Stage("expander", dataset, "", 0, ["expander", "train", "--dataset", dataset, *data,
                                                      *budget.get("expander", [])])
        out.append(expander)
    checkpoints: dict[tuple[str, int], Stage] = {}
    for name, recipe in sorted(recipes, key=lambda nr: nr[1].kind == "derive"):  # derived after their sources
        from_scratch = recipe.kind == "gan" or (recipe.kind == "fit" and not recipe.finetune)
        for seed in budget.get("scratch_seeds", budget["seeds"]) if from_scratch else budget["seeds"]:
            if recipe.kind == "fit":
                configs = regime + ((FINETUNE_CONFIG,) if recipe.finetune else ()) + recipe.configs
                steps = budget.get("finetune" if recipe.finetune else "scratch", [])
                needs = [identity if "ie" in _enabled_modules((train_config, *configs)) else None,
                         expander if _reads_expander(configs) else None, base if recipe.finetune else None]
                stage = _fit_stage(name, configs, dataset, root, seed, budget, data_yaml, [n for n in needs if n],
                                   train_config, steps)
            elif recipe.kind == "gan":
                stage = Stage("baseline", dataset, name, seed, ["baseline", "train", "--method", name, "--dataset",
                                                                dataset, *data, "--seed", str(seed),
                                                                *budget.get("baseline", [])])
            else:
                source = checkpoints.get((recipe.source, seed))
                if source is None:
                    continue  # its source method is not in the spec: nothing to derive from
                stage = Stage("derive", dataset, name, seed, ["baseline", "derive", "--method", name], [source])
            checkpoints[(name, seed)] = stage
            ev = Stage("evaluate", dataset, name, seed, ["evaluate", "--dataset", dataset, *data, "--name", name,
                                                        "--seed", str(seed), *budget.get("evaluate", [])],
                       [stage] + [s for s in (identity, attributes) if s])
            out += [stage, ev]
    return out


def _fit_stage(name: str, configs: tuple[str, ...], dataset: str, root: str | None, seed: int, budget: dict,
               data_yaml: str, needs: list[Stage], train_config: str, steps: list[str]) -> Stage:
    """`xmgie fit` of the framework's generator with the method's configs, the budget's arguments for every
    generator and its step arguments for this kind of run (base, fine-tuning or from scratch)."""
    budget_args = [*budget.get("generator", []), *steps]
    data_args = [a for a in budget_args if a.startswith("--data.")]  # they apply once the class is set
    argv = ["fit", "--config", train_config, *[a for c in configs for a in ("--config", c)],
            *[a for a in budget_args if a not in data_args], "--data", data_yaml, *data_args,
            *([f"--data.init_args.root={root}"] if root else []),
            f"--seed_everything={seed}", "--trainer.enable_progress_bar=false"]
    return Stage("generator", dataset, name, seed, argv, needs,
                 [train_config, *configs, data_yaml] + [a for a in budget_args if a.endswith(".yaml")])


def _reads_expander(configs: tuple[str, ...]) -> bool:
    """Whether the last config that sets model.text_source sets "expander"."""
    source = None
    for config in configs:
        source = (yaml.safe_load(Path(config).read_text()) or {}).get("model", {}).get("text_source", source)
    return source == "expander"


def _enabled_modules(configs: tuple[str, ...]) -> list[str]:
    """The modules the configs leave on (later files override earlier ones, as LightningCLI merges them)."""
    enabled: dict[str, bool] = {}
    for config in configs:
        mods = (yaml.safe_load(Path(config).read_text()) or {}).get("model", {}).get("modules", {})
        enabled.update({k: bool(v.get("enabled")) for k, v in mods.items() if isinstance(v, dict) and "enabled" in v})
    return [k for k, on in enabled.items() if on]


def _fill_paths(stages: list[Stage]) -> None:
    """Arguments that name other stages' outputs (known once every folder is)."""
    for s in stages:
        ident = next((n for n in s.needs if n.kind == "identity"), None)
        expander = next((n for n in s.needs if n.kind == "expander"), None)
        if s.kind in ("identity", "attributes", "expander", "baseline"):
            s.argv += ["--out", str(s.output)]
        elif s.kind == "derive":
            s.argv += ["--from", str(s.needs[0].output), "--out", str(s.output)]
        elif s.kind == "generator":
            s.argv += [f"--trainer.default_root_dir={s.folder / 'run'}"]  # the run's own files apart from ours
            if ident:
                s.argv += [f"--model.modules.ie.weights={ident.output}"]
            if expander:
                s.argv += [f"--model.expander={expander.output}"]
            base = next((n for n in s.needs if n.kind == "generator" and n.method == BASE), None)
            if base:
                s.argv += [f"--model.init_from={base.output}"]
        elif s.kind == "evaluate":
            gen = next(n for n in s.needs if n.kind in EDITORS)
            attr = next((n for n in s.needs if n.kind == "attributes"), None)
            s.argv += ["--ckpt", str(gen.output), "--out", str(s.output)]
            s.argv += ["--identity", str(ident.output)] if ident else []
            s.argv += ["--attributes", str(attr.output)] if attr else []


def _stage_child(argv: list[str], log: str, threads: int | None, entry: Callable[[list[str]], None]) -> None:
    """A forked stage: output to the log, `entry(argv)` (on `threads` cores when given), exit with its status."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    # the parent's sys.stdout/stderr may be wrappers that do not write to fds 1 and 2 (pytest's capture)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    code = 0
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        entry(argv)
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    except BaseException:  # noqa: BLE001  the traceback goes to the stage's log, the status to its record
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


PRELOAD = ["xmgie.training.cli", "xmgie.evaluation.evaluate", "xmgie.training.identity_module",
           "xmgie.training.attribute_module", "xmgie.training.expander_module", "xmgie.baselines.train"]


def _launch(argv: list[str], log: Path, entry: Callable[[list[str]], None] | None, threads: int | None = None):
    """Start a stage: `entry(argv)` in a child of a fork server that imported the heavy modules once (~8 s saved
    per stage), or, without `entry`, `python -m xmgie.cli <argv>` in a fresh interpreter. The fork server is a
    clean single-threaded process, so its children are safe even when this process holds thread pools or CUDA
    (forking this process itself could deadlock)."""
    if entry is not None:
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([entry.__module__, *PRELOAD])
        proc = ctx.Process(target=_stage_child, args=(argv, str(log), threads, entry))
        proc.start()
        return proc.pid, lambda: (proc.join(), proc.exitcode)[1]
    out = open(log, "a")
    popen = subprocess.Popen([sys.executable, "-m", "xmgie.cli", *argv], stdout=out, stderr=subprocess.STDOUT,
                             env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
                                  **({"OMP_NUM_THREADS": str(threads)} if threads else {})})
    return popen.pid, lambda: (popen.wait(), out.close())[0]


def run_stage(stage: Stage, entry: Callable[[list[str]], None] | None = None, threads: int | None = None) -> str:
    """Run one stage to completion in its own process (`_launch`; on `threads` cores when given); returns its
    final status (done | failed)."""
    stage.folder.mkdir(parents=True, exist_ok=True)
    argv = list(stage.argv)
    resumed = stage.kind == "generator" and stage.output.is_file()
    if resumed:
        argv.append(f"--ckpt_path={stage.output}")  # an interrupted run continues from its last checkpoint
    log = stage.folder / "log.txt"
    previous = stage.record()
    rec = {"stage": stage.label, "status": "running", "key": stage.key, "command": shlex.join(["xmgie", *argv]),
           "log": str(log), "started": _now(), "attempts": previous.get("attempts", 0) + 1, "resumed": resumed,
           "code": code_version(), **({"slurm_job": os.environ["SLURM_JOB_ID"]} if "SLURM_JOB_ID" in os.environ
                                      else {})}
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n# {rec['started']} attempt {rec['attempts']}: {rec['command']}\n")
    pid, join = _launch(argv, log, entry, threads)
    _write(stage, {**rec, "pid": pid})
    code = join()
    ok = code == 0 and stage.output.exists()
    _write(stage, {**rec, "status": "done" if ok else "failed", "exit_code": code, "finished": _now(),
                   "wall_time_s": round(time.perf_counter() - start + previous.get("wall_time_s", 0.0), 1)})
    return "done" if ok else "failed"


def code_version() -> str | None:
    """The git commit of the code that ran a stage (+ "-dirty" with uncommitted changes); None outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) or None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write(stage: Stage, rec: dict) -> None:
    tmp = stage.folder / "stage.json.tmp"
    tmp.write_text(json.dumps(rec, indent=2) + "\n")
    tmp.replace(stage.folder / "stage.json")


def execute(stages: list[Stage], log=print, entry: Callable[[list[str]], None] | None = None,
            jobs: int = 1) -> dict[str, str]:
    """Run what is not done, up to `jobs` stages at once (each given its share of the cores), a stage as soon as
    its needs are done; a failure skips only the stages that need it. {label: status}, in the stages' order."""
    jobs = max(1, jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    final: dict[str, str] = {n.label: "done" if n.status() == "done" else "missing"  # needs outside this list
                             for s in stages for n in s.needs if n not in stages}
    waiting = list(stages)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running: dict[Any, Stage] = {}
        while waiting or running:
            for s in list(waiting):  # in order: the first stages whose needs are settled go first
                if len(running) >= jobs:
                    break
                states = [final.get(n.label) for n in s.needs]
                if any(state is None for state in states):
                    continue  # a need is still running or waiting
                waiting.remove(s)
                blocked = [n.label for n, state in zip(s.needs, states) if state != "done"]
                if blocked:
                    final[s.label] = "blocked"
                    log(f"blocked  {s.label}: needs {', '.join(blocked)}")
                elif s.status() == "done":
                    final[s.label] = "done"
                    log(f"done     {s.label} (kept: {s.folder})")
                else:
                    log(f"running  {s.label} -> {s.folder}")
                    running[pool.submit(run_stage, s, entry, threads if jobs > 1 else None)] = s
            if not running:
                continue  # everything left was settled without running (kept or blocked)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                s = running.pop(future)
                final[s.label] = future.result()
                rec = s.record()
                log(f"{final[s.label]:8s} {s.label} in {rec.get('wall_time_s')} s" +
                    (f"; log: {rec.get('log')}" if final[s.label] == "failed" else ""))
    return {s.label: final[s.label] for s in stages}


def run_one(stages: list[Stage], label: str, entry: Callable[[list[str]], None] | None = None) -> str:
    """Run the stage called `label` alone; its needs must be done. Returns "done"."""
    by_label = {s.label: s for s in stages}
    if label not in by_label:
        raise UserError(f"no stage {label!r} in this plan (xmgie run --status lists them)")
    s = by_label[label]
    waiting = [n.label for n in s.needs if n.status() != "done"]
    if waiting:
        raise UserError(f"{label} needs {', '.join(waiting)}, not done")
    if s.status() != "done" and run_stage(s, entry) != "done":
        raise UserError(f"{label} failed; log: {s.record().get('log')}")
    return "done"


def aggregate(stages: list[Stage], raw: dict, results_root: str | Path = ".") -> list[Path]:
    """Per (dataset, method): the seeds' result files into the spec's result path — mean, and std over seeds
    where there are several — keeping every per-seed file's provenance."""
    written = []
    by_method: dict[tuple[str, str], list[Stage]] = {}
    for s in stages:
        if s.kind == "evaluate" and s.status() == "done":
            by_method.setdefault((s.dataset, s.method), []).append(s)
    for (dataset, method), done in by_method.items():
        runs = [json.loads(s.output.read_text()) for s in done]
        merged = dict(runs[0])
        names = set.intersection(*(set(r["metrics"]) for r in runs))
        merged["metrics"] = {k: statistics.fmean(r["metrics"][k] for r in runs) for k in sorted(names)}
        if len(runs) > 1:
            merged["metrics_std"] = {k: statistics.stdev(r["metrics"][k] for r in runs) for k in sorted(names)}
        merged["seeds"] = [r["seed"] for r in runs]
        merged["seed"] = ", ".join(str(r["seed"]) for r in runs) + (" (mean ± std)" if len(runs) > 1 else "")
        merged["runs"] = [{"seed": r["seed"], "result": str(s.output), "stage": str(s.folder),
                           "metrics": r["metrics"]} for r, s in zip(runs, done)]
        path = Path(results_root) / raw.get("results", "results/{dataset}/{method}.json").format(
            dataset=dataset, method=method)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=2) + "\n")
        written.append(path)
    return written


def status_lines(stages: list[Stage], skipped: dict[str, str]) -> list[str]:
    lines = []
    for s in stages:
        rec = s.record()
        wall = f"{rec['wall_time_s']} s" if "wall_time_s" in rec else ""
        log = f" log: {rec['log']}" if s.status() == "failed" else ""
        lines.append(f"{s.status():11s} {s.label:42s} {wall:>10s}  {s.folder}{log}")
    lines += [f"{'not run':11s} {d}: {why}" for d, why in skipped.items()]
    return lines
