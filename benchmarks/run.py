"""Run one benchmark suite: ``python -m benchmarks.run sql|redis|table``.

Prints a Markdown table of medians (microseconds per operation, ratio to this package's
engine) and whether each target of the suite is met, and writes the raw samples to
``benchmarks/results/<suite>.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import platform
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["scale"]:
        return _scale(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "suite", choices=["sql", "redis", "table", "touch-sql", "touch-redis", "touch-table"]
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument(
        "--chunk", type=int, default=20, help="operations a contender runs before the next one"
    )
    parser.add_argument(
        "--durable",
        action="store_true",
        help="PostgreSQL commits wait for the WAL flush (synchronous_commit=on)",
    )
    parser.add_argument(
        "--prepared",
        action="store_true",
        help="PostgreSQL prepares statements (OPTIONS server_side_binding and prepare_threshold)",
    )
    args = parser.parse_args(argv)
    if args.durable:
        os.environ["DAS_BENCH_SYNCHRONOUS_COMMIT"] = "on"
    if args.prepared:
        os.environ["DAS_BENCH_PREPARED"] = "1"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django
    from django.test.utils import setup_databases, teardown_databases

    django.setup()
    from django.conf import settings

    from . import harness

    kind, _, engine = args.suite.partition("-")  # "touch-redis": the touch suite on Redis
    suite = importlib.import_module(f"benchmarks.contenders_{kind}")
    needs_database = getattr(suite, "NEEDS_DATABASE", False) or engine == "sql"
    operations = getattr(suite, "OPERATIONS", harness.OPERATIONS)
    if needs_database:
        databases = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    try:
        contenders = suite.contenders(engine) if engine else suite.contenders()
        results = harness.run(
            contenders,
            rounds=args.rounds,
            iterations=args.iterations,
            chunk=args.chunk,
            operations=operations,
        )
    finally:
        if needs_database:
            teardown_databases(databases, verbosity=0)

    names = [c.name for c in contenders]
    print(
        f"\n{args.suite}: {args.rounds} rounds x {args.iterations} operations, median of "
        f"per-round means; Python {platform.python_version()}, Django {django.get_version()}"
        + (
            f"; PostgreSQL synchronous_commit={settings.SYNCHRONOUS_COMMIT}"
            + ("; prepared statements" if os.environ.get("DAS_BENCH_PREPARED") else "")
            if needs_database
            else ""
        )
        + "\n"
    )
    print(harness.table(results, names, suite.BASELINE, operations))
    print("\nClient CPU time (us per operation):\n")
    print(harness.table(results, names, suite.BASELINE, operations, metric="cpu"))
    print()
    met = True
    for target, speedup, ok in harness.verdicts(results, suite.TARGETS):
        met &= ok
        print(
            f"{'met   ' if ok else 'MISSED'} {target.describe()}: {target.contender} is "
            f"{speedup:.2f}x {target.reference} (target >= {target.ratio}x)"
        )
    out = pathlib.Path(__file__).parent / "results" / f"{args.suite}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                **{f"{name}/{op}": samples for (name, op), samples in results.samples.items()},
                **{f"{name}/{op}/cpu": samples for (name, op), samples in results.cpu.items()},
            },
            indent=1,
        )
    )
    return 0 if met else 1


def _scale(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run scale")
    parser.add_argument("parts", nargs="*", choices=[[], *SCALE_PARTS], default=[])
    parser.add_argument("--size", choices=["small", "full"], default="full")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    from . import scale

    return scale.main(args.parts, args.size)


SCALE_PARTS = ("sql", "redis", "table", "warm")


if __name__ == "__main__":
    sys.exit(main())
