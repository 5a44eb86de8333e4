"""LLM event judgment: one yes/no question per distinct event of a system ("does this event report a failure or
an abnormal condition?"), answered in one token and read as P(yes) from the answer token's log-probabilities
(:meth:`~fusionlog.llm.client.ChatClient.yes_probability`), not parsed from generated text.

An event is a template of the system's ``events/`` table with its most frequent level and component (a few
hundred per system at most, far fewer calls than windows). The question names no system's events: the prompt is
the same for every system, and the log text is quoted data. The default prompt (``prompts/event_content_v1.txt``)
shows the message and its component but not its level: the level is the ``severity`` view's evidence, and views
that read the same field err together, which a majority of views cannot outvote (``event_v1`` shows it too;
docs/llm.md has the measurement).

**Calibration without labels.** A small model's P(yes) carries a bias of its own: with the default 1.5B model
every event's P(yes) lies in 0.63–0.94 on BGL_2k and HDFS, routine ones included. Two calibrations are computed:

* ``score_cf``, *contextual calibration* (Zhao et al., ICML 2021): the question is also asked about content-free
  events (``N/A``, an empty message, ``[MASK]``, level and component ``unknown``); with their mean P(yes) ``p_cf``
  an event scores ``sigmoid(logit(p) - logit(p_cf))``, 0.5 for an event that moves the model no more than an empty
  one. Measured (``event_v1``): ``p_cf`` is 0.77 (BGL) and 0.74 (HDFS), below nearly every real event's P(yes),
  so at 0.5 it flags 70 % of BGL's lines and every HDFS block: kept as a diagnostic, not used.
* ``score``, *batch calibration by a two-component mixture* (the one used): a Gaussian mixture
  (scikit-learn) over the logits of the system's own events; an event's score is its posterior of belonging to
  the upper component. It assumes only that a system's events fall into a routine group and a fault group that
  the model tells apart, not how many are faults (centering on the batch mean would assume half). With fewer
  than :data:`MIN_MIXTURE` events it falls back to ``score_cf``.

**Two framings** (``counter``: e.g. ``event_routine_content_v1``, "is it part of routine, normal operation?"): every
event is asked both questions and scored :func:`both_framings` before the calibration; a bias towards "yes" that
both answers share cancels. It doubles the calls; docs/llm.md has what it gains.

**Interpretations** (LEI; ``llm.event_interpret_prompt``, :mod:`fusionlog.llm.interpret`): each event is first
explained in plain language by the LLM, and a question with an ``{interpretation}`` field (``event_interpreted_v1``)
reads it, quoted as data, beside the message. One generation per event more; docs/llm.md has what it gains.

Answers are cached per (model, prompt version, event text, interpretation) in the run's LLM cache. An endpoint that
returns no log-probabilities still answers (1/0 from its generated word): the stats say so and the stage warns
loudly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from fusionlog.llm.cache import ProbabilityCache
from fusionlog.llm.client import Answer, ChatClient
from fusionlog.llm.prompt import Prompt, clean, load_prompt

CONTENT_FREE = ("N/A", "", "[MASK]")
EVENT_SCORES = pa.schema([("template_id", pa.int64()), ("p_yes", pa.float64()), ("score", pa.float64()),
                          ("score_cf", pa.float64()), ("kind", pa.string()), ("p_counter", pa.float64())])
EPS = 1e-4
MIN_MIXTURE = 6  # events needed to fit the two-component mixture (else: contextual calibration)
UNDECIDED = (0.25, 0.75)  # mixture posteriors near the view's cut (0.5): counted and reported, not used
TIES_WARN = 0.75  # warn when fewer distinct P(yes) than this share of the answered events (coarse log-odds)


@dataclass(frozen=True)
class Event:
    template_id: int
    template: str
    level: str = "unknown"
    component: str = "unknown"
    interpretation: str | None = None  # the LLM's plain-language reading (fusionlog.llm.interpret), when asked


def events_of(run: Path, system: str) -> list[Event]:
    """The system's events (``events/``): template, most frequent level and component."""
    from fusionlog.events import read_events

    t = read_events(run, system)
    out = []
    for tid, text, level, comp in zip(*(t[c].to_pylist() for c in ("template_id", "template", "level",
                                                                   "component_mix")), strict=True):
        mix = json.loads(comp or "{}")
        out.append(Event(int(tid), text, level or "unknown", max(mix, key=mix.get) if mix else "unknown"))
    return out


def messages(prompt: Prompt, system: str, ev: Event) -> list[dict]:
    """The chat messages asking about one event (its text, and an interpretation where the prompt shows one, as
    quoted JSON strings: data)."""
    user = prompt.user.format(system=system, level=clean(ev.level, 40), component=clean(ev.component, 80),
                              event=json.dumps(clean(ev.template, 400)),
                              interpretation=json.dumps(clean(ev.interpretation or "(none)", 400)))
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": user}]


