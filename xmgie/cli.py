"""The `xmgie` command.

    xmgie fit|validate|test --config experiments/...yaml ...   LightningCLI (YAML-driven training)
    xmgie edit --ckpt C --image I --prompt P [--mask M] [--out O]
    xmgie evaluate --ckpt C [--dataset D] [--split test]
    xmgie data preview --dataset shapes --out grid.png
    xmgie identity train --dataset shapes --out runs/shapes/identity/encoder.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xmgie.errors import UserError

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def _edit(args: argparse.Namespace) -> None:
    from xmgie.inference import EditPipeline, read_image, read_mask

    image = read_image(args.image)
    mask = read_mask(args.mask) if args.mask else None
    pipe = EditPipeline.from_checkpoint(args.ckpt)
    print(f"instruction: {args.prompt!r} (the prompt itself: no instruction expander given)", file=sys.stderr)
    result = pipe(image, args.prompt, mask, steps=args.steps, guidance_text=args.guidance_text,
                  guidance_image=args.guidance_image, seed=args.seed)
    out = Path(args.out or Path(args.image).with_name(Path(args.image).stem + "_edited.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    result.save(out)
    print(out)


def _evaluate(args: argparse.Namespace) -> None:
    from xmgie.evaluation.evaluate import evaluate_checkpoint, write_result

    result = evaluate_checkpoint(args.ckpt, args.dataset, args.split, limit=args.limit, steps=args.steps,
                                 batch_size=args.batch_size, seed=args.seed, guidance_text=args.guidance_text,
                                 guidance_image=args.guidance_image, identity_weights=args.identity)
    out = args.out or Path("results") / result["dataset"] / f"{args.name}.json"
    result["written_to"] = str(write_result(result, out))
    print(json.dumps(result))


def _data_preview(args: argparse.Namespace) -> None:
    from data_modules.base import build_datamodule
    from xmgie.visualize import save_grid

    try:
        dm = build_datamodule(args.dataset, resolution=args.resolution)
    except KeyError as err:
        raise UserError(str(err.args[0])) from None
    ds = dm.dataset(args.split)
    samples = [s for s in (ds[i] for i in range(min(args.n, len(ds)))) if s is not None]
    rows = [[s.source, s.mask, s.target] for s in samples]
    path = save_grid(rows, args.out, captions=[f"P: {s.prompt}" for s in samples], header=["source", "mask", "target"])
    for s in samples:
        print(f"P: {s.prompt}\n   I: {s.instruction}")
    print(path)


def _identity_train(args: argparse.Namespace) -> None:
    from xmgie.training.identity_module import train_identity_encoder

    print(json.dumps(train_identity_encoder(args.dataset, args.out, steps=args.steps, batch_size=args.batch_size,
                                            resolution=args.resolution, dim=args.dim, loss=args.loss,
                                            seed=args.seed)))


def _file_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xmgie", description="xMGIE: instruction-guided image editing",
        epilog="training: xmgie fit|validate|test --config experiments/train.yaml --data experiments/data/shapes.yaml "
               "(LightningCLI; see xmgie fit --help)")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("edit", help="edit one image with a trained checkpoint")
    e.add_argument("--ckpt", required=True, help="generator checkpoint (runs/<dataset>/<name>/checkpoints/*.ckpt)")
    e.add_argument("--image", required=True)
    e.add_argument("--prompt", required=True, help="the edit instruction, e.g. 'make the circle red'")
    e.add_argument("--mask", help="single-channel image, white where the edit may change the image")
    e.add_argument("--out", help="output PNG (default: <image>_edited.png)")
    e.add_argument("--steps", type=int, help="DDIM steps (default: the checkpoint's)")
    e.add_argument("--guidance-text", type=float, help="text guidance scale s_T")
    e.add_argument("--guidance-image", type=float, help="image guidance scale s_I")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=_edit)

    v = sub.add_parser("evaluate", help="edit a dataset split and report PSNR/SSIM (JSON)")
    v.add_argument("--ckpt", required=True)
    v.add_argument("--dataset", help="dataset name (default: the one the checkpoint was trained on)")
    v.add_argument("--split", default="test", choices=("train", "val", "test"))
    v.add_argument("--limit", type=int, help="edit at most this many images")
    v.add_argument("--steps", type=int, help="DDIM steps (default: the checkpoint's)")
    v.add_argument("--guidance-text", type=float)
    v.add_argument("--guidance-image", type=float)
    v.add_argument("--batch-size", type=int, default=32)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--identity", help="identity encoder weights (make train-identity): adds identity_cosine")
    v.add_argument("--name", default="xmgie", help="method name: results/<dataset>/<name>.json")
    v.add_argument("--out", help="output JSON path (overrides --name)")
    v.set_defaults(func=_evaluate)

    d = sub.add_parser("data", help="look at a dataset")
    dsub = d.add_subparsers(dest="data_command", required=True)
    pv = dsub.add_parser("preview", help="write a grid of source | mask | target with the prompts")
    pv.add_argument("--dataset", default="shapes")
    pv.add_argument("--split", default="train", choices=("train", "val", "test"))
    pv.add_argument("--n", type=int, default=8)
    pv.add_argument("--resolution", type=int, default=64)
    pv.add_argument("--out", default="grid.png")
    pv.set_defaults(func=_data_preview)

    i = sub.add_parser("identity", help="the identity encoder E_id of the IE module")
    isub = i.add_subparsers(dest="identity_command", required=True)
    it = isub.add_parser("train", help="train the small E_id CNN on a dataset's identity labels; prints JSON")
    it.add_argument("--dataset", default="shapes")
    it.add_argument("--out", required=True, help="weights file to write (a .json summary is written beside it)")
    it.add_argument("--steps", type=int, default=1000)
    it.add_argument("--batch-size", type=int, default=32)
    it.add_argument("--resolution", type=int, help="default: the dataset's")
    it.add_argument("--dim", type=int, default=64, help="embedding size D_id")
    it.add_argument("--loss", default="softmax", choices=("softmax", "arcface"))
    it.add_argument("--seed", type=int, default=0)
    it.set_defaults(func=_identity_train)
    return p


def main(argv: list[str] | None = None) -> None:
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
            from xmgie.training.cli import run_lightning_cli

            run_lightning_cli(None if from_command_line else argv)  # None: LightningCLI reads sys.argv itself
            return
        args = _file_parser().parse_args(argv)
        args.func(args)
    except UserError as err:
        print(f"xmgie: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
