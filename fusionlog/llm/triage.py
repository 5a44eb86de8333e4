"""Triage of the events the LLM judges failures: whose failure is it? One multiple-choice question per event
(``prompts/event_triage_v1.txt``): A, B or C among three kinds, *a fault of the system itself*, *a problem of one
user or client that the system reports while working normally* (a bad request, a failed login, a missing program
the user supplied, an error of the user's own job) and *routine operation*, answered in one token and read from the
answer token's log-probabilities (:meth:`~fusionlog.llm.client.ChatClient.choice_probabilities`).

A platform team's anomalies are the system's own faults; a user's failed job is reported by a system that works.
The yes/no question (:mod:`fusionlog.llm.judge`) cannot tell them apart: both report a failure, and on BGL_2k it
ranks users' job-loading and login errors beside the hardware alerts. The kinds name no system's events.

**Order bias.** A small model's choice among letters leans on their order (measured with the default 1.5B model:
asked in one order the system's share of BGL_2k's events averages 0.49, in another 0.24), and not only on each
kind's place: the share of the system's fault among the two kinds of failure, which decides, leans towards
whichever of the two is listed first (BGL_2k's 62 failures, uncalibrated: 0.59-0.75 in the three orders with the
system's fault first, 0.36-0.54 in the three with the user's problem first). Each event is asked with the kinds
listed in several orders (:data:`ORDERS`: the first three put each kind in each place once but the system's fault
before the user's problem in two of them; all six, the default, put each kind in each place twice and every kind
before every other as often as after) and each kind's log-probability is averaged over them before the shares are
renormalised (permutation debiasing). Before that, in each order, each kind's share is calibrated against the
shares the model gives content-free events (``N/A``, an empty message, ``[MASK]``) in that order (contextual
calibration, Zhao et al. 2021, as the yes/no question's ``score_cf``): what is left of a kind's pull is what the
event's text adds to it.
``system_share`` = P(system) / (P(system) + P(user)): of the two kinds of failure, how likely it is the system's;
an event more likely a user's problem than the system's fault (``system_share`` < 0.5) leaves the LLM view.

Only the events the yes/no question puts in its upper group are asked (the others are not failures by that
reading, and triage only ever lowers a score): ``llm.triage_orders`` questions per such event, and as many per
content-free event. Answers are cached per (model, prompt version, order, event) in the run's LLM cache as JSON
text; the table is ``event_triage/``, written by the judge stage.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from fusionlog.llm.cache import ProbabilityCache
from fusionlog.llm.client import ChatClient
from fusionlog.llm.judge import CONTENT_FREE, Event, event_key
from fusionlog.llm.prompt import Prompt, clean, load_prompt

KINDS = ("system", "user", "routine")
ORDERS = (("system", "user", "routine"), ("user", "routine", "system"), ("routine", "system", "user"),
          ("routine", "user", "system"), ("user", "system", "routine"), ("system", "routine", "user"))
LETTERS = ("a", "b", "c")
FLOOR = 1e-6  # a share below this counts as this (log of 0)
TRIAGE = pa.schema([("template_id", pa.int64()), ("p_system", pa.float64()), ("p_user", pa.float64()),
                    ("p_routine", pa.float64()), ("system_share", pa.float64()), ("orders", pa.int32())])


def kinds_of(prompt: Prompt) -> dict[str, tuple[str, str]]:
    """The prompt's ``### kinds`` section: kind -> (definition, short name), one ``kind: definition | short`` line
    each; every kind of :data:`KINDS` must be there."""
    text = dict(prompt.sections).get("kinds", "")
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        definition, _, short = rest.partition("|")
        if name.strip():
            out[name.strip()] = (definition.strip(), short.strip())
    missing = [k for k in KINDS if k not in out or not all(out[k])]
    if missing:
        raise ValueError(f"prompt {prompt.name}: its kinds section lacks {', '.join(missing)} "
                         "(one 'kind: definition | short name' line each)")
    return out


def messages(prompt: Prompt, kinds: dict[str, tuple[str, str]], order: tuple[str, ...], system: str,
             ev: Event) -> list[dict]:
    """The chat messages asking which kind ``ev`` is, the kinds listed in ``order`` (the event quoted as data)."""
    listed = "\n".join(f"{ch.upper()}: {kinds[k][0]}" for ch, k in zip(LETTERS, order, strict=True))
    choices = ", ".join(f"{ch.upper()} ({kinds[k][1]})" for ch, k in zip(LETTERS, order, strict=True))
    user = prompt.user.format(system=system, component=clean(ev.component, 80), level=clean(ev.level, 40),
                              event=json.dumps(clean(ev.template, 400)), choices=choices)
    return [{"role": "system", "content": prompt.system.format(kinds=listed)}, {"role": "user", "content": user}]


def _normalised(z: dict[str, float]) -> dict[str, float]:
    total = sum(z.values())
    return {k: v / total for k, v in z.items()}


def debiased(answers: list[dict[str, float]]) -> dict[str, float]:
    """Each kind's probability from its answers in several orders: the mean log-probability per kind, renormalised
    (a letter's pull cancels where each kind takes each place equally often)."""
    mean = {k: sum(math.log(max(a[k], FLOOR)) for a in answers) / len(answers) for k in KINDS}
    top = max(mean.values())
    return _normalised({k: math.exp(v - top) for k, v in mean.items()})


def calibrated(shares: dict[str, float], prior: dict[str, float] | None) -> dict[str, float]:
    """Contextual calibration (Zhao et al., ICML 2021): each kind's share divided by its share for content-free
    events asked in the same order, renormalised (unchanged without a prior)."""
    if prior is None:
        return shares
    return _normalised({k: max(shares[k], FLOOR) / max(prior[k], FLOOR) for k in KINDS})


UNDECIDED = 0.01  # a system share this close to even odds decides nothing (a CPU or dtype change could flip it)

@dataclass
class TriageStats:
    events: int = 0  # events triaged
    asked: int = 0  # questions sent to the LLM (the rest from the cache): the LLM calls
    cache_hits: int = 0
    abstained: int = 0  # events with no answer in any order (not triaged: their score stays)
    orders: int = 0
    users: int = 0  # events more likely a user's or client's problem than the system's fault (share < 0.5 - UNDECIDED)
    undecided: int = 0  # events whose share lies within UNDECIDED of even odds (the triage decides nothing there)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.events} events triaged in {self.orders} orders, {self.asked} asked, {self.cache_hits} from "
                f"cache, {self.abstained} abstained; {self.users} more likely a user's problem than the system's "
                f"fault, {self.undecided} undecided (within {UNDECIDED} of even odds), {self.seconds:.1f} s")


