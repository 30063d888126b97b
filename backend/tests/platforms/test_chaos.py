"""Chaos soak: overlapping faults under steady mixed load, then the books audited.

The scale drill's stack (tests/support/drill.py) at a size a 2-core machine can run
while it is being hurt: 3 web replicas (2 gunicorn workers x 4 threads) behind
HAProxy, 2 Celery workers and beat, PgBouncer in front of a PostgreSQL with
max_connections 40, a Redis primary with a replica and three sentinels.

Client threads read, reserve (an Idempotency-Key per logical request; timeouts,
connection errors and 5xx are retried with the same key), confirm (as the storefront,
which holds inventory.confirm_reservation) and cancel, with the API's shortest TTL
so that expiries run. Meanwhile a schedule drawn from a seed (printed first) SIGKILLs
and SIGTERMs web replicas, workers and beat (a supervisor restarts whatever exits,
as a platform's restart policy does), SIGKILLs the Redis master (Sentinel failover;
the old master comes back as a replica), restarts PgBouncer, pauses PostgreSQL
(SIGSTOP of the postmaster and every backend for 2-5 s) and freezes one worker's
broker connection.

Then, with the faults over and a bounded time to settle (every reservation's TTL
passed and beat's expiry run, one reconciliation), the audit reads PostgreSQL and
the client's own history; see `audit`. Any violation fails the test, after printing
the schedule, the counts and every invariant's result.

`make chaos` (CHAOS_SECONDS, default 180; CHAOS_SEED, default random) runs it; a
failing run is replayed with the seed it printed. Not part of `make platform-test`:
`.ci/run` runs `make chaos` after it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import requests

from apps.core.worker.liveness.watchdog import child_pids
from tests.support.drill import (
    Books,
    Stack,
    books,
    clients_start,
    direct,
    drill_stack,
    seed,
)
from tests.support.haproxy import Balancer
from tests.support.processes import ServerProcess, kill_group, run_python
from tests.support.tcp_proxy import TcpProxy
from tests.support.wait import wait_until

CHAOS_SECONDS = int(os.environ.get("CHAOS_SECONDS") or 180)
CHAOS_SEED = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(10**6))

WEB_SLOTS, WORKERS = 3, 2
# Worker 1 reaches its broker through a proxy the schedule can freeze.
FROZEN_WORKER = 1
GUNICORN_WORKERS, GUNICORN_THREADS = 2, 4
MAX_CONNECTIONS, POOL_SIZE = 40, 20
CLIENTS = 6
RATE = 4.0  # logical requests per second per client
TTL_SECONDS = 30  # the API's shortest
# One SKU that sells out (reservations held until confirmed, cancelled or expired)
# and one that never does.
HOT, WIDE = "CHAOS-HOT", "CHAOS-WIDE"
STOCK = {HOT: 150, WIDE: 100_000}
# Connect, read: shorter than a PostgreSQL pause, so that some requests time out on
# the client while the server goes on to commit them: their retries must replay.
REQUEST_TIMEOUT = (2, 2)
ATTEMPTS = 6
# Faults start from FAULTS_FROM and end FAULTS_QUIET seconds before the load does;
# reservations stop TTL_SECONDS before it, so every one is due when it ends.
FAULTS_FROM, FAULTS_QUIET = 10.0, 40.0
# A SIGTERMed process still running after this is SIGKILLed, as a platform does.
STOP_GRACE_SECONDS = 30
# Beat expires reservations every 60 s (config/celery.py); a beat restarted late
# waits for RedBeat's lock (25 s) first.
EXPIRY_BUDGET_SECONDS = 120
# After a broker freeze, the worker (or its replacement, once its watchdog gave up)
# consumes a canary again within this: beat sends one every 15 s, the watchdog
# exits after 30 s unhealthy, a restarted worker starts in seconds.
CONSUME_AFTER_THAW = 90
# Faults per 180 s of soak.
FAULTS_PER_180S = {
    "web-kill": 5,
    "worker-kill": 3,
    "beat-kill": 2,
    "redis-master-kill": 2,
    "pgbouncer-restart": 2,
    "postgres-pause": 2,
    "broker-freeze": 2,
}


# --- the schedule ---------------------------------------------------------------


@dataclass
class Fault:
    at: float  # seconds after the load started
    kind: str
    target: str
    signal: str = ""
    seconds: float = 0.0  # down (kills), paused, frozen, or until the restart
    started: float | None = None
    ended: float | None = None
    note: str = ""
    stuck: str = ""  # the system did not recover from this fault

    def describe(self) -> str:
        extra = f" {self.signal}" if self.signal else ""
        held = f" for {self.seconds:.1f}s" if self.seconds else ""
        return f"+{self.at:6.1f}s  {self.kind:<18} {self.target}{extra}{held}"


def schedule(seed_value: int, seconds: float) -> list[Fault]:
    """The faults of a run, drawn from its seed alone (so a seed replays it)."""
    rng = random.Random(seed_value)
    last = max(FAULTS_FROM + 5, seconds - FAULTS_QUIET - 20)
    span = last - FAULTS_FROM
    faults: list[Fault] = []
    for kind, per in FAULTS_PER_180S.items():
        count = max(1, round(per * seconds / 180))
        for index in range(count):
            at = rng.uniform(FAULTS_FROM, last)
            fault = Fault(at=at, kind=kind, target="")
            if kind in ("web-kill", "worker-kill", "beat-kill"):
                role, slots = {
                    "web-kill": ("web", WEB_SLOTS),
                    "worker-kill": ("worker", WORKERS),
                    "beat-kill": ("beat", 1),
                }[kind]
                index = rng.randrange(slots)
                fault.target = role if role == "beat" else f"{role}-{index}"
                fault.signal = rng.choice(["SIGKILL", "SIGTERM"])
                fault.seconds = rng.uniform(2, 8)
            elif kind == "redis-master-kill":
                # Spread over the span so each failover is over, and the old master
                # back as a replica (the next one's candidate), before the next.
                width = span / count
                fault.at = FAULTS_FROM + index * width + rng.uniform(0, width / 3)
                fault.target = "redis master"
                fault.seconds = rng.uniform(8, 15)
            elif kind == "broker-freeze":
                # Spread too: a freeze is followed by up to CONSUME_AFTER_THAW of
                # waiting for the worker to consume, which the next one would block.
                width = span / count
                fault.at = FAULTS_FROM + index * width + rng.uniform(0, width / 4)
                fault.target = f"worker-{FROZEN_WORKER} broker connection"
                fault.seconds = rng.uniform(10, 20)
            elif kind == "pgbouncer-restart":
                fault.target = "pgbouncer"
            elif kind == "postgres-pause":
                fault.target = "postmaster + backends"
                fault.seconds = rng.uniform(2, 5)
            faults.append(fault)
    return sorted(faults, key=lambda f: f.at)


# --- processes, kept running as a platform would -------------------------------


@dataclass
class Slot:
    name: str
    start: Callable[[], ServerProcess]
    process: ServerProcess
    held_until: float = 0.0  # the schedule keeps it down until then
    expected_exit: bool = False
    terminated_at: float | None = None
    starts: int = 1
    unexpected_exits: list[str] = field(default_factory=list)


class Supervisor:
    """Restarts any web, worker or beat that exited, like a restart policy: a
    process the schedule stopped once its down time is over, any other at once
    (a worker's or beat's watchdog exit, a crash), recorded as unexpected."""

    def __init__(self, stack: Stack, slots: list[Slot], clock: Callable[[], float]):
        self.stack, self.slots, self.clock = stack, slots, clock
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def slot(self, name: str) -> Slot:
        return next(s for s in self.slots if s.name == name)

    def signal(self, name: str, sig: str, down: float) -> int:
        """Send `sig` as a platform stopping the container would; return the
        number of starts the slot has had (the restart makes it one more)."""
        with self.lock:
            slot = self.slot(name)
            slot.held_until = time.monotonic() + down
            slot.expected_exit = True
            pid = slot.process.process.pid
            if sig == "SIGKILL":
                # The container dies whole: every process of its group.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            else:
                # The platform signals the container's first process.
                slot.terminated_at = time.monotonic()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            return slot.starts

    def _run(self) -> None:
        while not self.stopping.wait(0.25):
            with self.lock:
                for slot in self.slots:
                    self._check(slot)

    def _check(self, slot: Slot) -> None:
        process = slot.process.process
        now = time.monotonic()
        if process.poll() is None:
            if slot.terminated_at and now - slot.terminated_at > STOP_GRACE_SECONDS:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            return
        if slot.expected_exit and now < slot.held_until:
            return
        if not slot.expected_exit:
            tail = "\n".join(slot.process.lines[-5:])
            slot.unexpected_exits.append(
                f"+{self.clock():.1f}s {slot.name} exited {process.returncode}:\n{tail}"
            )
        # What the container left (pool children) goes with it, now: the stack's
        # teardown signals only the processes the slots hold at the end.
        kill_group(process)
        slot.process = slot.start()
        slot.starts += 1
        slot.expected_exit = False
        slot.terminated_at = None

    def wait_started(self, name: str, starts: int, timeout: float) -> None:
        wait_until(
            lambda: self.slot(name).starts > starts,
            timeout,
            f"{name} to be restarted",
            interval=0.2,
        )

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        # The stack stops what is running now.
        self.stack.webs = [s.process for s in self.slots if s.name.startswith("web")]
        self.stack.workers = [
            s.process for s in self.slots if s.name.startswith("worker")
        ]
        self.stack.beat = self.slot("beat").process


# --- PostgreSQL paused -----------------------------------------------------------


PAUSED: set[int] = set()


def postgres_pause(postmaster: int) -> int:
    """SIGSTOP the postmaster first (no new backend forks), then its children."""
    os.kill(postmaster, signal.SIGSTOP)
    PAUSED.add(postmaster)
    # The postmaster's children (backends, checkpointer, ...), by /proc.
    children = child_pids(postmaster)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
            PAUSED.add(pid)
    return len(children)


def postgres_resume() -> None:
    """SIGCONT everything paused; called after each pause and whatever happens."""
    for pid in list(PAUSED):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        PAUSED.discard(pid)


# --- the client and its history ---------------------------------------------------


@dataclass
class Attempt:
    status: int | None
    error: str | None = None
    replayed: bool = False
    code: str | None = None
    details: dict = field(default_factory=dict)
    body_id: str | None = None


@dataclass
class Request:
    """One logical request and every attempt at it."""

    kind: str  # read, reserve, confirm, cancel
    client: int
    started: float
    sku: str = ""
    key: str | None = None
    reservation: str | None = None  # reserve: the acknowledged id; others: target
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]

    @property
    def answered(self) -> bool:
        return self.final.status is not None and self.final.status < 500


def retryable(attempt: Attempt) -> bool:
    return attempt.status is None or attempt.status >= 500


@dataclass
class Load:
    url: str
    tokens: list[str]
    storefront: str
    seed: int
    seconds: float
    started: float = 0.0
    history: list[Request] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def send(
        self, session: requests.Session, request: Request, method: str, path: str, **kw
    ) -> Attempt:
        """Send with retries (same key, same body) until a non-5xx answer or
        ATTEMPTS; every attempt is recorded."""
        for number in range(ATTEMPTS):
            attempt = Attempt(status=None)
            try:
                response = session.request(
                    method, f"{self.url}{path}", timeout=REQUEST_TIMEOUT, **kw
                )
                attempt.status = response.status_code
                attempt.replayed = response.headers.get("Idempotent-Replayed") == "true"
                with contextlib.suppress(ValueError):
                    body = response.json()
                    if isinstance(body, dict):
                        error = body.get("error") or {}
                        attempt.code = error.get("code")
                        attempt.details = error.get("details") or {}
                        attempt.body_id = body.get("id")
            except requests.RequestException as exc:
                attempt.error = type(exc).__name__
            request.attempts.append(attempt)
            if not retryable(attempt):
                break
            time.sleep(min(4.0, 0.5 * 2**number))
        return request.final

    def client(self, index: int) -> None:
        rng = random.Random(f"{self.seed}:{index}")
        buyer = requests.Session()
        buyer.headers["Authorization"] = f"Token {self.tokens[index]}"
        seller = requests.Session()
        seller.headers["Authorization"] = f"Token {self.storefront}"
        holding: list[tuple[str, float]] = []  # acknowledged, not acted on
        number = 0
        while not self.stop.is_set():
            tick = time.monotonic()
            now = self.elapsed()
            holding = [(i, t) for i, t in holding if tick - t < TTL_SECONDS - 5]
            roll = rng.random()
            reserving = now < self.seconds - TTL_SECONDS
            if roll < 0.4 and reserving:
                number += 1
                sku = HOT if rng.random() < 0.6 else WIDE
                request = Request(
                    "reserve", index, now, sku=sku, key=f"chaos-{index}-{number}"
                )
                self.history.append(request)
                final = self.send(
                    buyer,
                    request,
                    "POST",
                    "/api/v1/reservations/",
                    json={
                        "sku": sku,
                        "quantity": rng.randint(1, 3),
                        "ttl_seconds": TTL_SECONDS,
                    },
                    headers={"Idempotency-Key": request.key},
                )
                if final.status == 201:
                    request.reservation = final.body_id
                    holding.append((final.body_id, tick))
            elif roll < 0.55 and holding:
                # Most reservations are left to expire; the others are sold or
                # given back.
                target, _ = holding.pop(rng.randrange(len(holding)))
                confirm = rng.random() < 0.55
                kind = "confirm" if confirm else "cancel"
                request = Request(kind, index, now, reservation=target)
                self.history.append(request)
                self.send(
                    seller if confirm else buyer,
                    request,
                    "POST",
                    f"/api/v1/reservations/{target}/{kind}/",
                )
            else:
                sku = HOT if rng.random() < 0.5 else WIDE
                request = Request("read", index, now, sku=sku)
                self.history.append(request)
                self.send(buyer, request, "GET", f"/api/v1/products/{sku}/")
            time.sleep(max(0.0, 1 / RATE - (time.monotonic() - tick)))


# --- the audit --------------------------------------------------------------------


RESERVATIONS_QUERY = """
SELECT r.id::text, r.idempotency_key, r.status, r.quantity, p.sku,
  r.expires_at <= now() AS past_deadline,
  count(m.id) FILTER (WHERE m.kind = 'reserve'),
  coalesce(sum(m.quantity) FILTER (WHERE m.kind = 'reserve'), 0),
  coalesce(array_agg(m.kind::text) FILTER (WHERE m.kind <> 'reserve'), '{}')
