"""The at-scale benchmarks: ``python -m benchmarks.run scale [sql|redis|table|warm ...]``.

Too slow for CI (they fill stores with hundreds of thousands of sessions). Each part is a
module ``benchmarks.scale_<part>`` with ``measure(size: str) -> list[Check]``: every figure
is measured side by side with what it is compared to, in the same run, and printed with its
target and whether it is met. ``--size small`` runs each part on a few thousand sessions, to
try the code; the figures that count are from ``--size full`` (the default).
"""

from __future__ import annotations

import dataclasses
import importlib
import resource
import sys

PARTS = ("sql", "redis", "table", "warm")


@dataclasses.dataclass
class Check:
    """One measured figure against its target."""

    what: str  # "SQL cleanup, 200,000 expired + 20,000 live: engine / Django's db engine"
    figure: str  # "0.81x (engine 3.1 s, django 3.8 s)"
    target: str  # "<= 1.0x"
    met: bool | None  # None: a figure reported without a target (e.g. peak RSS)

    def line(self) -> str:
        verdict = {True: "met   ", False: "MISSED", None: "info  "}[self.met]
        return f"{verdict} {self.what}: {self.figure}" + (
            f" (target {self.target})" if self.target else ""
        )


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(parts: list[str], size: str) -> int:
    checks: list[Check] = []
    for part in parts or PARTS:
        module = importlib.import_module(f"benchmarks.scale_{part}")
        found = module.measure(size)
        for check in found:
            print(check.line(), flush=True)
        checks += found
    print(
        "\nAt scale, "
        + (
            "every target met."
            if all(c.met is not False for c in checks)
            else "some targets MISSED."
        )
    )
    return 0 if all(c.met is not False for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], "full"))