def triage(client: ChatClient | Callable[[], ChatClient], system: str, events: list[Event],
           prompt: str = "event_triage_v1", cache: ProbabilityCache | None = None, concurrency: int = 8,
           progress: Callable[[int, int], None] | None = None, model: str | None = None,
           orders: int = 6) -> tuple[pa.Table, TriageStats]:
    """:data:`TRIAGE` rows for ``events``, each asked in the first ``orders`` of :data:`ORDERS`, and the stats.
    ``client`` may be a function that connects (called only when the cache lacks an answer; ``model`` is then
    the cache key's model name)."""
    from fusionlog.llm.label import describe

    if not 1 <= orders <= len(ORDERS):
        raise ValueError(f"triage: orders must be 1-{len(ORDERS)}, got {orders}")
    p = load_prompt(prompt)
    kinds = kinds_of(p)
    desc = describe(system)
    st = TriageStats(events=len(events), orders=orders)
    t0 = time.perf_counter()
    if isinstance(client, ChatClient):
        model = client.model
    elif model is None:
        raise ValueError("triage: give the model name with a client factory")
    version = {o: f"{p.version}:{'-'.join(o)}" for o in ORDERS[:orders]}
    got: dict[tuple[int, tuple[str, ...]], dict[str, float]] = {}
    todo = []
    free = [Event(-1 - i, text) for i, text in enumerate(CONTENT_FREE)] if events else []
    for ev in [*free, *events]:
        for o in ORDERS[:orders]:
            hit = cache.get_text(model, version[o], event_key(desc, ev)) if cache else None
            if hit is not None:
                got[ev.template_id, o] = json.loads(hit)
                st.cache_hits += ev.template_id >= 0
            else:
                todo.append((ev, o))
    conn = (client if isinstance(client, ChatClient) else client()) if todo else None

    def ask(item: tuple[Event, tuple[str, ...]]) -> tuple[Event, tuple[str, ...], dict[str, float] | None, str]:
        assert conn is not None
        ev, o = item
        ans = conn.choice_probabilities(messages(p, kinds, o, desc, ev), LETTERS)
        shares = {k: ans.shares[ch] for ch, k in zip(LETTERS, o, strict=True)} if ans.shares else None
        return ev, o, shares, ans.reason

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for done, (ev, o, shares, reason) in enumerate(pool.map(ask, todo), 1):
            st.asked += 1  # the content-free events' questions too: every call counts
            if shares is None:
                if len(st.problems) < 10:
                    st.problems.append(f"event {ev.template_id} ({'-'.join(o)}): {reason}")
            else:
                got[ev.template_id, o] = shares
                if cache:
                    cache.put_text(model, version[o], event_key(desc, ev), json.dumps(shares))
            if progress:
                progress(done, len(todo))
    prior = {o: debiased(a) if (a := [got[e.template_id, o] for e in free if (e.template_id, o) in got]) else None
             for o in ORDERS[:orders]}
    rows: dict[str, list] = {k: [] for k in TRIAGE.names}
    for ev in events:
        answers = [calibrated(got[ev.template_id, o], prior[o]) for o in ORDERS[:orders] if (ev.template_id, o) in got]
        d = debiased(answers) if answers else None
        share = d["system"] / (d["system"] + d["user"]) if d else None
        st.abstained += d is None
        st.users += share is not None and share < 0.5 - UNDECIDED
        st.undecided += share is not None and abs(share - 0.5) < UNDECIDED
        for k, v in (("template_id", ev.template_id), ("p_system", d and d["system"]), ("p_user", d and d["user"]),
                     ("p_routine", d and d["routine"]), ("system_share", share), ("orders", len(answers))):
            rows[k].append(v)
    st.seconds = time.perf_counter() - t0
    return pa.table(rows, schema=TRIAGE), st


def write_triage(run: Path, system: str, table: pa.Table) -> None:
    """``event_triage/system=<system>/`` (atomically)."""
    from fusionlog.rundir import write_partition

    write_partition(run, "event_triage", system, table.cast(TRIAGE))


def read_triage(run: Path, system: str) -> dict[int, float]:
    """template id -> ``system_share`` of the triaged events ({} when the system was not triaged)."""
    from fusionlog.rundir import read_partition, table_dir

    if not table_dir(run, "event_triage", system).exists():
        return {}
    t = read_partition(run, "event_triage", system, ["template_id", "system_share"], "run the judge stage")
    return {int(k): float(v) for k, v in zip(t["template_id"].to_pylist(), t["system_share"].to_pylist(),
                                             strict=True) if v is not None}