FROM inventory_reservation r
JOIN inventory_product p ON p.id = r.product_id
LEFT JOIN inventory_stockmovement m ON m.reservation_id = r.id
GROUP BY r.id, p.sku
"""
TERMINAL = {"confirmed": "confirm", "cancelled": "cancel", "expired": "expire"}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def audit(
    load: Load,
    rows: list[tuple],
    product_books: dict[str, Books],
    gate: dict[str, tuple[int | None, int]],
    failed_tasks: list[tuple],
    faults: list[Fault],
    wall_started: dt.datetime,
) -> list[Check]:
    """Every invariant, from PostgreSQL and the client's own history."""
    checks: list[Check] = []

    def check(name: str, problems: list, ok_detail: str) -> None:
        checks.append(
            Check(
                name, not problems, ok_detail if not problems else repr(problems[:10])
            )
        )

    check(
        "stock = sum of its ledger (per product)",
        [
            b
            for b in product_books.values()
            if (b.on_hand, b.reserved) != (b.ledger_on_hand, b.ledger_reserved)
        ],
        ", ".join(
            f"{b.sku}: on_hand {b.on_hand}, reserved {b.reserved}"
            for b in product_books.values()
        ),
    )
    check(
        "never oversold: reserved + sold <= restocked; on_hand = restocked - sold",
        [
            b
            for b in product_books.values()
            if b.reserved + b.sold_units > b.restocked
            or b.on_hand != b.restocked - b.sold_units
            or b.reserved != b.active_units
        ],
        ", ".join(
            f"{b.sku}: sold {b.sold_units} of {b.restocked}"
            for b in product_books.values()
        ),
    )
    check(
        "each reservation: one reserve ledger row, one terminal row matching status",
        [
            row
            for row in rows
            if row[6] != 1
            or row[7] != row[3]
            or sorted(row[8]) != ([TERMINAL[row[2]]] if row[2] in TERMINAL else [])
        ],
        f"{len(rows)} reservations",
    )

    by_key: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        by_key[row[1]].append(row)
    reserves = [r for r in load.history if r.kind == "reserve"]
    sent = {r.key for r in reserves}
    duplicates, lost, mismatched = [], [], []
    acked_ids: list[str] = []
    matched = 0
    for request in reserves:
        ids = {a.body_id for a in request.attempts if a.status == 201}
        if not ids:
            continue
        found = by_key.get(request.key, [])
        if len(ids) != 1:
            mismatched.append((request.key, sorted(ids)))
        if len(found) > 1:
            duplicates.append((request.key, [row[0] for row in found]))
        elif not found:
            lost.append((request.key, sorted(ids)))
        elif found[0][0] not in ids:
            mismatched.append((request.key, sorted(ids), found[0][0]))
        else:
            matched += 1
        acked_ids.extend(ids)
    unknown = [row[:2] for row in rows if row[1] not in sent]
    check(
        "every acknowledged reservation exists exactly once (replays, no duplicates)",
        duplicates
        + lost
        + mismatched
        + unknown
        + [i for i, n in Counter(acked_ids).items() if n > 1],
        f"{len(acked_ids)} acknowledged, {matched} found once with the same id; "
        f"{len(unknown)} rows without a request",
    )

    status_of = {row[0]: row[2] for row in rows}
    wrong = []
    for request in load.history:
        if request.kind not in ("confirm", "cancel") or not request.answered:
            continue
        final = request.final
        now = status_of.get(request.reservation)
        if final.status == 200:
            wanted = "confirmed" if request.kind == "confirm" else "cancelled"
        elif final.code == "reservation_not_active":
            wanted = final.details.get("status")
        elif final.code == "reservation_expired":
            wanted = "expired"
        else:
            wanted = now  # another answer (404 ...) promises no state
        if now != wanted:
            wrong.append((request.kind, request.reservation, final.status, now))
    check(
        "every acknowledged confirm and cancel holds in the database",
        wrong,
        "each answer matches the reservation's final status",
    )
    check(
        "every reservation past its TTL is expired (or confirmed/cancelled before)",
        [row[:3] for row in rows if row[2] == "active" and row[5]],
        f"{sum(1 for r in rows if r[2] == 'expired')} expired, "
        f"{sum(1 for r in rows if r[2] == 'active')} still active (within TTL)",
    )
    check(
        "gate counter = database available after one reconcile",
        [(sku, c) for sku, c in gate.items() if c[0] != c[1]],
        ", ".join(f"{sku}: {c[0]} = {c[1]}" for sku, c in gate.items()),
    )

    unexplained = []
    explained = []
    for task_name, exception, failed_at in failed_tasks:
        at = (failed_at - wall_started).total_seconds()
        near = [
            f
            for f in faults
            if f.started is not None
            and f.started - 2 <= at <= (f.ended or f.started) + 60
        ]
        line = f"+{at:.1f}s {task_name}: {exception[:160]}"
        if near:
            explained.append(
                f"{line} (during {near[0].kind} at +{near[0].started:.1f}s)"
            )
        else:
            unexplained.append(line)
    for line in explained:
        print("  failed task, explained:", line)
    check(
        "no FailedTask left unexplained",
        unexplained,
        f"{len(failed_tasks)} failed task(s), each during a fault",
    )
    return checks