def logit(p: float) -> float:
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def mixture_scores(p: list[float]) -> list[float] | None:
    """Each probability's posterior of the upper of two Gaussian components fitted to the logits (None: too few
    or all alike), made monotone in the probability.

    With unequal variances the posterior's log-odds is a parabola in the logit: it rises between the two means,
    but beyond its vertex, on the far side of the narrower component, it turns back, so that the wider component
    wins again in that tail. Read as is, a system whose fault events form the wider group would score its *least*
    alarming events as faults (measured on HealthApp_2k and HPC_2k: docs/pipeline.md). The logits are held at the
    vertex before the posterior is read, which keeps every event between the means as fitted and gives the tail
    the posterior at the vertex."""
    import numpy as np
    from sklearn.mixture import GaussianMixture

    z = np.array([logit(x) for x in p])[:, None]
    if len(z) < MIN_MIXTURE or float(np.ptp(z)) < 1e-6:
        return None
    gm = GaussianMixture(2, random_state=0).fit(z)
    upper = int(np.argmax(gm.means_.ravel()))
    (m_lo, m_up), (v_lo, v_up) = gm.means_.ravel()[[1 - upper, upper]], gm.covariances_.ravel()[[1 - upper, upper]]
    if v_up != v_lo:
        vertex = (m_lo * v_up - m_up * v_lo) / (v_up - v_lo)  # where the log-odds' slope is 0
        z = np.minimum(z, vertex) if v_up < v_lo else np.maximum(z, vertex)
    return gm.predict_proba(z)[:, upper].tolist()


def both_framings(p: float, q: float | None) -> float:
    """P(yes) to "is it a failure?" (``p``) and to the opposite framing "is it routine?" (``q``) as one probability,
    ``sigmoid((logit(p) - logit(q)) / 2)``: a bias towards "yes" that both answers share cancels (``q`` None: ``p``)."""
    if q is None:
        return p
    z = (logit(p) - logit(q)) / 2
    return 1.0 / (1.0 + math.exp(-z))


def calibrate(p: float, p_cf: float) -> float:
    """``sigmoid(logit(p) - logit(p_cf))`` (contextual calibration; see the module docstring)."""
    p, p_cf = min(max(p, EPS), 1 - EPS), min(max(p_cf, EPS), 1 - EPS)
    z = math.log(p / (1 - p)) - math.log(p_cf / (1 - p_cf))
    return 1.0 / (1.0 + math.exp(-z))


@dataclass
class JudgeStats:
    events: int = 0
    asked: int = 0  # questions about the events sent to the LLM (the rest came from the cache): the LLM calls
    cache_hits: int = 0
    abstained: int = 0  # events without a probability (score null: no evidence either way)
    no_logprobs: int = 0  # answers without log-probabilities (read from the generated word: 1 or 0)
    p_cf: float = 0.5  # the content-free prior
    calibration: str = "mixture"  # mixture | content-free (too few events for the mixture)
    distinct: int = 0  # distinct P(yes) (4 decimals) among the answered events: ties mean coarse log-odds
    undecided: int = 0  # events whose mixture posterior lies within UNDECIDED: the view's cut hangs on them
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.events} events, {self.asked} asked, {self.cache_hits} from cache, {self.abstained} "
                f"abstained, calibration {self.calibration} (content-free P(yes) {self.p_cf:.3f}), "
                f"{self.distinct} distinct P(yes), {self.undecided} undecided (posterior {UNDECIDED[0]}-"
                f"{UNDECIDED[1]}), {self.seconds:.1f} s")

    def warning(self) -> str | None:
        if self.no_logprobs:
            return (f"the LLM endpoint returned no log-probabilities for {self.no_logprobs} of {self.asked} event "
                    "questions: their scores are the generated word (yes 1 / no 0), not a probability; serve a "
                    "model whose OpenAI endpoint returns logprobs (vLLM does) for ranked event scores")
        if self.events and self.abstained / self.events >= 0.2:
            return f"the LLM abstained on {self.abstained} of {self.events} events: they score the prior"
        answered = self.events - self.abstained
        if answered >= MIN_MIXTURE and self.distinct < TIES_WARN * answered:
            return (f"the LLM's P(yes) ties: {self.distinct} distinct values among {answered} events, so the "
                    "mixture's cut moves tied events together; a bfloat16 engine's log-odds come in steps of "
                    "about 0.04 (serve.dtype float32 resolves them: docs/llm.md)")
        return None


