"""Model-based stateful test: the Redis store against a pure-Python reference model
(tests/reference_model.py).

Hypothesis drives both with the same random sequences of commits (every graph delta over a tiny node-id
alphabet so collisions happen, with and without fences, stale fences, right/wrong/absent expected revisions,
stamps from a small turn-id alphabet so replays and conflicts happen, usage deltas, completions of held and
stale claims, attachment ids), session-lease claims/renewals/releases, enqueues (repeated source keys, delays,
both policies, merge keys), claims (both boundaries, max 0..3, exact-id claims), claim renewals, abandons,
cancels, tombstones, vacuums, GCs and the attachment manifest, while an injected clock jumps forward by random
amounts. Every step compares the result or the raised error type (with its attributes), and after every step
the observable state is compared: head meta, FullGraph and ActivePath reads (checkpoint and merged ledger
included), every node, both sessions' queues (all and pending, in sequence order) and the uncommitted
attachments.

Batch ids and queue-claim tokens are random: when the model decides that an enqueue creates a batch or that a
claim selects batches, it adopts the id or token the store minted, in order of creation (and the test checks
their format and uniqueness); everything else, including session lease tokens and claim ids, the model
computes itself. Generation is biased toward protocol-shaped runs (a live lease per session from the start,
workers re-taking the lane before commits, claims followed by a commit completing them, enqueues joining the
previous draft's group) so that the deep paths are reached within 30 steps; `-s` prints how often each
operation returned a value, None or each error.

Runs on standalone Redis. ``SESSIONFENCE_MODEL_EXAMPLES`` raises the example count (default 300, 30 steps
each).
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar

import redis
from builders import node, turn_input
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from reference_model import ReferenceStore

from sessionfence import (
    ActivePath,
    AttachmentIntent,
    DeliveryPolicy,
    FullGraph,
    GraphAppend,
    GraphReplaceFull,
    GraphUnchanged,
    HydratedSessionCheckpoint,
    MergeKey,
    PersistedSessionConfig,
    PersistedTurnState,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkClaimBoundary,
    QueuedWorkCompletion,
    RedisStore,
    RuntimeCommit,
    RuntimeTurnCommitStamp,
    SessionExecutionLease,
    SessionExecutionLeaseCompletion,
    SessionExecutionLeaseFence,
    SessionGraph,
    SlotPolicy,
    StoreError,
    TokenLedgerEntry,
    TokenUsage,
)

EXAMPLES = int(os.environ.get("SESSIONFENCE_MODEL_EXAMPLES", "300"))
STEPS = 30
MAX_U63 = 2**63 - 1

SESSIONS = ["root", "other"]
OWNERS = ["w1", "w2"]
NODE_IDS = ["n1", "n2", "n3", "n4"]
TURN_IDS = ["t1", "t2", "t3"]
HASHES = ["h1", "h2"]
ATT_IDS = ["a1", "a2", "a3"]
TTLS = [0, 1, 50, 100, 1000, 60_000]
LEASE_TTLS = [0, 50, 100, 60_000, 10**7, 10**7]
MERGE_KEYS = [MergeKey.never(), MergeKey.payload_default(), MergeKey.group("g"), MergeKey.group("h")]
CONFIGS = [
    PersistedSessionConfig(provider_id="", model={"id": "", "limits": {"context_window_tokens": 1}}),
    PersistedSessionConfig(provider_id="p2", model={"id": "m2"}),
]
USAGE = [
    TokenLedgerEntry("turn", "m1", TokenUsage(1, 0, 0, 0)),
    TokenLedgerEntry("turn", "m1", TokenUsage(0, 0, 0, 0)),
    TokenLedgerEntry("turn", "m2", TokenUsage(0, 0, 3, 0)),
    TokenLedgerEntry("tool", "m1", TokenUsage(2, 1, 0, 1)),
    TokenLedgerEntry("tool", "m3", TokenUsage(-1, 0, 0, 0)),
]
TOOL_STATES = [{"generation": g, "tools": {}} for g in (1, 2, 3)]
PLUGIN_SNAPSHOTS = [{"plugins": {}}, {"plugins": {"p": 1}}]
EXEC_STATES = [b"", b"x", b"\x00\xff"]
HEX64 = re.compile(r"qwb:[0-9a-f]{64}")
HEX32 = re.compile(r"[0-9a-f]{32}")

Outcome = tuple[str, Any]


def chance(data: st.DataObject, k: int, n: int, label: str) -> bool:
    """True with probability k/n (sampled_from: hypothesis skews integers toward their bounds)."""
    return bool(data.draw(st.sampled_from([True] * k + [False] * (n - k)), label=label))


def _error_fields(exc: BaseException) -> dict[str, Any]:
    """The typed attributes of a StoreError (messages differ between model and store: left out)."""
    return {k: v for k, v in vars(exc).items() if k != "message"}


class StoreVersusModel(RuleBasedStateMachine):
    client: ClassVar[redis.Redis]
    steps: ClassVar[int] = 0
    examples: ClassVar[int] = 0
    outcomes: ClassVar[Counter[str]] = Counter()

    def __init__(self) -> None:
        super().__init__()
        type(self).examples += 1
        self.prefix = "sfm" + uuid.uuid4().hex[:10]
        self.now = 1_000_000
        self.store = RedisStore(self.client, "model", key_prefix=self.prefix, clock=lambda: self.now)
        self.model = ReferenceStore(now=self.now)
        self.leases: list[SessionExecutionLease] = []
        self.current: dict[str, SessionExecutionLease] = {}  # the newest lease granted per session
        self.claims: list[QueuedWorkClaim] = []
        self.batch_ids: list[str] = []
        self.tokens: set[str] = set()
        self.refs: dict[str, list[str]] = {"tool": [], "plugin": [], "exec": []}
        self.last_group: tuple[DeliveryPolicy, SlotPolicy, MergeKey] | None = None

    def teardown(self) -> None:
        keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            self.client.delete(*keys)

    # ---- running one operation on both sides -------------------------------------------------------------

    def both(self, label: str, on_store: Callable[[], Any], on_model: Callable[[Outcome], Any]) -> Outcome:
        """Run the operation on the store, then on the model (which may adopt minted values from the store's
        outcome), and require the same result or the same error type with the same attributes."""
        self.model.now = self.now
        store_out: Outcome
        try:
            store_out = ("ok", on_store())
        except StoreError as exc:
            store_out = ("err", exc)
        model_out: Outcome
        try:
            model_out = ("ok", on_model(store_out))
        except StoreError as exc:
            model_out = ("err", exc)
        if label != "observe":
            result = store_out[1]
            kind = type(result).__name__ if store_out[0] == "err" else "None" if result is None else "value"
            type(self).outcomes[f"{label}: {kind}"] += 1
        if store_out[0] == "err" or model_out[0] == "err":
            assert store_out[0] == model_out[0], f"store {store_out!r} but model {model_out!r}"
            s, m = store_out[1], model_out[1]
            assert type(s) is type(m), f"store raised {s!r}, model raised {m!r}"
            assert _error_fields(s) == _error_fields(m), f"store raised {s!r}, model raised {m!r}"
        else:
            assert store_out[1] == model_out[1], (
                f"store returned\n{store_out[1]!r}\nmodel returned\n{model_out[1]!r}"
            )
        return store_out

    def step(self) -> None:
        type(self).steps += 1

    # ---- drawing arguments ---------------------------------------------------------------------------------

    def draw_lease_key(
        self,
        data: st.DataObject,
        kind: type[SessionExecutionLeaseFence] | type[SessionExecutionLeaseCompletion],
        sid: str | None = None,
        prefer_current: int = 8,
    ) -> Any:
        """Mostly the newest lease of the session the operation targets (so operations get past the fence
        check), otherwise any lease seen so far, possibly mutated, or a fabricated one."""
        choice = data.draw(st.sampled_from(range(10)), label="lease choice")
        current = self.current.get(sid) if sid is not None else None
        if current is not None and choice < prefer_current:
            return current.fence() if kind is SessionExecutionLeaseFence else current.completion()
        if not self.leases or choice == 9:
            sid = data.draw(st.sampled_from(SESSIONS), label="fabricated session")
            return kind(session_id=sid, owner_id="w1", lease_token=f"{sid}:w1:0:1", fencing_token=1)
        lease = data.draw(st.sampled_from(self.leases), label="lease")
        mutation = data.draw(
            st.sampled_from(["none", "none", "none", "stale", "fencing", "owner"]), label="mut"
        )
        fields = {
            "session_id": lease.session_id,
            "owner_id": lease.owner_id,
            "lease_token": lease.lease_token,
            "fencing_token": lease.fencing_token,
        }
        if mutation == "stale":
            fields["lease_token"] += ":stale"
        elif mutation == "fencing":
            fields["fencing_token"] += 1
        elif mutation == "owner":
            fields["owner_id"] = "intruder"
        return kind(**fields)

    def draw_claim(self, data: st.DataObject) -> QueuedWorkClaim:
        """Mostly a claim that some batch still carries (held whole, or partly lost to a cancel or a
        re-claim after it lapsed), so renewals and abandons do real work or hit the all-or-nothing rule."""
        rows = self.model.batches
        carried = [
            c
            for c in self.claims
            if any(
                b.batch_id in rows and rows[b.batch_id].carries(c.claim_id, c.lease_token) for b in c.batches
            )
        ]
        pool = carried if carried and chance(data, 3, 4, "carried claim") else self.claims
        claim = data.draw(st.sampled_from(pool), label="claim")
        if chance(data, 1, 5, "stale claim"):
            claim = claim.model_copy(update={"lease_token": claim.lease_token + "x"})
        return claim

    def held_claims(self) -> list[QueuedWorkClaim]:
        """Claims whose batches all still carry them (per the model): completing these can succeed."""
        rows = self.model.batches
        return [
            c
            for c in self.claims
            if all(
                b.batch_id in rows and rows[b.batch_id].carries(c.claim_id, c.lease_token) for b in c.batches
            )
        ]

    def draw_completion(self, data: st.DataObject, sid: str) -> QueuedWorkCompletion:
        held = [c for c in self.held_claims() if c.session_id == sid]
        pool = held if held and chance(data, 3, 4, "held claim") else self.claims
        claim = data.draw(st.sampled_from(pool), label="completed claim")
        c = claim.completion()
        mutation = data.draw(
            st.sampled_from(["none"] * 9 + ["stale", "subset", "extra", "twice", "session"]), label="cmut"
        )
        if mutation == "stale":
            c = c.model_copy(update={"lease_token": c.lease_token + ":stale"})
        elif mutation == "subset":
            c = c.model_copy(update={"batch_ids": c.batch_ids[1:]})
        elif mutation == "extra" and self.batch_ids:
            extra = data.draw(st.sampled_from(self.batch_ids), label="extra id")
            c = c.model_copy(update={"batch_ids": [*c.batch_ids, extra]})
        elif mutation == "twice":
            c = c.model_copy(update={"batch_ids": c.batch_ids + c.batch_ids[:1]})
        elif mutation == "session":
            c = c.model_copy(update={"session_id": "other" if sid == "root" else "root"})
        return c

    def draw_ref(self, data: st.DataObject, kind: str) -> str | None:
        return data.draw(st.sampled_from([None, None, "unknown", *self.refs[kind][-3:]]), label=f"{kind} ref")

    def draw_checkpoint(self, data: st.DataObject) -> HydratedSessionCheckpoint:
        tool = data.draw(st.sampled_from([None, *TOOL_STATES]), label="tool_state")
        plugin = data.draw(st.sampled_from([None, *PLUGIN_SNAPSHOTS]), label="plugin_snapshot")
        exe = data.draw(st.sampled_from([None, None, *EXEC_STATES]), label="execution_state")
        return HydratedSessionCheckpoint(
            turn_state=PersistedTurnState(turn_index=data.draw(st.integers(0, 2), label="turn_index")),
            tool_state=tool,
            tool_state_ref=self.draw_ref(data, "tool"),
            plugin_snapshot=plugin,
            plugin_snapshot_ref=self.draw_ref(data, "plugin"),
            plugin_snapshot_revision=data.draw(st.sampled_from([None, 1, 7]), label="revision"),
            execution_state=exe,
            execution_state_ref=self.draw_ref(data, "exec"),
        )

    def draw_graph(self, data: st.DataObject) -> Any:
        kind = data.draw(st.sampled_from(["U", "A", "A", "R"]), label="delta")
        leaf = data.draw(st.sampled_from([None, *NODE_IDS, "zz"]), label="leaf")
        if kind == "U":
            return GraphUnchanged(leaf)
        free = [i for i in NODE_IDS if i not in self.model.nodes]
        if kind == "A" and free and chance(data, 3, 4, "fresh ids"):
            # Mostly ids that are free, so appends apply; otherwise any ids, so collisions happen.
            ids = data.draw(st.lists(st.sampled_from(free), min_size=1, max_size=2, unique=True), label="ids")
        else:
            unique = chance(data, 7, 8, "unique ids")
            ids = data.draw(st.lists(st.sampled_from(NODE_IDS), max_size=3, unique=unique), label="node ids")
        nodes = [node(i, data.draw(st.sampled_from([None, *NODE_IDS]), label="parent")) for i in ids]
        if kind == "A":
            return GraphAppend(nodes, leaf)
        return GraphReplaceFull(SessionGraph(nodes=nodes, leaf_node_id=leaf))

    # ---- rules ---------------------------------------------------------------------------------------------
    # Few rules, each choosing among related operations, so that the interesting ones (commits, enqueues,
    # claims) get a large share of the 30 steps; commit and enqueue are registered twice for weight.

    @initialize(data=st.data())
    def leases_and_work(self, data: st.DataObject) -> None:
        """Start with a long lease on each session (so fenced operations get past the fence check) and some
        queued work (hypothesis's swarm testing often disables the enqueue rules for a whole example)."""
        for sid in SESSIONS:
            self.try_claim_lease(sid, "w1", 10**7)
        self.enqueue_some(data, data.draw(st.integers(0, 4), label="initial drafts"))
        if data.draw(st.booleans(), label="initial graph"):
            ids = data.draw(st.lists(st.sampled_from(NODE_IDS), min_size=1, max_size=4, unique=True))
            nodes = [node(i, ids[k - 1] if k else None) for k, i in enumerate(ids)]
            graph = GraphReplaceFull(SessionGraph(nodes=nodes, leaf_node_id=ids[-1]))
            commit = RuntimeCommit(
                session_id="root",
                expected_head_revision=0,
                session_execution_lease=self.current["root"].fence(),
                config=CONFIGS[0],
                graph=graph,
            )
            self.both(
                "commit (initial)",
                lambda: self.store.commit_runtime_state(commit),
                lambda _: self.model.commit_runtime_state(commit),
            )

    @rule(dt=st.sampled_from([0, 0, 1, 49, 50, 51, 100, 500, 1000, 60_000, 10**6]))
    def advance_clock(self, dt: int) -> None:
        self.step()
        self.now += dt

    def try_claim_lease(self, sid: str, owner: str, ttl: int) -> None:
        kind, got = self.both(
            "try_claim_lease",
            lambda: self.store.try_claim_session_execution_lease(sid, owner, ttl),
            lambda _: self.model.try_claim_session_execution_lease(sid, owner, ttl),
        )
        if kind == "ok" and got is not None:
            self.leases.append(got)
            self.current[sid] = got

    @rule(
        data=st.data(),
        op=st.sampled_from(["claim", "claim", "renew", "release"]),
        sid=st.sampled_from(SESSIONS),
        owner=st.sampled_from(OWNERS),
        ttl=st.sampled_from(LEASE_TTLS),
    )
    def lease_op(self, data: st.DataObject, op: str, sid: str, owner: str, ttl: int) -> None:
        self.step()
        if op == "claim":
            self.try_claim_lease(sid, owner, ttl)
        elif op == "renew":
            fence = self.draw_lease_key(data, SessionExecutionLeaseFence, sid)
            self.both(
                "renew_lease",
                lambda: self.store.renew_session_execution_lease(fence, ttl),
                lambda _: self.model.renew_session_execution_lease(fence, ttl),
            )
        else:
            completion = self.draw_lease_key(data, SessionExecutionLeaseCompletion, sid, prefer_current=3)
            self.both(
                "release_lease",
                lambda: self.store.release_session_execution_lease(completion),
                lambda _: self.model.release_session_execution_lease(completion),
            )

    def commit_impl(self, data: st.DataObject, completing: QueuedWorkClaim | None = None) -> None:
        self.step()
        # Once bound, a commit for "other" is a binding test; before that every commit is for "root".
        sid = "root" if self.model.head is None else data.draw(st.sampled_from(["root"] * 9 + ["other"]))
        if completing is not None:
            sid = completing.session_id
        lease = self.current.get(sid)
        if (lease is None or not self.model.leases[sid].live(self.now)) and chance(data, 3, 4, "re-lease"):
            self.try_claim_lease(sid, data.draw(st.sampled_from(OWNERS)), 10**7)  # a worker takes the lane
        actual = self.model.head.head_revision if self.model.head else 0
        expected = data.draw(
            st.sampled_from([None, None, actual, actual, actual, actual + 1, max(actual - 1, 0)])
        )
        fence = (
            None
            if chance(data, 1, 16, "no fence")
            else self.draw_lease_key(data, SessionExecutionLeaseFence, sid)
        )
        release = (
            None
            if chance(data, 3, 4, "no release")
            else self.draw_lease_key(data, SessionExecutionLeaseCompletion, sid, prefer_current=3)
        )
        stamp = None
        if data.draw(st.booleans(), label="stamped"):
            stamp_sid = data.draw(st.sampled_from([sid] * 7 + ["root" if sid == "other" else "other"]))
            stamp = RuntimeTurnCommitStamp(
                stamp_sid, data.draw(st.sampled_from(TURN_IDS)), data.draw(st.sampled_from(HASHES))
            )
        completions = []
        if completing is not None:
            completions.append(completing.completion())
        elif self.claims:
            # Completing is common while this session holds a claim, occasional (and doomed) otherwise.
            held = any(c.session_id == sid for c in self.held_claims())
            counts = [0, 1, 1, 1, 2] if held else [0, 0, 0, 1]
            for _ in range(data.draw(st.sampled_from(counts), label="completions")):
                completions.append(self.draw_completion(data, sid))
        frames = data.draw(st.sampled_from([[], [{"frame_id": "f1", "status": "active"}]]), label="frames")
        commit = RuntimeCommit(
            session_id=sid,
            expected_head_revision=expected,
            session_execution_lease=fence,
            release_session_execution_lease=release,
            config=data.draw(st.sampled_from(CONFIGS), label="config"),
            agent_frames=frames,
            current_agent_frame_id="f1" if frames else "",
            graph=self.draw_graph(data),
            checkpoint=self.draw_checkpoint(data),
            usage_deltas=data.draw(st.lists(st.sampled_from(USAGE), max_size=2), label="usage"),
            turn_commit=stamp,
            completed_queue_claims=completions,
            committed_attachment_ids=data.draw(st.lists(st.sampled_from([*ATT_IDS, "zz"]), max_size=2)),
        )
        replay = stamp is not None and (sid, stamp.turn_id) in self.model.turns
        label = "commit (replay)" if replay else "commit (completing)" if completions else "commit"
        kind, result = self.both(
            label,
            lambda: self.store.commit_runtime_state(commit),
            lambda _: self.model.commit_runtime_state(commit),
        )
        if kind == "ok":
            m = result.manifest
            for key, ref in (
                ("tool", m.tool_state_ref),
                ("plugin", m.plugin_snapshot_ref),
                ("exec", m.execution_state_ref),
            ):
                if ref is not None and ref != "unknown" and ref not in self.refs[key]:
                    self.refs[key].append(ref)

    commit = rule(data=st.data())(commit_impl)
    commit_again = rule(data=st.data())(commit_impl)

    def enqueue_impl(self, data: st.DataObject) -> None:
        self.step()
        self.enqueue_some(data, data.draw(st.integers(1, 3), label="drafts"))

    def enqueue_some(self, data: st.DataObject, count: int) -> None:
        sid = data.draw(st.sampled_from(["root", "root", "other"]), label="session")
        for _ in range(count):
            delay = data.draw(st.sampled_from([None, None, None, 0, 50, 100, 1000]), label="delay")
            group = self.last_group
            if group is None or chance(data, 1, 2, "new group"):
                # Otherwise join the previous draft's group, so that multi-batch claims are common.
                group = (
                    data.draw(st.sampled_from(list(DeliveryPolicy)), label="delivery"),
                    data.draw(st.sampled_from([SlotPolicy.JOIN, SlotPolicy.JOIN, SlotPolicy.EXCLUSIVE])),
                    data.draw(st.sampled_from(MERGE_KEYS), label="merge"),
                )
            self.last_group = group
            draft = QueuedWorkBatchDraft(
                session_id=sid,
                source_key=data.draw(st.sampled_from([None, None, "k1", "k2"]), label="source"),
                delivery_policy=group[0],
                slot_policy=group[1],
                merge_key=group[2],
                available_at_ms=0 if delay is None else self.now + delay,
                payloads=[turn_input(f"p{i}") for i in range(data.draw(st.integers(0, 2), label="payloads"))],
            )

            def minted(store_out: Outcome) -> str:
                return store_out[1].batch_id if store_out[0] == "ok" else "qwb:" + "0" * 64

            kind, batch = self.both(
                "enqueue",
                lambda draft=draft: self.store.enqueue_queued_work(draft),
                lambda out, draft=draft: self.model.enqueue_queued_work(draft, minted(out)),
            )
            if kind == "ok" and batch.batch_id not in self.batch_ids:
                assert HEX64.fullmatch(batch.batch_id), batch.batch_id
                self.batch_ids.append(batch.batch_id)

    enqueue = rule(data=st.data())(enqueue_impl)
    enqueue_again = rule(data=st.data())(enqueue_impl)

    def adopt_claim(self, kind: str, claim: QueuedWorkClaim | None) -> None:
        if kind == "ok" and claim is not None:
            assert HEX32.fullmatch(claim.lease_token) and claim.lease_token not in self.tokens
            self.tokens.add(claim.lease_token)
            self.claims.append(claim)

    @staticmethod
    def token_of(out: Outcome) -> str:
        return out[1].lease_token if out[0] == "ok" and out[1] is not None else "no-claim-token"

    @rule(
        data=st.data(),
        sid=st.sampled_from(["root", "root", "other"]),
        owner=st.sampled_from(OWNERS),
        boundary=st.sampled_from(list(QueuedWorkClaimBoundary)),
        ttl=st.sampled_from(TTLS),
        max_batches=st.sampled_from([0, 1, 2, 3, 3]),
        exact=st.sampled_from([0, 1, 2]),
    )
    def claim(
        self,
        data: st.DataObject,
        sid: str,
        owner: str,
        boundary: QueuedWorkClaimBoundary,
        ttl: int,
        max_batches: int,
        exact: int,
    ) -> None:
        self.step()
        if chance(data, 1, 3, "enqueue first"):
            self.enqueue_some(data, data.draw(st.integers(1, 2), label="drafts"))
        fence = self.draw_lease_key(data, SessionExecutionLeaseFence, sid)
        if exact == 0:
            if data.draw(st.booleans(), label="pending prefix"):
                pending = [b.batch_id for b in self.model.list_pending_queued_work(sid)]
                ids = pending[: data.draw(st.integers(0, 3), label="prefix length")]
                if chance(data, 1, 4, "reverse"):
                    ids = ids[::-1]
            else:
                choices = [*self.batch_ids, "qwb:missing"]
                ids = data.draw(st.lists(st.sampled_from(choices), max_size=3), label="ids")
            kind, claim = self.both(
                "claim_exact",
                lambda: self.store.claim_ready_queued_work_by_batch_ids(
                    sid, fence, owner, boundary, ttl, ids
                ),
                lambda out: self.model.claim_ready_queued_work_by_batch_ids(
                    sid, fence, owner, boundary, ttl, ids, self.token_of(out)
                ),
            )
        else:
            kind, claim = self.both(
                "claim",
                lambda: self.store.claim_ready_queued_work(sid, fence, owner, boundary, ttl, max_batches),
                lambda out: self.model.claim_ready_queued_work(
                    sid, fence, owner, boundary, ttl, max_batches, self.token_of(out)
                ),
            )
        self.adopt_claim(kind, claim)
        if kind == "ok" and claim is not None and sid == "root" and chance(data, 1, 3, "worker turn"):
            self.commit_impl(data, completing=claim)  # a worker's turn: claim, then commit completing it

    @rule(data=st.data(), op=st.sampled_from(["renew", "abandon", "cancel"]), ttl=st.sampled_from(TTLS))
    def claim_followup(self, data: st.DataObject, op: str, ttl: int) -> None:
        self.step()
        if op == "cancel" or not self.claims:
            # Mostly a batch that is stored right now (claimed ones included), in its own session.
            stored = [(r.batch.session_id, bid) for bid, r in self.model.batches.items()]
            if stored and chance(data, 3, 4, "stored batch"):
                sid, batch_id = data.draw(st.sampled_from(stored), label="stored batch")
                if chance(data, 1, 8, "wrong session"):
                    sid = "other" if sid == "root" else "root"
            else:
                sid = data.draw(st.sampled_from(SESSIONS), label="session")
                batch_id = data.draw(st.sampled_from([*self.batch_ids, "qwb:missing"]), label="batch")
            self.both(
                "cancel",
                lambda: self.store.cancel_queued_work_batch(sid, batch_id),
                lambda _: self.model.cancel_queued_work_batch(sid, batch_id),
            )
            return
        claim = self.draw_claim(data)
        if op == "renew":
            self.both(
                "renew_claim",
                lambda: self.store.renew_queued_work_claim(claim, ttl),
                lambda _: self.model.renew_queued_work_claim(claim, ttl),
            )
        else:
            self.both(
                "abandon_claim",
                lambda: self.store.abandon_queued_work_claim(claim),
                lambda _: self.model.abandon_queued_work_claim(claim),
            )

    @rule(data=st.data(), op=st.sampled_from(["tombstone", "tombstone", "vacuum", "gc"]))
    def maintenance(self, data: st.DataObject, op: str) -> None:
        self.step()
        if op == "tombstone":
            live = [i for i, row in self.model.nodes.items() if not row.tombstoned]
            pool = live if live and data.draw(st.booleans(), label="live ids") else [*NODE_IDS, "zz"]
            ids = data.draw(st.lists(st.sampled_from(pool), max_size=3), label="tombstone ids")
            self.both(
                "tombstone",
                lambda: self.store.tombstone_nodes(ids),
                lambda _: self.model.tombstone_nodes(ids),
            )
        elif op == "vacuum":
            self.both("vacuum", self.store.vacuum, lambda _: self.model.vacuum())
        else:
            self.both("gc", self.store.gc_unreachable, lambda _: self.model.gc_unreachable())

    @rule(
        op=st.sampled_from(["intent", "intent", "commit_refs", "forget"]),
        aid=st.sampled_from(ATT_IDS),
        sid=st.sampled_from(SESSIONS),
        uri=st.sampled_from(["u1", "u2"]),
        at=st.sampled_from([0, 100, 1_000_000]),
        ids=st.lists(st.sampled_from([*ATT_IDS, "zz"]), max_size=3),
    )
    def attachments(self, op: str, aid: str, sid: str, uri: str, at: int, ids: list[str]) -> None:
        self.step()
        if op == "intent":
            intent = AttachmentIntent(aid, sid, uri, at)
            self.both(
                "record_intent",
                lambda: self.store.record_intent(intent),
                lambda _: self.model.record_intent(intent),
            )
        elif op == "commit_refs":
            self.both(
                "commit_refs",
                lambda: self.store.commit_refs(sid, ids),
                lambda _: self.model.commit_refs(sid, ids),
            )
        else:
            self.both("forget", lambda: self.store.forget(aid), lambda _: self.model.forget(aid))

    # ---- the observable state after every step ---------------------------------------------------------

    @invariant()
    def observable_state_matches(self) -> None:
        s, m = self.store, self.model
        self.both("observe", s.load_session_head_meta, lambda _: m.load_session_head_meta())
        for scope in (FullGraph(), ActivePath(), ActivePath("n2")):
            self.both(
                "observe",
                lambda scope=scope: s.load_session(scope),
                lambda _, scope=scope: m.load_session(scope),
            )
        for node_id in NODE_IDS:
            self.both("observe", lambda n=node_id: s.load_node(n), lambda _, n=node_id: m.load_node(n))
        for sid in SESSIONS:
            self.both("observe", lambda x=sid: s.list_queued_work(x), lambda _, x=sid: m.list_queued_work(x))
            self.both(
                "observe",
                lambda x=sid: s.list_pending_queued_work(x),
                lambda _, x=sid: m.list_pending_queued_work(x),
            )
        self.both("observe", lambda: s.list_uncommitted(MAX_U63), lambda _: m.list_uncommitted(MAX_U63))
        self.both("observe", lambda: s.list_uncommitted(100), lambda _: m.list_uncommitted(100))


SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def test_store_matches_reference_model(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    StoreVersusModel.client = client
    StoreVersusModel.steps = 0
    StoreVersusModel.examples = 0
    StoreVersusModel.outcomes = Counter()
    try:
        run_state_machine_as_test(StoreVersusModel, settings=SETTINGS)
    finally:
        client.close()
    print(f"\nmodel-based: {StoreVersusModel.examples} examples, {StoreVersusModel.steps} steps")
    for label, count in sorted(StoreVersusModel.outcomes.items()):
        print(f"  {label}: {count}")
    assert StoreVersusModel.steps >= EXAMPLES