# --- the soak ---------------------------------------------------------------------


class SentinelMasterProxy(TcpProxy):
    """The frozen worker's way to its broker.

    Sentinel hands a client the master's real address, so a proxy cannot sit in
    that client's path and the Sentinel transport's connection cannot be frozen on
    its own. Instead this worker is given CELERY_BROKER_URL naming this proxy, which
    asks the sentinels for the master on every new connection (as an HAProxy with a
    Sentinel-aware check would), and follows a failover when the killed master
    drops its connections. Its gate, cache and RedBeat clients still use Sentinel;
    only its broker connection goes through here, where freeze() leaves the TCP
    connection open and silent: what a hung NAT, a half-open connection or a
    frozen Redis looks like to the worker.
    """

    def __init__(self, stack: Stack) -> None:
        super().__init__(0, resolve=self._master)
        self.stack = stack

    def _master(self) -> tuple[str, int]:
        return "127.0.0.1", self.stack.sentinels.master_port()


def run_fault(
    fault: Fault,
    stack: Stack,
    supervisor: Supervisor,
    proxy: TcpProxy,
    clock: Callable[[], float],
) -> None:
    fault.started = clock()
    try:
        if fault.kind in ("web-kill", "worker-kill", "beat-kill"):
            starts = supervisor.signal(fault.target, fault.signal, fault.seconds)
            supervisor.wait_started(
                fault.target, starts, fault.seconds + STOP_GRACE_SECONDS + 30
            )
        elif fault.kind == "redis-master-kill":
            name = stack.sentinels.master()
            port = stack.sentinels.ports[name]
            killed = time.monotonic()
            stack.sentinels.kill(name)
            wait_until(
                lambda: stack.sentinels.master_port() != port,
                30,
                "the sentinels to promote the replica",
                interval=0.1,
            )
            promoted = time.monotonic() - killed
            time.sleep(fault.seconds)
            stack.sentinels.restart_as_replica(name)
            fault.note = (
                f"{name} killed; promoted in {promoted:.1f}s; back as a replica "
                f"{time.monotonic() - killed:.1f}s after the kill"
            )
        elif fault.kind == "pgbouncer-restart":
            took = time.monotonic()
            stack.restart_bouncer()
            fault.note = f"restarted in {time.monotonic() - took:.1f}s"
        elif fault.kind == "postgres-pause":
            try:
                children = postgres_pause(stack.postmaster_pid())
                fault.note = f"{children + 1} processes stopped"
                time.sleep(fault.seconds)
            finally:
                postgres_resume()
        elif fault.kind == "broker-freeze":
            proxy.freeze()
            try:
                time.sleep(fault.seconds)
            finally:
                proxy.thaw()
            thawed = time.time()

            def consumed() -> bool:
                # The slot's current process: the frozen one, or what replaced it
                # after its watchdog gave up on the broker.
                process = supervisor.slot(f"worker-{FROZEN_WORKER}").process
                directory = stack.heartbeat_dirs.get(process.process.pid)
                record = directory / "celery-worker.consumed" if directory else None
                with contextlib.suppress(OSError, ValueError):
                    return float(record.read_text()) > thawed
                return False

            try:
                wait_until(consumed, CONSUME_AFTER_THAW, "a canary", interval=0.5)
                fault.note = (
                    f"worker-{FROZEN_WORKER} consumed again "
                    f"{time.time() - thawed:.1f}s after the thaw"
                )
            except AssertionError:
                fault.stuck = (
                    f"worker-{FROZEN_WORKER} consumed nothing within "
                    f"{CONSUME_AFTER_THAW}s of the thaw"
                )
    except Exception as exc:  # reported with the schedule, and fails the run
        fault.note = f"HARNESS ERROR {type(exc).__name__}: {exc}"
    finally:
        fault.ended = clock()


