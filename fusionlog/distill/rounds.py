"""Collaborative distillation on the proprietary windows (FusionLog): the LLM (with RAG) proposes labels, the
small model keeps those it agrees with confidently, is fine-tuned on them (Ray Train), and the kept windows
join the knowledge base. The target's labels are never read here (``evaluate_f1`` is a reporting hook)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusionlog.config import DistillConfig, ExperimentConfig, LLMConfig
from fusionlog.console import Reporter
from fusionlog.llm.cache import VerdictCache
from fusionlog.llm.client import ChatClient, Verdict
from fusionlog.llm.knowledge import KnowledgeBase, distilled_rows, source_kb
from fusionlog.llm.label import Labeler, Window, describe
from fusionlog.model.score import WindowScorer
from fusionlog.rundir import llm_cache_file
from fusionlog.train.data import Pseudo
from fusionlog.train.stage import train


@dataclass
class DistillResult:
    model_dir: str  # the distilled small model
    rounds: list[dict]  # one entry per round (fusionlog.contracts.ROUND_KEYS)
    kept: dict[str, int] = field(default_factory=dict)  # window_id -> pseudo-label
    first_verdicts: dict[str, Verdict | None] = field(default_factory=dict)  # round 1 (sources-only KB)
    seconds: float = 0.0


def labeler(client: ChatClient, cfg: LLMConfig, target: str, kb: KnowledgeBase, cache: VerdictCache) -> Labeler:
    """The labeler of ``target``'s windows with few-shot examples from ``kb``."""
    return Labeler.from_config(client, cfg, describe(target), cache=cache, kb=kb)


def keep(windows: list[Window], verdicts: dict[str, Verdict | None], p: np.ndarray, epsilon: float,
         threshold: float) -> tuple[dict[str, int], int, int]:
    """(kept window -> label, labeled, agreed): keep the LLM's label where the small model agrees with it and
    its confidence max(p, 1 - p) >= epsilon."""
    kept: dict[str, int] = {}
    labeled = agreed = 0
    for w, pi in zip(windows, p, strict=True):
        v = verdicts[w.window_id]
        if v is None:  # abstained: nothing to agree with
            continue
        labeled += 1
        llm = int(v.label == "anomalous")
        if llm == int(pi >= threshold):
            agreed += 1
            if max(pi, 1.0 - pi) >= epsilon:
                kept[w.window_id] = llm
    return kept, labeled, agreed


def balance(new: dict[str, int], kept: dict[str, int], ratio: float | None) -> dict[str, int]:
    """Cap each class of the cumulative pool (``kept`` + ``new``) at ``ratio`` x the other class (the earliest
    candidates in window order stay); with no window of one class, nothing new is kept."""
    if ratio is None:
        return new
    have = [sum(1 for v in kept.values() if v == c) for c in (0, 1)]
    cand = [sorted(w for w, v in new.items() if v == c) for c in (0, 1)]
    total = [have[c] + len(cand[c]) for c in (0, 1)]
    out: dict[str, int] = {}
    for c in (0, 1):
        cap = int(ratio * total[1 - c]) - have[c]
        out |= {w: c for w in cand[c][:max(cap, 0)]}
    return out


def distill(run: Path, exp: ExperimentConfig, client: ChatClient, llm: LLMConfig, base_model: Path,
            windows: list[Window], seed: int = 0, progress: Callable[[str], None] | None = None,
            reporter: Reporter | None = None, warn: Callable[[str | None], None] | None = None) -> DistillResult:
    """Rounds r = 1..R over the proprietary ``windows``, starting from the general-branch model ``base_model``;
    ``progress`` gets a line per step, ``reporter`` the progress bars, ``warn`` a high abstention rate."""
    say = progress or (lambda _m: None)
    reporter = reporter or Reporter()
    cfg: DistillConfig = exp.distill
    t0 = time.perf_counter()
    run, target = Path(run), exp.target
    kb = source_kb(run, exp.sources, llm.max_window_chars)
    lab = labeler(client, llm, target, kb, VerdictCache(llm_cache_file(run)))
    by_id = {w.window_id: w for w in windows}
    model_dir, eps = Path(base_model), cfg.epsilon
    res = DistillResult(str(model_dir), [])
    scorer: WindowScorer | None = None
    for r in range(1, cfg.rounds + 1):
        tr = time.perf_counter()
        pool = [w for w in windows if w.window_id not in res.kept]
        say(f"distill round {r}: the LLM labels {len(pool)} proprietary windows (ε = {eps:.3f})")
        with reporter.bar(f"distill round {r}: LLM calls") as tick:
            verdicts, st = lab.label(pool, progress=tick)
        say(f"distill round {r}: LLM: {st.line()}")
        if warn:
            warn(st.warning(llm.abstain_warn_rate))
        if r == 1:
            res.first_verdicts = verdicts
        if scorer is None or scorer.model_dir != model_dir:  # a round that kept nothing leaves the model as is
            scorer = WindowScorer(run, model_dir, [target])
        p = scorer.scores(target, [w.template_ids for w in pool]) if pool else np.zeros(0)
        confident, labeled, agreed = keep(pool, verdicts, p, eps, exp.run.threshold)
        new = balance(confident, res.kept, cfg.max_class_ratio)
        res.kept |= new
        row = {"round": r, "epsilon": eps, "labeled": labeled, "agreed": agreed, "confident": len(confident),
               "kept": len(new), "kept_anomalous": sum(new.values()),
               "kept_total": len(res.kept), "clean_ratio": len(new) / labeled if labeled else 0.0,
               "f1_labeled": None, "llm_calls": st.llm_calls, "cache_hits": st.cache_hits,
               "signatures": st.signatures, "abstained": st.abstained, "abstained_cached": st.abstained_cached,
               "refused": st.refused, "seconds": 0.0}
        grew = len(new) >= max(cfg.min_new, 1)
        if grew:
            ids = sorted(res.kept)
            tcfg = exp.train.model_copy(update={"objective": "meta_align", "steps": cfg.finetune_steps,
                                                "select": "last", "seed": seed})
            say(f"distill round {r}: fine-tune on {len(ids)} kept windows + the sources")
            with reporter.bar(f"distill round {r}: fine-tune (steps)") as tick:
                out = train(run, exp.sources, target, tcfg, exp.model, name=f"distill-s{seed}-r{r}",
                            pseudo=Pseudo(target, [by_id[i].template_ids for i in ids], [res.kept[i] for i in ids]),
                            init_from=model_dir, progress=tick)
            model_dir = Path(out.model_dir)
            kb.add(distilled_rows(target, [by_id[i] for i in new], new, llm.signature, llm.max_window_chars))
        row["model_dir"] = str(model_dir)  # the model after this round (evaluate scores it: f1_labeled)
        row["seconds"] = time.perf_counter() - tr
        res.rounds.append(row)
        say(f"distill round {r}: {labeled} labeled, {agreed} agreed, {len(new)} kept (total {len(res.kept)})")
        if not grew and eps <= cfg.floor:  # the kept pool stopped growing at the lowest ε
            break
        eps = max(cfg.floor, eps * cfg.decay)  # a round that keeps nothing still lowers ε (a static ε stalls)
    res.model_dir, res.seconds = str(model_dir), time.perf_counter() - t0
    return res
