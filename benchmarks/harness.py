"""Side-by-side session benchmarks: every contender in one process, interleaved rounds.

A contender does three kinds of work on the same ~1 KB payload:

- ``read``: load an existing session (one key read);
- ``cycle``: load an existing session, change one key, save;
- ``create``: a new session and its first save.

Each round times ``iterations`` operations of one kind for every contender; contenders take
turns every ``chunk`` operations, in a shuffled order, so that drift in the machine's speed
hits all of them alike. The figure reported is the median over rounds of the mean time per
operation: wall-clock time, and the client's CPU time (``time.process_time``: this process
only, so the server's work and the network's wait are left out). Wall time is what a request
waits; CPU time is what the client library costs, which is all a client can change when a
round trip to the server takes most of the wall time.
"""

from __future__ import annotations

import abc
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

OPERATIONS = ("cycle", "read", "create")

PAYLOAD: dict[str, Any] = {
    "_auth_user_id": "1042",
    "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
    "_auth_user_hash": "7d1f0f3d1a0c9a0b5be9e3f6e5b4f1a2c3d4e5f60718293a4b5c6d7e8f901234",
    "cart": [{"sku": f"SKU-{n:05d}", "qty": n % 3 + 1, "price": "19.99"} for n in range(12)],
    "preferences": {"language": "en-gb", "currency": "GBP", "theme": "dark", "tz": "UTC"},
    "recently_viewed": [f"/products/{n}/" for n in range(8)],
}


class Contender(abc.ABC):
    """One way of keeping sessions, measured on the same work as the others."""

    name: str

    def setup(self) -> None:
        """Prepare the store (tables, connections)."""

    def teardown(self) -> None:
        """Release what ``setup`` took."""

    @abc.abstractmethod
    def prepare(self, count: int) -> list[Any]:
        """Create ``count`` sessions holding ``PAYLOAD``; return handles to them."""

    @abc.abstractmethod
    def read(self, handle: Any) -> None: ...

    @abc.abstractmethod
    def cycle(self, handle: Any, counter: int) -> None: ...

    @abc.abstractmethod
    def create(self) -> Any: ...


@dataclass(frozen=True)
class Target:
    """``contender`` must be at least ``ratio`` times as fast as ``reference`` at ``operation``.

    Ratios below 1 bound how much slower than ``reference`` (a floor) it may be.
    """

    operation: str
    contender: str
    reference: str
    ratio: float
    metric: str = "wall"  # or "cpu": the client's CPU time

    def speedup(self, medians: dict[tuple[str, str], float]) -> float:
        return medians[self.reference, self.operation] / medians[self.contender, self.operation]

    def describe(self) -> str:
        return self.operation + (" (client CPU)" if self.metric == "cpu" else "")


@dataclass
class Results:
    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    cpu: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def medians(self, metric: str = "wall") -> dict[tuple[str, str], float]:
        samples = self.cpu if metric == "cpu" else self.samples
        return {k: statistics.median(v) for k, v in samples.items()}


def run(
    contenders: Sequence[Contender],
    *,
    rounds: int = 7,
    iterations: int = 300,
    warmup: int = 50,
    chunk: int = 20,
    seed: int = 0,
    operations: Sequence[str] = OPERATIONS,
) -> Results:
    rng = random.Random(seed)
    results = Results()
    for contender in contenders:
        contender.setup()
    try:
        handles = {c.name: c.prepare(iterations) for c in contenders}
        for contender in contenders:  # warm connections, caches and code paths
            for n in range(warmup):
                contender.cycle(handles[contender.name][n % iterations], n)
                contender.read(handles[contender.name][n % iterations])
                contender.create()
        counter = 0
        for _ in range(rounds):
            for operation in operations:
                spent = dict.fromkeys((c.name for c in contenders), 0.0)
                used = dict.fromkeys((c.name for c in contenders), 0.0)
                # Contenders take turns every `chunk` operations, in a new order each turn,
                # so a burst of load from elsewhere on the machine hits them all alike.
                for first in range(0, iterations, chunk):
                    order = list(contenders)
                    rng.shuffle(order)
                    for contender in order:
                        own = handles[contender.name][first : first + chunk]
                        start = time.perf_counter()
                        cpu_start = time.process_time()
                        if operation == "read":
                            for handle in own:
                                contender.read(handle)
                        elif operation == "cycle":
                            for handle in own:
                                counter += 1
                                contender.cycle(handle, counter)
                        else:
                            for _ in own:
                                contender.create()
                        used[contender.name] += time.process_time() - cpu_start
                        spent[contender.name] += time.perf_counter() - start
                for name, seconds in spent.items():
                    per_op = seconds / iterations * 1e6
                    results.samples.setdefault((name, operation), []).append(per_op)
                    cpu_per_op = used[name] / iterations * 1e6
                    results.cpu.setdefault((name, operation), []).append(cpu_per_op)
    finally:
        for contender in contenders:
            contender.teardown()
    return results


def table(
    results: Results,
    names: Sequence[str],
    baseline: str,
    operations: Sequence[str] = OPERATIONS,
    metric: str = "wall",
) -> str:
    """A Markdown table: median microseconds per operation, and ratio to ``baseline``."""
    medians = results.medians(metric)
    lines = [
        "| contender | " + " | ".join(f"{op} (us)" for op in operations) + " |",
        "| --- | " + " | ".join("---:" for _ in operations) + " |",
    ]
    for name in names:
        cells = []
        for op in operations:
            value = medians[name, op]
            ratio = value / medians[baseline, op]
            cells.append(f"{value:,.0f}" + ("" if name == baseline else f" ({ratio:.2f}x)"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(results: Results, targets: Sequence[Target]) -> list[tuple[Target, float, bool]]:
    verdicts = []
    for target in targets:
        speedup = target.speedup(results.medians(target.metric))
        verdicts.append((target, speedup, speedup >= target.ratio))
    return verdicts