def run_schedule(
    faults: list[Fault],
    stack: Stack,
    supervisor: Supervisor,
    proxy: TcpProxy,
    clock: Callable[[], float],
) -> list[threading.Thread]:
    """Start each fault at its time, in a thread of its own (faults overlap); a
    fault on a target still busy with the previous one waits for it."""
    locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
    threads = []

    def one(fault: Fault) -> None:
        with locks[fault.target]:
            run_fault(fault, stack, supervisor, proxy, clock)

    for fault in faults:
        delay = fault.at - clock()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=one, args=(fault,), daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def _json(line: str) -> dict:
    try:
        record = json.loads(line)
    except ValueError:
        return {"line": line}
    return record if isinstance(record, dict) else {"line": line}


RECONCILE = """
from apps.inventory.services import inventory_gate_reconcile
print("repairs", inventory_gate_reconcile())
"""


@pytest.fixture
def stack() -> Iterator[Stack]:
    with drill_stack(
        prefix="backend-chaos-",
        max_connections=MAX_CONNECTIONS,
        pool_size=POOL_SIZE,
        web_slots=WEB_SLOTS,
        expected_replicas=WEB_SLOTS + 1,
        gunicorn_workers=GUNICORN_WORKERS,
        gunicorn_threads=GUNICORN_THREADS,
    ) as built:
        try:
            yield built
        finally:
            # Never leave PostgreSQL stopped, whatever failed.
            postgres_resume()


