"""`xmgie run --spec experiments/tables/table2.yaml`: a table as a resumable pipeline of stages.

Per dataset whose data is present:
    identity     E_id (`xmgie identity train`)            when the dataset has identity labels
    attributes   AA classifier (`xmgie attributes train`) when it has attributes
    mask         the learned mask predictor (`xmgie mask train`) when the spec says `learned_masks: true`
    expander     the instruction expander (`xmgie expander train`) when a method reads its output
    base         `xmgie fit` of the trained editor the fine-tuned methods start from (once per dataset: the
                 budget's `base`; none where the budget's train config starts from pretrained weights)
    generator    `xmgie fit` per method and seed           (the spec's config, or the method's recipe in
                                                            xmgie/methods; needs E_id for IE, the expander;
                                                            a fine-tuned method also the base: init_from)
    baseline     `xmgie baseline train` per GAN baseline and seed
    derive       `xmgie baseline derive` (PFB-Diff, MGIE + latent blending) per seed from its source method's generator
    evaluate     `xmgie evaluate` per method and seed      (needs its checkpoint, E_id, the classifier, the mask
                                                            predictor; the spec's `evaluate` settings: a regime)
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
from pathlib import Path
from typing import Any

import yaml

from xmgie.errors import UserError
from xmgie.pipeline.stage import EDITORS, Stage

TRAIN_CONFIG = "experiments/train.yaml"
FINETUNE_CONFIG = "experiments/finetune.yaml"
BASE = "base"  # the method name of the shared base editor's generator stage


def _key(stage: Stage, repo: Path) -> str:
    """What the stage reads: its command, the settings in its config files (parsed: a comment or a re-wrapped line
    keeps the key) and the keys of the stages it needs."""
    settings = {f: yaml.safe_load((repo / f).read_text()) for f in stage.files}
    blob = json.dumps({"kind": stage.kind, "dataset": stage.dataset, "method": stage.method, "seed": stage.seed,
                       "argv": stage.argv, "files": settings, "needs": [s.key for s in stage.needs]},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


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
    from xmgie.evaluation.tables import read_spec

    raw = read_spec(repo / spec_path)  # an absolute spec_path stays as it is
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
    in xmgie/methods; None when neither exists (its cells stay "missing")."""
    from xmgie.methods.recipe import Recipe
    from xmgie.methods.registry import METHODS

    entry = entry if isinstance(entry, dict) else {"name": entry}
    config = entry.get("config")
    if config:
        return Recipe("fit", configs=tuple([config] if isinstance(config, str) else config),
                      finetune=bool(entry.get("finetune", True)))
    return METHODS.get(entry["name"])


def dataset_stages(raw: dict, dataset: str, root: str | None, budget: dict, n_ids: int, n_attrs: int) -> list[Stage]:
    """identity, attributes, the mask predictor (a spec with `learned_masks: true`), the expander, then per runnable
    method and seed its checkpoint stage + evaluate (with the spec's `evaluate` settings after the budget's)."""
    from xmgie.evaluation.config import EvaluateStageConfig
    from xmgie.stage_config import to_argv

    data = ["--data-root", root] if root else []
    out: list[Stage] = []
    identity = attributes = expander = masks = None
    evaluate_args = [*budget.get("evaluate", []), *to_argv(EvaluateStageConfig, raw.get("evaluate") or {},
                                                           f"{raw.get('name', 'the spec')}: evaluate")]
    if n_ids > 0:
        identity = Stage("identity", dataset, "", 0, ["identity", "train", "--dataset", dataset, *data,
                                                      *budget.get("identity", [])])
        out.append(identity)
    if n_attrs > 0:
        attributes = Stage("attributes", dataset, "", 0, ["attributes", "train", "--dataset", dataset, *data,
                                                          *budget.get("attributes", [])])
        out.append(attributes)
    if raw.get("learned_masks"):  # the editors are given the learned predictor's masks (`--mask auto --mask-net`)
        masks = Stage("mask", dataset, "", 0, ["mask", "train", "--dataset", dataset, *data, *budget.get("mask", [])])
        out.append(masks)
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
                stage = Stage("derive", dataset, name, seed, ["baseline", "derive", "--method", name,
                                                              *budget.get("derive", [])], [source])
            checkpoints[(name, seed)] = stage
            ev = Stage("evaluate", dataset, name, seed, ["evaluate", "--dataset", dataset, *data, "--name", name,
                                                        "--seed", str(seed), *evaluate_args],
                       [stage] + [s for s in (identity, attributes, masks) if s])
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
        if s.kind in ("identity", "attributes", "mask", "expander", "baseline"):
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
            masks = next((n for n in s.needs if n.kind == "mask"), None)
            s.argv += ["--mask", "auto", "--mask-net", str(masks.output)] if masks else []