def event_key(system: str, ev: Event) -> str:
    """The cache key of a question about ``ev`` (its interpretation included when it has one)."""
    parts = [system, ev.level, ev.component, ev.template, *([ev.interpretation] if ev.interpretation else [])]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def judge(client: ChatClient | Callable[[], ChatClient], system: str, events: list[Event],
          prompt: str = "event_content_v1", cache: ProbabilityCache | None = None, concurrency: int = 8,
          progress: Callable[[int, int], None] | None = None, model: str | None = None,
          counter: str | None = None) -> tuple[pa.Table, JudgeStats]:
    """P(yes) of every event and its calibrated score (:data:`EVENT_SCORES` rows), and the stats. ``client`` may be
    a function that connects (e.g. starts the LLM service): it is called only when the cache lacks an answer, and
    then ``model`` (the cache key's model name) must be given. ``counter``: a prompt asking the opposite question
    ("is it routine?"); each event is then asked both and scored by :func:`both_framings` (twice the calls)."""
    from fusionlog.llm.label import describe

    prompts = [load_prompt(prompt), *([load_prompt(counter)] if counter else [])]
    if not any("{interpretation}" in p.user for p in prompts):  # not shown: not in the cache key either
        events = [dataclasses.replace(ev, interpretation=None) for ev in events]
    desc = describe(system)
    st = JudgeStats(events=len(events))
    t0 = time.perf_counter()
    free = [Event(-1 - i, text) for i, text in enumerate(CONTENT_FREE)]
    items = [(k, ev) for k in range(len(prompts)) for ev in [*free, *events]]
    got: dict[tuple[int, int], tuple[float | None, str]] = {}
    todo = []
    if isinstance(client, ChatClient):
        model = client.model
    elif model is None:
        raise ValueError("judge: give the model name with a client factory")
    for k, ev in items:
        hit = cache.get(model, prompts[k].version, event_key(desc, ev)) if cache else None
        if hit is not None:
            got[k, ev.template_id] = hit
            st.cache_hits += ev.template_id >= 0
        else:
            todo.append((k, ev))

    conn = (client if isinstance(client, ChatClient) else client()) if todo else None

    def ask(item: tuple[int, Event]) -> tuple[int, Event, Answer]:
        assert conn is not None
        k, ev = item
        return k, ev, conn.yes_probability(messages(prompts[k], desc, ev))

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for k, ev, ans in pool.map(ask, todo):
            done += 1
            st.asked += ev.template_id >= 0
            if ans.value is None:
                got[k, ev.template_id] = (None, ans.kind)
                if len(st.problems) < 10:
                    st.problems.append(f"event {ev.template_id} ({prompts[k].version}): {ans.reason}")
            else:
                got[k, ev.template_id] = (ans.value, ans.kind)
                st.no_logprobs += ans.kind == "no-logprobs" and ev.template_id >= 0
                if cache:
                    cache.put(model, prompts[k].version, event_key(desc, ev), ans.value, ans.kind)
            if progress:
                progress(done, len(todo))

    def combined(tid: int) -> float | None:
        p = got[0, tid][0]
        return None if p is None else both_framings(p, got[1, tid][0] if counter else None)

    cf = [v for e in free if (v := combined(e.template_id)) is not None]
    st.p_cf = sum(cf) / len(cf) if cf else 0.5
    value = {ev.template_id: combined(ev.template_id) for ev in events}
    st.abstained = sum(v is None for v in value.values())
    answered = [t for t, v in value.items() if v is not None]
    mixed = mixture_scores([value[t] for t in answered])  # type: ignore[misc]
    st.calibration = "mixture" if mixed is not None else "content-free"
    st.distinct = len({round(float(value[t]), 4) for t in answered})  # type: ignore[arg-type]
    st.undecided = sum(UNDECIDED[0] < x < UNDECIDED[1] for x in mixed or [])
    upper = dict(zip(answered, mixed or [], strict=False))
    rows = {k: [] for k in EVENT_SCORES.names}
    for ev in events:
        v = value[ev.template_id]
        cal = None if v is None else calibrate(v, st.p_cf)
        rows["template_id"].append(ev.template_id)
        rows["p_yes"].append(got[0, ev.template_id][0])
        rows["score"].append(upper.get(ev.template_id, cal))
        rows["score_cf"].append(cal)
        rows["kind"].append(got[0, ev.template_id][1])
        rows["p_counter"].append(got[1, ev.template_id][0] if counter else None)
    st.seconds = time.perf_counter() - t0
    return pa.table(rows, schema=EVENT_SCORES), st


def write_event_scores(run: Path, system: str, table: pa.Table) -> None:
    """``event_scores/system=<system>/`` (atomically)."""
    from fusionlog.rundir import write_partition

    write_partition(run, "event_scores", system, table.cast(EVENT_SCORES))


def read_event_scores(run: Path, system: str) -> dict[int, float | None]:
    """template id -> calibrated event score (None: the LLM abstained); an error says to run the judge stage."""
    from fusionlog.rundir import read_partition

    t = read_partition(run, "event_scores", system, ["template_id", "score"],
                       "run the judge stage (`fusionlog run`) with a method that needs it")
    return dict(zip(t["template_id"].to_pylist(), t["score"].to_pylist(), strict=True))