@pytest.mark.timeout(CHAOS_SECONDS + 900)
def test_chaos_soak_keeps_the_books(stack: Stack) -> None:
    faults = schedule(CHAOS_SEED, CHAOS_SECONDS)
    print(
        f"\nchaos soak: seed {CHAOS_SEED}, {CHAOS_SECONDS}s "
        f"(replay: make chaos CHAOS_SECONDS={CHAOS_SECONDS} CHAOS_SEED={CHAOS_SEED})",
        flush=True,
    )
    print("schedule:\n" + "\n".join("  " + f.describe() for f in faults), flush=True)

    proxy = SentinelMasterProxy(stack).start()
    broker = {"CELERY_BROKER_URL": f"redis://127.0.0.1:{proxy.listen_port}/0"}
    slots = [
        Slot(f"web-{i}", lambda i=i: stack.web_process(i), stack.web_process(i))
        for i in range(WEB_SLOTS)
    ]
    for i in range(WORKERS):
        env = broker if i == FROZEN_WORKER else {}
        slots.append(
            Slot(
                f"worker-{i}",
                lambda env=env: stack.worker_process(**env),
                stack.worker_process(**env),
            )
        )
    slots.append(Slot("beat", stack.beat_process, stack.beat_process()))
    # The stack stops these if anything below fails (the supervisor updates them).
    stack.webs = [s.process for s in slots[:WEB_SLOTS]]
    stack.workers = [s.process for s in slots[WEB_SLOTS:-1]]
    stack.beat = slots[-1].process
    balancer = Balancer(
        stack.directory,
        {f"web{i}": f"127.0.0.1:{port}" for i, port in enumerate(stack.web_ports)},
        "inter 500ms fall 2 rise 1",
    )
    load: Load | None = None
    supervisor: Supervisor | None = None
    checks: list[Check] = []
    report: dict = {}
    try:
        for index in range(WEB_SLOTS):
            balancer.wait_status(f"web{index}", "UP", timeout=90)
        data = seed(stack, STOCK, CLIENTS)
        load = Load(
            url=balancer.url,
            tokens=data["tokens"],
            storefront=data["storefront"],
            seed=CHAOS_SEED,
            seconds=CHAOS_SECONDS,
        )
        supervisor = Supervisor(stack, slots, load.elapsed)
        supervisor.thread.start()
        wall_started = dt.datetime.now(dt.UTC)
        load.started = time.monotonic()
        clients = clients_start(load.client, CLIENTS)
        fault_threads = run_schedule(faults, stack, supervisor, proxy, load.elapsed)
        for thread in fault_threads:
            thread.join(timeout=max(1.0, CHAOS_SECONDS - load.elapsed()) + 120)
        time.sleep(max(0.0, CHAOS_SECONDS - load.elapsed()))
        load.stop.set()
        for client in clients:
            # A logical request in flight finishes its retries (bounded).
            client.join(timeout=ATTEMPTS * 15)
        load_seconds = load.elapsed()

        # Settle: every reservation past its TTL, and beat's expiry run after it.
        settle_started = time.monotonic()
        with direct(stack.postgres_port).cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(extract(epoch FROM max(expires_at) - now()), 0) "
                "FROM inventory_reservation WHERE status = 'active'"
            )
            due_in = max(0.0, float(cursor.fetchone()[0]))

            def active() -> int:
                cursor.execute(
                    "SELECT count(*) FROM inventory_reservation WHERE status = 'active'"
                )
                return cursor.fetchone()[0]

            with contextlib.suppress(AssertionError):
                wait_until(
                    lambda: active() == 0,
                    due_in + EXPIRY_BUDGET_SECONDS,
                    "every reservation to expire",
                    interval=1,
                )
            expiry_settled = time.monotonic() - settle_started
            reconcile = run_python(["manage.py", "shell", "-c", RECONCILE], stack.env)
            output = (reconcile.stdout + reconcile.stderr).splitlines()
            repairs = [line for line in output if line.startswith("repairs")]
            # What the soak left the counters at, before the repair: a take whose
            # process died before its give-back leaves one low, a failover to a
            # replica that missed writes either way.
            repaired = [
                {k: record.get(k) for k in ("sku", "redis_value", "database_value")}
                for line in output
                if "reconciled inventory counter" in line
                for record in [_json(line)]
            ]
            redis = stack.sentinels.client()
            product_books = books(cursor)
            gate = {
                sku: (
                    None
                    if (raw := redis.get(f"inventory:available:{sku}")) is None
                    else int(raw),
                    b.on_hand - b.reserved,
                )
                for sku, b in product_books.items()
            }
            cursor.execute(RESERVATIONS_QUERY)
            rows = cursor.fetchall()
            cursor.execute(
                "SELECT task_name, exception, failed_at FROM core_failedtask "
                "ORDER BY failed_at"
            )
            failed_tasks = cursor.fetchall()
        checks = audit(
            load, rows, product_books, gate, failed_tasks, faults, wall_started
        )
        harness = [f for f in faults if f.note.startswith("HARNESS")]
        checks.append(
            Check(
                "every fault ran as scheduled",
                not harness
                and all(f.ended is not None for f in faults)
                and stack.bouncer.poll() is None,
                "; ".join(f"{f.kind}: {f.note}" for f in harness) or "all ran",
            )
        )

        stuck = [f"{f.kind} at +{f.started:.1f}s: {f.stuck}" for f in faults if f.stuck]
        checks.append(
            Check(
                "the frozen worker consumed again after each thaw",
                not stuck,
                "; ".join(stuck)
                or "; ".join(f.note for f in faults if f.kind == "broker-freeze"),
            )
        )

        history = load.history
        attempts = [a for r in history for a in r.attempts]
        reserves = [r for r in history if r.kind == "reserve"]
        acked = [r for r in reserves if r.final.status == 201]
        by_status = Counter(row[2] for row in rows)
        failed_keys = {r.key for r in reserves if r.final.status != 201}
        report = {
            "seed": CHAOS_SEED,
            "load_seconds": round(load_seconds, 1),
            "settle_seconds": round(expiry_settled, 1),
            "faults": dict(Counter(f.kind for f in faults)),
            "requests (HTTP attempts)": len(attempts),
            "logical requests": dict(Counter(r.kind for r in history)),
            "answered 2xx": sum(1 for r in history if r.final.status in (200, 201)),
            "failed (no answer after retries)": sum(
                1 for r in history if not r.answered
            ),
            "retried (logical requests)": sum(
                1 for r in history if len(r.attempts) > 1
            ),
            "replayed (201 Idempotent-Replayed)": sum(
                1 for a in attempts if a.replayed
            ),
            "reservations acknowledged": len(acked),
            "reservations refused (409)": sum(
                1 for r in reserves if r.final.code == "insufficient_stock"
            ),
            "reservations committed but never acknowledged": sum(
                1 for row in rows if row[1] in failed_keys
            ),
            "confirms / cancels acknowledged (200)": [
                sum(1 for r in history if r.kind == k and r.final.status == 200)
                for k in ("confirm", "cancel")
            ],
            "reservation rows by status": dict(by_status),
            "attempt failures": dict(
                Counter(a.error or str(a.status) for a in attempts if retryable(a))
            ),
            "restarts by the supervisor": {s.name: s.starts - 1 for s in slots},
            "unexpected exits": sum(len(s.unexpected_exits) for s in slots),
            "reconcile": repairs[-1] if repairs else reconcile.stderr[-500:],
            "counters repaired (redis, database)": repaired,
        }
    finally:
        if load is not None:
            load.stop.set()
        postgres_resume()
        if supervisor is not None:
            supervisor.stop()
        proxy.stop()
        balancer.stop()
        print("faults as run:")
        for fault in faults:
            ran = (
                f"ran +{fault.started:.1f}..+{fault.ended:.1f}s"
                if fault.started is not None and fault.ended is not None
                else "did not finish"
            )
            print(f"  {fault.describe()}  {ran}  {fault.note}")
        for slot in slots:
            for exit_ in slot.unexpected_exits:
                print("unexpected exit:", exit_)
        print("chaos soak:", json.dumps(report, indent=2), flush=True)
        for item in checks:
            print(f"  [{'ok' if item.ok else 'VIOLATED'}] {item.name}: {item.detail}")
        print(
            f"seed {CHAOS_SEED}: make chaos CHAOS_SECONDS={CHAOS_SECONDS} "
            f"CHAOS_SEED={CHAOS_SEED}",
            flush=True,
        )
    violated = [c for c in checks if not c.ok]
    assert checks, "the audit did not run"
    assert not violated, [f"{c.name}: {c.detail}" for c in violated]
