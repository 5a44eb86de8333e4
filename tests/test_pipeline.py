"""``fusionlog run`` end to end on the shipped data (HDFS event sequences -> BGL_2k lines), with the LLM played by
a TEST DOUBLE of the OpenAI-compatible endpoint (its labels are a keyword rule, never reported as the LLM's):

- submitted to a local Ray cluster with ``ray job submit`` (outputs and the job's progress lines checked);
- killed with SIGKILL in the middle of the distillation, run again: the same scores as the uninterrupted run;
- ``fusionlog detect`` scores a later slice of archives with the finished run, no retraining.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.fake_openai import FakeOpenAIEndpoint

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KEYWORDS = re.compile(r"error|fail|fatal|exception|interrupt|panic|severe", re.I)
USERS = re.compile(r"error loading|login", re.I)  # failures the double reads as one user's problem


def keyword_double(body: dict) -> str | dict:
    """The test double's rule: anomalous iff the window's own events (after the examples) name a failure; an event
    question (one token, logprobs) gets P(yes) 0.9 or 0.1 by the same rule, and a triage question 0.8 for one
    kind: a user's problem where the event names loading or a login, else the system's where it names a failure."""
    user = body["messages"][-1]["content"]
    window = user.rsplit("<<<LOGS", 1)[-1].split("LOGS>>>")[0]  # the data, not the question after it
    if body.get("logprobs") and "Answer A, B or C" in user:  # the triage: whose failure is it?
        lead = {"a fault": "system", "a problem": "user", "routine": "routine"}
        place = {next(k for w, k in lead.items() if text.startswith(w)): letter for letter, text in
                 re.findall(r"^([ABC]): (.*)$", body["messages"][0]["content"], flags=re.M)}
        kind = "user" if USERS.search(window) else "system" if KEYWORDS.search(window) else "routine"
        tops = [{"token": place[k], "logprob": math.log(0.8 if k == kind else 0.1)} for k in place]
        return {"message": {"role": "assistant", "content": place[kind]}, "finish_reason": "length",
                "logprobs": {"content": [{"token": place[kind], "logprob": math.log(0.8), "top_logprobs": tops}]}}
    if body.get("logprobs"):
        p = 0.9 if KEYWORDS.search(window) else 0.1
        tops = [{"token": "yes", "logprob": math.log(p)}, {"token": "no", "logprob": math.log(1 - p)}]
        return {"message": {"role": "assistant", "content": "yes" if p > 0.5 else "no"}, "finish_reason": "length",
                "logprobs": {"content": [{"token": "yes", "logprob": tops[0]["logprob"], "top_logprobs": tops}]}}
    label = "anomalous" if KEYWORDS.search(window) else "normal"
    return json.dumps({"label": label, "confidence": 0.9, "reason": "test double keyword rule"})


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def double() -> Iterator[FakeOpenAIEndpoint]:
    with FakeOpenAIEndpoint(keyword_double) as fake:
        yield fake


def experiment(tmp: Path, url: str, bgl: str = "data/loghub_2k/BGL/BGL_2k.log.gz",
               resources: dict[str, float] | None = None) -> Path:
    """HDFS -> BGL with small training budgets and the test double as the LLM endpoint; ``resources``: the custom
    Ray resources each Train worker claims (where it runs)."""
    exp = {
        "name": "e2e_hdfs_to_bgl",
        "description": "HDFS sequences -> BGL_2k lines (test budgets)",
        "datasets": {
            "HDFS": {"kind": "sequences", "templates": "data/HDFS/HDFS_templates.csv",
                     "sequences": ["data/HDFS/hdfs_train.gz:normal", "data/HDFS/hdfs_test_abnormal.gz:anomalous:0.2"]},
            "BGL": {"kind": "raw", "inputs": [bgl], "window": "line"},
        },
        "sources": ["HDFS"], "target": "BGL",
        "train": {"steps": 40, "eval_every": 20, **({"resources": resources} if resources else {})},
        # test budgets: a 40-step model is barely calibrated; no class guard, so that both rounds fine-tune
        "distill": {"rounds": 2, "finetune_steps": 20, "epsilon": 0.7, "floor": 0.6, "max_class_ratio": None},
        "run": {"compare": ["fusionlog-vote", "fusionlog-paper", "generallog", "no-router", "llm-only", "llm-events",
                            "fusionlog-distilled"], "top_windows": 5},
        "llm": {"backend": "openai", "base_url": url, "model": "test-double", "retries": 1, "backoff_s": 0.01,
                "event_triage_prompt": "event_triage_v2"},  # off by default: on here, so that it is tested end to end
    }
    path = tmp / "e2e.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = sys.executable
    return env


def _scores(run: Path) -> dict[str, float]:
    """Scores by window, the window named by its file relative to data/ (a submitted job reads Ray's copy)."""
    t = pq.read_table(run / "scores" / "system=BGL")
    return {w.split("/data/", 1)[-1]: s for w, s in zip(t["window_id"].to_pylist(), t["score"].to_pylist(),
                                                          strict=True)}


def _state(kind: str, dash: int, env: dict[str, str]) -> list[dict]:
    """``ray list <kind>`` of the running cluster, from Ray's state API (every entry, with its node)."""
    out = subprocess.run([str(BIN / "ray"), "list", kind, f"--address=http://127.0.0.1:{dash}", "--detail",
                          "--format=json", "--limit=10000"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def submitted(double: FakeOpenAIEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The uninterrupted run, submitted with `ray job submit` to a Ray cluster of two nodes on 127.0.0.1: the head
    (1 CPU) and a second node (1 CPU, its own resource ``node2``, which the Train workers claim). Yields the run and
    the job's logs; Ray's state API (nodes, actors, tasks) as the job left it is in ``state.json`` beside the run."""
    tmp = tmp_path_factory.mktemp("job")
    exp = experiment(tmp, double.url, resources={"node2": 1})
    run = tmp / "run"
    gcs, dash = _port(), _port()
    # Ray >= 2.59 requires a token for a cluster's APIs (job submission included): one random token per cluster
    env = _env() | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    temp = Path("/tmp") / f"fusionlog-ray-{os.getpid()}"  # a short path: Ray's socket names have a length limit
    ray = str(BIN / "ray")

    def ports() -> list[str]:  # two nodes on one host: each its own agent ports (the defaults would collide)
        return [f"--dashboard-agent-listen-port={_port()}", f"--dashboard-agent-grpc-port={_port()}",
                f"--runtime-env-agent-port={_port()}", f"--metrics-export-port={_port()}"]

    try:
        subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
                        "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=1",
                        "--include-dashboard=true", f"--temp-dir={temp}", "--disable-usage-stats", *ports()],
                       check=True, env=env, capture_output=True, timeout=180)
        # its own temp dir, as on its own machine: two nodes in one session dir share the job's unpacked
        # working_dir, and the job's driver then fails to load torch ("Intel oneMKL FATAL ERROR")
        subprocess.run([ray, "start", f"--address=127.0.0.1:{gcs}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                        '--resources={"node2": 1}', f"--temp-dir={temp}-2", "--disable-usage-stats", *ports()],
                       check=True, env=env, capture_output=True, timeout=180)
        job = subprocess.run([ray, "job", "submit", f"--address=http://127.0.0.1:{dash}",
                              "--working-dir", str(REPO), "--", "python", "-m", "jobs.transfer", str(exp),
                              "--run", str(run)], env=env, capture_output=True, text=True, timeout=1500, cwd=REPO)
        state = {k: _state(k, dash, env) for k in ("nodes", "actors", "tasks")} if job.returncode == 0 else {}
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    (tmp / "state.json").write_text(json.dumps(state, default=str))
    yield run, job.stdout


def art_general(run: Path) -> str:
    """The general-branch model's directory of a finished run (the distillation starts from it)."""
    return json.loads((run / "stages" / "train.json").read_text())["summary"]["general"]


def test_ray_job_submit_runs_the_transfer(submitted: tuple[Path, str]) -> None:
    run, logs = submitted
    assert "succeeded" in logs.lower()
    for stage in ("ingest", "events", "embed", "route", "judge", "train", "distill", "detect", "evaluate", "report"):
        assert f"[{stage}] done" in logs and (run / "stages" / f"{stage}.json").exists()  # progress in the job logs
    assert "distill round 1" in logs
    scores = pq.read_table(run / "scores" / "system=BGL").to_pandas()
    windows = pq.read_table(run / "windows" / "system=BGL").num_rows
    assert len(scores) == windows == 2000 and scores["score"].between(0, 1).all()
    assert set(scores["route"]) <= {"general", "proprietary"} and set(scores["scorer"]) == {"vote"}
    # the default, the fusion learned on the labeled sources: HDFS's windows are sessions, BGL_2k's lines, so what
    # HDFS's labels teach does not apply and the vote decides (docs/transfer.md); HDFS's events are not triaged
    learned = json.loads((run / "modes" / "fusionlog" / "notes.json").read_text())
    assert learned["combiner"] is None and learned["family"] == "streams" and "(streams)" in learned["why_vote"]
    assert learned["flagged"] == int(scores["label"].sum()) and learned["applies"]["severity"]
    assert not learned["applies"]["rarity"] and not learned["applies"]["invariants"]  # one-line windows
    assert not (run / "event_triage" / "system=HDFS").exists() or \
        pq.read_table(run / "event_triage" / "system=HDFS").num_rows == 0
    hit = scores[scores["label"] == 1]
    assert len(hit) and all(len(f) > 0 for f in hit["flagged_by"]) and all(len(e) > 0 for e in hit["evidence"])
    judged = pq.read_table(run / "event_scores" / "system=BGL").to_pandas()  # one question per event, calibrated
    events = pq.read_table(run / "events" / "system=BGL").num_rows
    assert len(judged) == events and judged["score"].notna().all() and (judged["kind"] == "verdict").all()
    source = pq.read_table(run / "event_scores" / "system=HDFS").num_rows  # the small model's llm event feature
    assert source == pq.read_table(run / "events" / "system=HDFS").num_rows
    # the failures (upper group) triaged in all 6 orders (the default); those the double reads as a user's problem
    # leave the LLM view
    tri = pq.read_table(run / "event_triage" / "system=BGL").to_pandas().set_index("template_id")
    assert set(tri.index) == set(judged.template_id[judged.score >= 0.5]) and (tri.orders == 6).all()
    texts = pq.read_table(run / "events" / "system=BGL").to_pandas().set_index("template_id").template
    users = {t for t in tri.index if USERS.search(texts[t])}
    assert users and all(tri.system_share[t] < 0.5 for t in users)
    assert all(tri.system_share[t] > 0.5 for t in tri.index if t not in users and KEYWORDS.search(texts[t]))
    view = pq.read_table(run / "modes" / "llm-events" / "scores" / "system=BGL").to_pandas()
    wins = pq.read_table(run / "windows" / "system=BGL").to_pandas().set_index("window_id").template_ids
    held = view.window_id.map(lambda w: wins[w][0]).isin(users)
    assert held.any() and (view.score[held] < 0.5).all() and not view.label[held].any()
    model = json.loads((Path(art_general(run)) / "model.json").read_text())["model"]
    assert model["event_features"] == ["rarity", "llm"]  # severity left out: HDFS, the source, logs no levels
    notes = json.loads((run / "modes" / "fusionlog-vote" / "notes.json").read_text())  # the vote's label-free estimates
    vote = pq.read_table(run / "modes" / "fusionlog-vote" / "scores" / "system=BGL").to_pandas()
    assert notes["candidates"] == ["llm-events", "severity"]  # no rarity, no pca: one-line windows
    assert notes["checked"]["general-only"]["polarity"] in ("agrees", "inverted", "no agreement")
    est = notes["estimates"]
    assert 0 < est["prior"] < 0.5 and est["views"]["llm-events"]["polarity"] == "agrees"
    assert "llm-events" in notes["voting"] and (vote["label"] == 1).sum() == notes["flagged"]
    flags = sum(pq.read_table(run / "modes" / v / "scores" / "system=BGL").to_pandas().set_index("window_id")["label"]
                for v in notes["voting"])
    assert ((flags * 2 > len(notes["voting"])) == vote.set_index("window_id")["label"].astype(bool)).all()
    assert notes["view_flags"] == {v: int(pq.read_table(run / "modes" / v / "scores" / "system=BGL")["label"].to_numpy()
                                          .sum()) for v in notes["voting"]}  # each voting view's own flags
    rounds = json.loads((run / "distill" / "BGL" / "rounds.json").read_text())
    assert 1 <= len(rounds) <= 2 and rounds[0]["labeled"] > 0 and rounds[0]["kept"] > 0  # guard off, ε 0.7
    assert rounds[-1]["kept_total"] == sum(r["kept"] for r in rounds)
    assert all(0.0 <= r["clean_ratio"] <= 1.0 for r in rounds)
    ev = json.loads((run / "eval" / "run.json").read_text())
    assert set(ev["methods"]) >= {"fusionlog", "fusionlog-paper", "generallog", "no-router", "llm-only", "llm-events",
                                  "general-only", "all-anomalous", "rarity", "severity", "severity-top",
                                  "pca", "invariants", "keywords"}  # baselines: every run
    assert all(m["cut"] for m in ev["methods"].values()) and "voting" in ev["methods"]["fusionlog-vote"]["notes"]
    assert "why_vote" in ev["methods"]["fusionlog"]["notes"]
    assert all(0 <= m["all"]["f1"] <= m["all"]["best_f1"] + 1e-9 for m in ev["methods"].values())  # oracle ceiling
    assert ev["labeled"] == 2000 and len(ev["rounds"]) == len(rounds)  # F1 per round: evaluate's, not distill's
    assert all(0.0 <= r["f1_labeled"] <= 1.0 for r in ev["rounds"]) and all(r["f1_labeled"] is None for r in rounds)
    views = ev["views_rounds"]  # the distillation on the agreeing views: ε reaches the floor, the pool never shrinks
    assert [r["round"] for r in views] == [1, 2] and views[-1]["epsilon"] == pytest.approx(0.6)
    totals = [sum(r["kept_total"]) for r in views]
    assert totals[0] > 0 and totals[1] >= totals[0] and all(min(r["kept_total"]) > 0 for r in views)  # both classes
    assert all(0.0 <= r["kept_precision"] <= 1.0 for r in views) and views[0]["model_dir"] != art_general(run)
    assert (views[1]["model_dir"] != views[0]["model_dir"]) == (totals[1] > totals[0])  # nothing new: same model
    kept = pq.read_table(run / "distill" / "BGL" / "views_kept").to_pandas()
    assert len(kept) == totals[-1] and set(kept["round"]) <= {1, 2} and 1 in set(kept["round"])
    fused = vote.set_index("window_id")["label"]
    assert (kept.set_index("window_id")["label"] == fused.loc[kept["window_id"]]).all()  # the views' agreed label
    dist = pq.read_table(run / "modes" / "fusionlog-distilled" / "scores" / "system=BGL").to_pandas()
    dnotes = json.loads((run / "modes" / "fusionlog-distilled" / "notes.json").read_text())
    assert dnotes["fusion_flagged"] == notes["flagged"] and dnotes["flagged"] == dist["label"].sum()  # its cut: about
    flagged = dist["label"] == 1  # as many as the fusion flags, as a threshold (identical windows, one label)
    assert flagged.all() or not flagged.any() or dist["score"][flagged].min() > dist["score"][~flagged].max()
    llm = pq.read_table(run / "llm_labels" / "system=BGL").to_pandas()
    assert set(llm["purpose"]) == {"generallog", "llm-only"} and (llm["purpose"] == "llm-only").sum() == 2000
    gl = pq.read_table(run / "modes" / "generallog" / "scores" / "system=BGL").to_pandas()
    prop = gl[gl.route == "proprietary"]
    assert len(prop) and (prop.scorer == "llm").all() and (gl[gl.route == "general"].scorer == "small_model").all()
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    html = (run / "report" / "report.html").read_text()
    assert "fusionlog" in json.dumps(metrics) and "plot-xsim" in html and "plot-rounds" in html
    assert "Distillation on the agreeing views, round 2" in html
    assert "flagged by " in html and "the vote of the label-free views decides here" in html  # why, in the report


def test_the_job_ran_on_both_nodes(submitted: tuple[Path, str]) -> None:
    """Ray's state API, as the job left it: every Train worker (the general model's and each fine-tune's) on the
    second node, which alone has ``node2``, and the Train controller that drives them on the head, beside the
    job's driver; the other work (embedding actor, route tasks) where Ray put it. That the scores equal a local
    run's: ``test_killed_run_resumes_to_the_same_scores`` (a plain ``fusionlog run`` of the same experiment on a
    one-node local Ray)."""
    run, _ = submitted
    state = json.loads((run.parent / "state.json").read_text())
    nodes = {n["node_id"]: n for n in state["nodes"] if n["state"] == "ALIVE"}
    second = {i for i, n in nodes.items() if "node2" in n["resources_total"]}
    head = {i for i, n in nodes.items() if n["is_head_node"]}
    assert len(nodes) == 2 and len(second) == len(head) == 1 and second != head, nodes
    where = {n: sorted({a["class_name"] for a in state["actors"] if a["node_id"] == n}) for n in nodes}
    trainers = [a for a in state["actors"] if a["class_name"] == "RayTrainWorker"]
    rounds = len(json.loads((run / "distill" / "BGL" / "rounds.json").read_text()))
    assert len(trainers) >= 1 + rounds, where  # the general model, then the fine-tunes
    assert {a["node_id"] for a in trainers} == second, where
    # a placement-group bundle's share of the custom resource (``node2_group_<pg>``): the claim that put them there
    assert all(any(k.startswith("node2_group") for k in a["required_resources"]) for a in trainers)
    controllers = {a["node_id"] for a in state["actors"] if a["class_name"] == "TrainController"}
    assert controllers == head, where
    ran = [t for t in state["tasks"] if t.get("node_id") and t["func_or_class_name"].startswith("RayTrainWorker.")]
    assert ran and {t["node_id"] for t in ran} == second  # the training steps themselves


def test_killed_run_resumes_to_the_same_scores(submitted: tuple[Path, str], double: FakeOpenAIEndpoint,
                                               tmp_path: Path) -> None:
    reference, _ = submitted
    exp = experiment(tmp_path, double.url)
    run = tmp_path / "run"
    cmd = [str(BIN / "fusionlog"), "run", str(exp), "--run", str(run)]
    proc = subprocess.Popen(cmd, env=_env(), cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    # kill in the middle of the distill stage: after its first fine-tuned model is written, before its marker
    while not (run / "models" / "BGL" / "distill-s0-r1" / "model.json").exists():
        assert proc.poll() is None, "the run ended before the distill stage"
        assert time.monotonic() < deadline
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (run / "stages" / "distill.json").exists() and (run / "stages" / "train.json").exists()
    again = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    for stage in ("ingest", "events", "embed", "route", "judge", "train"):
        assert f"[{stage}] up to date (skipped)" in again.stdout
    assert "[distill] running" in again.stdout
    a, b = _scores(reference), _scores(run)
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-6 for k in a)
    assert (run / "report" / "report.html").exists() and not list(run.rglob(".tmp-*"))

    # `fusionlog label` into the run, then the run again from detect: one schema and one writer of llm_labels
    # (it used to write a second schema that broke detect); its rows join those of the run's own purposes
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "llm.yaml").write_text(yaml.safe_dump({"backend": "openai", "base_url": double.url,
                                                   "model": "test-double", "retries": 1, "backoff_s": 0.01}))
    lab = subprocess.run([str(BIN / "fusionlog"), "label", "--system", "BGL", "--run", str(run), "--kb", "HDFS",
                          "--conf", str(conf)], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert lab.returncode == 0, lab.stdout[-3000:] + lab.stderr[-3000:]
    again = subprocess.run([*cmd, "--from", "detect"], env=_env(), cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    llm = pq.read_table(run / "llm_labels" / "system=BGL").to_pandas()
    assert set(llm["purpose"]) == {"generallog", "llm-only", "label"} and (llm["purpose"] == "label").sum() == 2000
    c = _scores(run)
    assert c.keys() == b.keys() and all(abs(c[k] - b[k]) < 1e-6 for k in b)


def test_detect_scores_new_archives_without_retraining(submitted: tuple[Path, str], tmp_path: Path) -> None:
    run, _ = submitted
    lines = gzip.open(REPO / "data/loghub_2k/BGL/BGL_2k.log.gz", "rt").read().splitlines()
    later = tmp_path / "bgl-later.log"
    later.write_text("\n".join(lines[1500:]) + "\nnot a BGL line at all\n")
    models_before = sorted(p.name for p in (run / "models" / "BGL").iterdir())
    out = tmp_path / "later"
    res = subprocess.run([str(BIN / "fusionlog"), "detect", str(later), "--run", str(run), "--out", str(out)],
                         env=_env(), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    scores = pq.read_table(out / "scores" / "system=BGL").to_pandas()
    assert len(scores) == 500 and scores["score"].between(0, 1).all()
    q = pq.read_table(out / "quarantine" / "system=BGL").to_pandas()
    assert len(q) == 1 and q["line_no"].tolist() == [501]  # the bad line is quarantined with its line number
    assert sorted(p.name for p in (run / "models" / "BGL").iterdir()) == models_before  # nothing retrained
    tau = json.loads((run / "stats" / "route_BGL.json").read_text())["tau"]
    assert json.loads((out / "stats" / "route_BGL.json").read_text())["tau"] == pytest.approx(tau)
    assert (out / "report" / "report.html").exists()
    judged = pq.read_table(out / "event_scores" / "system=BGL").to_pandas()  # the new archives' events, judged
    assert len(judged) == pq.read_table(out / "events" / "system=BGL").num_rows and "judge:" in res.stdout
