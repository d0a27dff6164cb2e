"""Table 2's regimes (`make ablation REGIME=…`): the parent spec's rows and checkpoints, other evaluations."""
import pytest

from tests.conftest import REPO
from xmgie.errors import UserError
from xmgie.evaluation.tables import load_spec, read_spec
from xmgie.pipeline.budgets import load_budget
from xmgie.pipeline.plan import plan


def _stages(spec: str, tmp_path):
    return {s.label: s for s in plan(spec, load_budget("smoke", REPO), datasets=["shapes"], work=tmp_path)[0]}


@pytest.mark.parametrize("regime,args", [("dilated", ["--mask-dilate", "2"]), ("eroded", ["--mask-dilate", "-1"])])
def test_a_mask_regime_reuses_table2s_checkpoints_and_only_evaluates_anew(tmp_path, regime, args):
    table2 = _stages("experiments/tables/table2.yaml", tmp_path)
    other = _stages(f"experiments/tables/table2_{regime}.yaml", tmp_path)
    assert set(other) <= set(table2) and any(s.method == "mgie_blend" for s in other.values())
    for label, s in other.items():
        same = s.kind != "evaluate"
        assert (s.folder == table2[label].folder) == same, label
        if not same:
            i = s.argv.index("--mask-dilate")
            assert s.argv[i:i + 2] == args
    rows = {m["name"]: m for m in read_spec(REPO / "experiments/tables/table2.yaml")["methods"]}
    for m in read_spec(REPO / f"experiments/tables/table2_{regime}.yaml")["methods"]:  # Table 2's rows, as they are
        assert rows[m["name"]] == m
    assert load_spec(REPO / f"experiments/tables/table2_{regime}.yaml").results.endswith(f"ablation_{regime}/{{method}}.json")


def test_predicted_masks_come_from_a_mask_stage_every_evaluation_needs(tmp_path):
    stages = _stages("experiments/tables/table2_predicted.yaml", tmp_path)
    mask = stages["shapes/mask"]
    assert mask.argv[:2] == ["mask", "train"] and mask.argv[-2:] == ["--out", str(mask.output)]
    for s in stages.values():
        if s.kind == "evaluate":
            assert mask in s.needs
            i = s.argv.index("--mask-net")
            assert s.argv[i - 2:i + 2] == ["--mask", "auto", "--mask-net", str(mask.output)]


def test_a_regimes_wrong_evaluate_setting_is_a_one_line_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"extends: {REPO}/experiments/tables/table2.yaml\nname: bad\nevaluate: {{dilate: 2}}\n")
    with pytest.raises(UserError, match="bad: evaluate: unknown setting"):
        plan(spec, load_budget("smoke", REPO), datasets=["shapes"], work=tmp_path)
