"""Recorded comparison for issue 14: the demo run of commit 9b281b8 (before the method registry), scored again by
the registry's methods from the same upstream artifacts (models, LLM verdicts, routes); scores and metrics equal."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from fusionlog.config import ExperimentConfig, load_llm
from fusionlog.pipeline import Ctx, detect_stage, evaluate_stage
from fusionlog.stages import DistillOut, RunState, TrainOut

src, run = Path(sys.argv[1]), Path("/tmp/eq/run")
old_root = sys.argv[2]  # where the run lived when it was made
shutil.rmtree(run, ignore_errors=True)
shutil.copytree(src, run)
raw = json.loads((run / "experiment.json").read_text())
raw["train"]["objective"] = raw["train"].pop("mode")
raw["evaluate"]["objectives"] = raw["evaluate"].pop("modes")
th = raw["distill"].pop("threshold")
raw["evaluate"].pop("threshold")
raw["run"]["threshold"] = th
exp = ExperimentConfig.model_validate(raw)
def fix(p):
    return p.replace(old_root, str(run)) if isinstance(p, str) else p
tr = json.loads((run / "stages/train.json").read_text())["summary"]
di = json.loads((run / "stages/distill.json").read_text())["summary"]
di = {k: v for k, v in di.items() if k in DistillOut.__dataclass_fields__}
di["model_dir"], di["distilled_model_dir"] = fix(di["model_dir"]), fix(di.get("distilled_model_dir"))
for r in di["rounds"]:
    r["model_dir"] = fix(r.get("model_dir"))
state = RunState(train=TrainOut(fix(tr["general"]), fix(tr.get("no-router"))), distill=DistillOut(**di))
from fusionlog.events import write_events  # noqa: E402 (runs made before the events stage have no events/)

write_events(run, exp.target, {})
ctx = Ctx(run, exp, load_llm(overrides=exp.llm), print, state)
state.detect = detect_stage(ctx)
state.evaluate = evaluate_stage(ctx)
print("methods scored:", state.detect.modes)
worst = 0.0
for m in sorted(p.name for p in (src / "modes").iterdir()):
    a = pq.read_table(src / "modes" / m / "scores").to_pandas().set_index("window_id").sort_index()
    b = pq.read_table(run / "modes" / m / "scores").to_pandas().set_index("window_id").sort_index()
    d = float(np.abs(a["score"].to_numpy() - b["score"].to_numpy()).max())
    same = (a.index.equals(b.index) and (a["label"].to_numpy() == b["label"].to_numpy()).all()
            and (a["scorer"].to_numpy() == b["scorer"].to_numpy()).all())
    worst = max(worst, d)
    print(f"{m:14s} windows {len(a)} max |score diff| {d:.2e} labels/scorers equal {same}")
old = json.loads((src / "eval/run.json").read_text())["methods"]
new = json.loads((run / "eval/run.json").read_text())["methods"]
for m, v in old.items():
    n = new["all-anomalous" if m == "all_anomalous" else m]
    diffs = [abs(v["all"][k] - n["all"][k]) for k in ("precision", "recall", "f1", "pr_auc", "balanced_accuracy")
             if k in v["all"] and v["all"][k] is not None]
    print(f"{m:14s} F1 {v['all']['f1']:.4f} -> {n['all']['f1']:.4f} max metric diff {max(diffs):.2e}")
print("new: rarity F1", round(new["rarity"]["all"]["f1"], 4), "PR-AUC", round(new["rarity"]["all"]["pr_auc"], 4))
print("WORST", worst)
