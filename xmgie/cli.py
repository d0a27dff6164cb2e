"""The `xmgie` command.

    xmgie fit|validate|test --config experiments/...yaml ...   LightningCLI (YAML-driven training)
    xmgie edit --ckpt C --image I [I ...] --prompt P [--mask auto|anywhere|M] [--out O]   (or --prompts FILE)
    xmgie evaluate --ckpt C [--dataset D] [--split test]     results/<dataset>/<method>.json
    xmgie table --spec experiments/tables/table1.yaml           results/table1.{md,csv,tex}
    xmgie run --spec experiments/tables/table2.yaml [--budget cpu] [--datasets shapes] [--status]
    xmgie weights status|fetch|verify [NAME ...]                 the pretrained backbones
    xmgie weights random-ip2p --out DIR [--size ip2p-mini]      a random folder in the InstructPix2Pix layout
    xmgie data preview --dataset shapes [--root R] --out grid.png
    xmgie data fixture --dataset cub --root cub-fixture            a miniature tree in the official layout
    xmgie data fetch --dataset cub [--root data/cub] [--extras]    the official archives, checked and unpacked
    xmgie data verify --dataset cub [--root data/cub]              which parts are there; does the loader read it
    xmgie data masks --root data/triplets --ckpt C --out M      predicted masks for triplets without any
    xmgie identity train --dataset shapes --out runs/shapes/identity/encoder.pt
    xmgie expander train --dataset shapes --out runs/shapes/expander/expander.pt   the instruction expander
    xmgie expander expand --expander M --image I --prompt P                    its expressive instruction
    xmgie attributes train --dataset shapes --out runs/shapes/attributes/classifier.pt
    xmgie mask train --dataset shapes --out runs/shapes/mask/mask_net.pt   a learned edit-mask predictor
    xmgie baseline train --method sisgan --dataset shapes --out runs/shapes/sisgan/baseline.ckpt   Table 1's GANs
    xmgie baseline derive --method pfb_diff --from <mgie ckpt> --out runs/shapes/pfb_diff/baseline.ckpt
    xmgie export --ckpt C --out DIR [--results R]      a folder to share: safetensors + config.json + model card
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from xmgie.errors import UserError
from xmgie.evaluation.config import EvaluateStageConfig
from xmgie.stage_config import add_config_arguments, config_from, field_docs, flag
from xmgie.stages import STAGE_COMMANDS, mask_settings, trust_files

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
TRUST_HELP = ("unpickle the checkpoint (and --expander) fully, as older versions did: only for files you made yourself "
              "(by default only tensors and plain data are read, so nothing in a file can run)")


def _export(args: argparse.Namespace) -> None:
    from xmgie.export import export_editor

    trust_files(args)
    print(export_editor(args.ckpt, args.out, args.results))


def _mask_arguments(p: argparse.ArgumentParser) -> None:
    """The automatic mask's settings (Watch Your Steps' relevance map; DiffEdit's averaging), as `xmgie evaluate`
    declares them."""
    docs = field_docs(EvaluateStageConfig)
    for f in dataclasses.fields(EvaluateStageConfig):
        if f.name.startswith("mask_"):
            p.add_argument(flag(f), type=str if f.default is None else type(f.default), default=f.default,
                           help=docs[f.name])


def _edit(args: argparse.Namespace) -> None:
    import numpy as np

    from xmgie.edit_jobs import plan
    from xmgie.inference import EditPipeline, EditRequest, default_device, read_image, read_mask, save_image

    trust_files(args)
    jobs = plan(args.image, args.prompt, args.prompts, args.mask, args.out, args.save_mask)
    pipe = EditPipeline.from_checkpoint(args.ckpt, device=args.device or default_device(), expander=args.expander,
                                        bf16=args.bf16, masks=mask_settings(args))
    how = ("given with --instruction" if args.instruction is not None
           else f"expanded by {args.expander}" if args.expander
           else "the prompt itself: no instruction expander given (--expander)")
    off = [m.strip() for m in (args.modules_off or "").split(",") if m.strip()]
    pipe.check_modules(off)  # before any photo is read
    requests = (EditRequest(read_image(j.image), j.prompt, j.mask if isinstance(j.mask, str) else read_mask(j.mask),
                            args.instruction)
                for j in jobs)  # read batch by batch: results already written stay if a later photo fails
    for job, result in zip(jobs, pipe.edit(requests, steps=args.steps, guidance_text=args.guidance_text,
                                           guidance_image=args.guidance_image, seed=args.seed,
                                           num_beams=args.beams, batch_size=args.batch_size, modules_off=off)):
        for path, image in ((job.out, result.image), (job.mask_out, result.mask)):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                save_image(image, path)
        share = np.asarray(result.mask).mean() / 255
        print(f"{job.image}: instruction: {result.instruction!r} ({how}); mask {result.mask_source}, "
              f"{share:.1%} of the photo", file=sys.stderr)
        print(job.out)


def _demo(args: argparse.Namespace) -> None:
    from xmgie.demo import launch

    trust_files(args)
    if args.host not in ("127.0.0.1", "localhost", "::1") or args.share:
        print(f"xmgie demo: serving beyond this machine ({'a public link' if args.share else args.host}): anyone "
              f"who reaches it can run edits", file=sys.stderr)
    launch(args.ckpt, args.expander, args.device, args.host, args.port, args.share, masks=mask_settings(args))


def _table(args: argparse.Namespace) -> None:
    from xmgie.evaluation.tables import render

    written = render(args.spec, args.out, args.root)
    print(written["md"].read_text())
    print("\n".join(str(p) for p in written.values()))


def _run(args: argparse.Namespace) -> None:
    from xmgie.pipeline import run_table

    roots = {}
    for item in args.data_root or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise UserError(f"--data-root takes DATASET=PATH, got {item!r}")
        roots[name] = path
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    run_table(args.spec, args.budget, args.datasets, roots, args.status, args.work, args.results, stage=args.stage,
              executor=args.executor, sbatch=args.sbatch, jobs=args.jobs, entry=main)


def _weights(args: argparse.Namespace) -> None:
    from xmgie import weights

    names = args.names or list(weights.REGISTRY)
    for name in names:
        weights.spec(name)  # unknown names fail before anything is done
    if args.weights_command == "fetch":
        for name in names:
            if weights.spec(name).folder and not args.names:
                continue  # the ip2p folder only when asked for by name
            print(f"{name}: {weights.fetch(name)}")
        return
    rows = [r for r in weights.status() if r["name"] in names]
    for r in rows:
        sha = f" sha256 {r['sha256']}" if r["sha256"] else ""
        print(f"{r['name']:10s} {r['state']:8s} pin={r['pin']:6s} {r['path']}{sha}  [{r['used_by']}]")
        if "error" in r:
            print(f"  {r['error']}")
    print(f"weights folder: {weights.weights_dir()} (set ${weights.ENV} to move it)")
    if args.weights_command == "verify":
        bad = [r["name"] for r in rows if r["state"] != "present"]
        if bad:
            raise UserError(f"not verified: {', '.join(bad)} (missing or wrong sha256; see above)")


def _random_ip2p(args: argparse.Namespace) -> None:
    from xmgie.models.ip2p_folder import write_ip2p_folder

    try:
        print(write_ip2p_folder(args.out, args.size, args.seed))
    except ValueError as err:
        raise UserError(str(err)) from None


def _data_preview(args: argparse.Namespace) -> None:
    from data_modules.registry import build_datamodule
    from xmgie.visualize import save_grid

    from data_modules.base import EditSample

    try:
        dm = build_datamodule(args.dataset, root=args.root, resolution=args.resolution)
    except KeyError as err:
        raise UserError(str(err.args[0])) from None
    ds = dm.dataset(args.split, paired=args.paired)
    items = [ds[i] for i in range(min(args.n, len(ds)))]
    samples = [s for s in items if isinstance(s, EditSample)]
    for s in items:
        if not isinstance(s, EditSample):
            print(f"skipped: {s.reason}", file=sys.stderr)
    rows = [[s.source, s.mask, s.target] for s in samples]
    path = save_grid(rows, args.out, captions=[f"P: {s.prompt}" for s in samples], header=["source", "mask", "target"])
    for s in samples:
        print(f"P: {s.prompt}\n   I: {s.instruction}")
    print(path)


def _data_masks(args: argparse.Namespace) -> None:
    from xmgie.inference import default_device
    from xmgie.mask_files import write_predicted_masks

    trust_files(args)
    print(json.dumps(write_predicted_masks(args.dataset, args.root, args.ckpt, args.out, mask_settings(args),
                                           args.batch_size, args.device or default_device(), args.seed)))


def _data_fixture(args: argparse.Namespace) -> None:
    from data_modules.fixtures import WRITERS, write_fixture

    if args.dataset not in WRITERS:
        raise UserError(f"no fixture for dataset {args.dataset!r}: one of {', '.join(WRITERS)}")
    root = args.root or f"{args.dataset}-fixture"
    if Path(root).exists() and any(Path(root).iterdir()):
        raise UserError(f"{root} exists and is not empty: choose another --root")
    print(write_fixture(args.dataset, root, n_images=args.n))


def _data_fetch(args: argparse.Namespace) -> None:
    from data_modules.fetch import fetch

    root = Path(args.root or f"data/{args.dataset}")
    manual = fetch(args.dataset, root, extras=args.extras, mirror=args.mirror, keep=args.keep_archives,
                   log=lambda line: print(line, file=sys.stderr))
    if manual:
        raise UserError(" ".join(manual))
    print(root)


def _data_verify(args: argparse.Namespace) -> None:
    from data_modules.fetch import loader_report, verify

    root = Path(args.root or f"data/{args.dataset}")
    states = verify(args.dataset, root)
    for s in states:
        kind = "required" if s.part.required else "extra"
        print(f"{s.state:<8} {kind:<8} {s.part.file:<30} {s.detail}")
    print(f"loads    {loader_report(args.dataset, root)}")  # the loader's own reading of the tree is the last word
    bad = [s.part.file for s in states if s.state == "corrupt" or (s.part.required and s.state != "present")]
    if bad:
        raise UserError(f"{args.dataset} at {root}: {', '.join(bad)} not as published; `xmgie data fetch "
                        f"--dataset {args.dataset} --root {root}` fetches what a script can")


def _expander_expand(args: argparse.Namespace) -> None:
    from xmgie.conditioning.expander import load_expander
    from xmgie.inference import image_to_tensor, read_image

    try:
        model = load_expander(args.expander)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None
    image = image_to_tensor(read_image(args.image), model.cfg.image_size)
    print(model.generate(image, [args.prompt], num_beams=args.beams,
                         no_repeat_ngram_size=3 if args.beams > 1 else 0, zero_prefix=args.without_image)[0])


def _add_stage_command(group, name: str, cls: type, run) -> argparse.ArgumentParser:
    summary = (cls.__doc__ or "").split("\n\n")[0].split(": ", 1)[-1].replace("\n", " ")
    parser = group.add_parser(name, help=summary, description=summary)
    add_config_arguments(parser, cls)
    parser.set_defaults(func=lambda args: run(config_from(cls, args)))  # the fields; the rest is ignored
    return parser


def _file_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xmgie", description="xMGIE: instruction-guided image editing",
        epilog="training: xmgie fit|validate|test --config experiments/train.yaml --data experiments/data/shapes.yaml "
               "(LightningCLI; see xmgie fit --help)")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("edit", help="edit photos with a trained checkpoint (one model load for all of them)")
    e.add_argument("--ckpt", required=True, help="generator checkpoint (runs/<dataset>/<name>/checkpoints/*.ckpt) "
                   "or exported folder (xmgie export)")
    e.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    e.add_argument("--image", nargs="+", help="photos: files, folders (their images) or globs ('photos/*.jpg')")
    e.add_argument("--prompt", help="the edit instruction for every photo, e.g. 'make the circle red'")
    e.add_argument("--prompts", help="a file of IMAGE<TAB>PROMPT lines (instead of --image and --prompt)")
    e.add_argument("--mask", help="'auto' (default): predicted from where the instruction changes the editor's "
                   "prediction; 'anywhere': the whole photo may change; a single-channel image (white = may "
                   "change), or a folder of them named like the photos")
    e.add_argument("--save-mask", help="write the mask each edit used (a file; a folder for several photos)")
    e.add_argument("--out", help="output PNG (default: <image>_edited.png); a folder for several photos")
    _mask_arguments(e)
    e.add_argument("--batch-size", type=int, default=8, help="photos edited together")
    e.add_argument("--steps", type=int, help="DDIM steps (default: the checkpoint's)")
    e.add_argument("--guidance-text", type=float, help="text guidance scale s_T")
    e.add_argument("--guidance-image", type=float, help="image guidance scale s_I")
    e.add_argument("--seed", type=int, default=0, help="noise seed (each photo gets this seed's noise)")
    e.add_argument("--expander", "--mllm", help="instruction expander file (make train-expander): expands the prompt "
                   "first")
    e.add_argument("--beams", type=int, default=1, help="beam search width of the expansion (1: greedy)")
    e.add_argument("--instruction", help="the instruction the generator reads, as given (no expansion of the prompt)")
    e.add_argument("--modules-off", help="comma-separated modules of the checkpoint not to use: pfb,cam,ie,gb")
    e.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    e.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPUs; the full-scale ip2p model)")
    e.set_defaults(func=_edit)

    d = sub.add_parser("demo", help="a local web page to edit photos (make demo; needs the demo extra)")
    d.add_argument("--ckpt", required=True, help="generator checkpoint or exported folder")
    d.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    d.add_argument("--expander", "--mllm", help="instruction expander file: the page shows (and lets you change) "
                   "its expansion")
    d.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    d.add_argument("--host", default="127.0.0.1", help="address to serve on (default: this machine only)")
    d.add_argument("--port", type=int, default=7860)
    d.add_argument("--share", action="store_true", help="also open a public Gradio link (off by default)")
    _mask_arguments(d)
    d.set_defaults(func=_demo)


    x = sub.add_parser("export", help="a trained editor as a folder to share: safetensors, config.json, model card")
    x.add_argument("--ckpt", required=True, help="generator or baseline checkpoint (or an exported folder)")
    x.add_argument("--out", required=True, help="folder to write (must not exist or be empty)")
    x.add_argument("--results", help="a result JSON of `xmgie evaluate` whose figures go into the model card")
    x.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    x.set_defaults(func=_export)

    t = sub.add_parser("table", help="render a paper table (Markdown, CSV, LaTeX) from result JSONs")
    t.add_argument("--spec", required=True, help="e.g. experiments/tables/table1.yaml")
    t.add_argument("--root", default=".", help="folder the spec's result paths are relative to")
    t.add_argument("--out", help="output path without extension (default: <root>/results/<spec name>)")
    t.set_defaults(func=_table)

    r = sub.add_parser("run", help="a paper table as a resumable pipeline: train, evaluate, aggregate, render")
    r.add_argument("--spec", required=True, help="experiments/tables/table1.yaml or table2.yaml")
    r.add_argument("--budget", default="auto", help="smoke | cpu | paper (experiments/budgets.yaml); auto: paper "
                   "with a GPU, else cpu")
    r.add_argument("--datasets", nargs="+", help="only these datasets of the spec")
    r.add_argument("--data-root", action="append", metavar="DATASET=PATH", help="where a dataset lives "
                   "(default data/<dataset>); repeatable")
    r.add_argument("--status", action="store_true", help="list every stage (done/running/failed/…) and exit")
    r.add_argument("--work", default="runs/pipeline", help="folder of the stages")
    r.add_argument("--results", default=".", help="where results/ (result files, tables, plots) is written")
    r.add_argument("--executor", default="local", choices=("local", "submitit-local", "slurm"), help="local: "
                   "processes here; slurm: each stage not done as a submitit job (after the jobs of its needs, "
                   "the budget's resources), then a job that renders the table; submitit-local: the same jobs as "
                   "local subprocesses")
    r.add_argument("--sbatch", help="extra #SBATCH options for every job, e.g. '--partition=gpu --account=lab'")
    r.add_argument("--stage", help="run this stage alone; its needs must be done")
    r.add_argument("--jobs", type=int, help="stages run at once by the local executor, the cores shared among "
                   "them (default: the budget's `jobs`, else 1)")
    r.set_defaults(func=_run)

    w = sub.add_parser("weights", help="the pretrained backbones in $XMGIE_WEIGHTS")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    for command, text in (("status", "which files are present, missing or mismatched"),
                          ("fetch", "download (needs network); checks the sha256"),
                          ("verify", "exit 2 unless every named file is present with the right sha256")):
        wc = wsub.add_parser(command, help=text)
        wc.add_argument("names", nargs="*", help="registry names (default: all)")
        wc.set_defaults(func=_weights)
    wr = wsub.add_parser("random-ip2p", help="write a randomly initialised folder in the InstructPix2Pix layout "
                         "(tries the latent path offline; its edits are noise)")
    wr.add_argument("--out", required=True, help="folder to write")
    wr.add_argument("--size", default="ip2p-mini", help="ip2p-mini (MBs, CPU) or ip2p (SD 1.5 shape, 4.3 GB)")
    wr.add_argument("--seed", type=int, default=0)
    wr.set_defaults(func=_random_ip2p)

    groups = {"baseline": "Table 1's GAN baselines and PFB-Diff (xmgie/methods/)",
              "attributes": "the attribute classifier behind AA",
              "expander": "the instruction expander (visual-aware LM, §3.2; also called as `xmgie mllm`)",
              "identity": "the identity encoder E_id of the IE module",
              "mask": "the learned edit-mask predictor (--mask auto --mask-net FILE)"}
    subparsers = {}
    for command, text in groups.items():
        aliases = ["mllm"] if command == "expander" else []  # the paper's name for it, the command's old name
        subparsers[command] = sub.add_parser(command, aliases=aliases, help=text).add_subparsers(
            dest=f"{command}_command", required=True)
    for c in STAGE_COMMANDS:  # `xmgie evaluate`, or a subcommand of its group (`xmgie identity train`)
        group = sub if len(c.words) == 1 else subparsers[c.words[0]]
        _add_stage_command(group, c.words[-1], c.config, c.run)

    d = sub.add_parser("data", help="look at a dataset")
    dsub = d.add_subparsers(dest="data_command", required=True)
    pv = dsub.add_parser("preview", help="write a grid of source | mask | target with the prompts")
    pv.add_argument("--dataset", default="shapes")
    pv.add_argument("--root", help="where a dataset on disk lives (default data/<dataset>)")
    pv.add_argument("--split", default="train", choices=("train", "val", "test"))
    pv.add_argument("--paired", action="store_true", help="caption datasets: the test protocol's pairs")
    pv.add_argument("--n", type=int, default=8)
    pv.add_argument("--resolution", type=int, default=64)
    pv.add_argument("--out", default="grid.png")
    pv.set_defaults(func=_data_preview)
    dm = dsub.add_parser("masks", help="predict edit masks for triplets that have none (then train with "
                         "--data.init_args.masks=OUT)")
    dm.add_argument("--dataset", default="triplets")
    dm.add_argument("--root", help="where the dataset lives (default data/<dataset>)")
    dm.add_argument("--ckpt", required=True, help="a trained diffusion editor (checkpoint or exported folder)")
    dm.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    dm.add_argument("--out", required=True, help="folder for <key>.png masks and masks.json")
    dm.add_argument("--batch-size", type=int, default=16)
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--device", help="cpu, cuda … (default: cuda when available)")
    _mask_arguments(dm)
    dm.set_defaults(func=_data_masks)
    fe = dsub.add_parser("fetch", help="download a dataset's official files, check and unpack them into the "
                         "layout its loader reads (resumable; exit 2 with the manual steps where a script cannot)")
    fe.add_argument("--dataset", required=True, help="cub, flowers, coco, celebahq, cars, deepfashion, triplets")
    fe.add_argument("--root", help="where the dataset goes (default data/<dataset>)")
    fe.add_argument("--extras", action="store_true", help="the optional parts too (segmentations, captions)")
    fe.add_argument("--mirror", help="a base URL serving the same file names (an institute's copy)")
    fe.add_argument("--keep-archives", action="store_true", help="keep the archives in <root>/.downloads")
    fe.set_defaults(func=_data_fetch)
    ve = dsub.add_parser("verify", help="which parts of a dataset are present, missing, partial or corrupt, "
                         "and whether its loader reads the tree")
    ve.add_argument("--dataset", required=True)
    ve.add_argument("--root", help="where the dataset lives (default data/<dataset>)")
    ve.set_defaults(func=_data_verify)
    fx = dsub.add_parser("fixture", help="write a miniature tree of a dataset in its official layout")
    fx.add_argument("--dataset", required=True, help="cub, flowers, celebahq, cars, deepfashion, coco, triplets …")
    fx.add_argument("--root", help="folder to create (default <dataset>-fixture)")
    fx.add_argument("--n", type=int, default=12, help="images (at least 6)")
    fx.set_defaults(func=_data_fixture)

    mx = subparsers["expander"].add_parser("expand", help="print the expressive instruction for an image and a prompt")
    mx.add_argument("--expander", "--mllm", required=True)
    mx.add_argument("--image", required=True)
    mx.add_argument("--prompt", required=True)
    mx.add_argument("--beams", type=int, default=1)
    mx.add_argument("--without-image", action="store_true", help="zero the visual prefix (the ablation)")
    mx.set_defaults(func=_expander_expand)

    return p


def main(argv: list[str] | None = None) -> None:
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
            from xmgie.training.lightning_cli import run_lightning_cli

            run_lightning_cli(None if from_command_line else argv)  # None: LightningCLI reads sys.argv itself
            return
        args = _file_parser().parse_args(argv)
        args.func(args)
    except UserError as err:
        print(f"xmgie: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
