"""Edit latency with the instruction expander on this machine; writes benchmarks/results/expander_cpu.json.

    python benchmarks/bench_expander.py [--expander runs/shapes/expander/expander.pt] [--repeats 10]

One `shapes` test image, batch 1, the default generator (experiments/train.yaml; random weights cost the same as
trained ones): the expansion (greedy, and beam search with 3 beams), 32 DDIM steps, and the two together. With a
trained expander file the expansion stops where the model ends the instruction; without one a random expander
of the default size runs to the maximum length (the worst case), which the JSON says.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed in turn within every repeat (so machine noise hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(t), 4) for name, t in times.items()}


def main() -> None:
    from data_modules.base import EditDataModule
    from data_modules.synthetic import make_sample
    from xmgie.conditioning.expander import ExpanderConfig, InstructionExpander, load_expander
    from xmgie.conditioning.vocabulary import CompactBPE
    from xmgie.training.lightning_cli import XMGIECLI
    from xmgie.training.lit_generator import XMGIEModule

    p = argparse.ArgumentParser()
    p.add_argument("--expander", default=str(REPO / "runs/shapes/expander/expander.pt"))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "expander_cpu.json"))
    args = p.parse_args()

    torch.manual_seed(0)
    cli = XMGIECLI(XMGIEModule, EditDataModule, subclass_mode_data=True, run=False,
                   args=["--config", str(REPO / "experiments/train.yaml"), "--data",
                         str(REPO / "experiments/data/shapes.yaml"), "--trainer.logger=false"])
    module = cli.model.eval()
    trained = Path(args.expander).is_file()
    if trained:
        expander = load_expander(args.expander)
    else:
        sample_texts = [t for i in range(500) for t in (make_sample(i, 32).prompt, make_sample(i, 32).instruction)]
        expander = InstructionExpander(ExpanderConfig(), CompactBPE.build(sample_texts)).eval()
    sample = make_sample(20_000_000, 32)  # the first test image
    src, mask = sample.source[None], sample.mask[None]
    batch = {"source": src, "mask": mask, "prompt": [sample.prompt], "instruction": [sample.instruction]}
    expanded = expander.generate(src, [sample.prompt])[0]

    with torch.no_grad():
        results = interleaved_medians({
            "expand_greedy_s": lambda: expander.generate(src, [sample.prompt]),
            "expand_beam3_s": lambda: expander.generate(src, [sample.prompt], num_beams=3, no_repeat_ngram_size=3),
            "ddim32_edit_s": lambda: module.edit(batch, steps=32, texts=[expanded]),
            "expand_greedy_then_ddim32_s": lambda: module.edit(batch, steps=32,
                                                               texts=expander.generate(src, [sample.prompt])),
        }, args.repeats)
    out = {"benchmark": "expander", "expander": args.expander if trained else "random weights, default size (worst "
           "case: decodes to the maximum length)", "prompt": sample.prompt, "expanded": expanded,
           "expander_parameters": sum(p.numel() for p in expander.parameters()), "repeats": args.repeats,
           "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "python": platform.python_version()}, "results_median": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
