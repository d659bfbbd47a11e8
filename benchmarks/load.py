"""Load test: ``python -m benchmarks.load [--engines ...] [--servers ...] [--clients 50]
[--duration 60]``.

The demo site (``testproject/``) runs on a free loopback port with ``--workers`` processes
under gunicorn (WSGI, sync workers), under uvicorn (ASGI: gunicorn's ``UvicornWorker``), or,
as ``uvicorn-workers``, under ``uvicorn --workers`` itself; once per session engine: this
package's ``sql`` (PostgreSQL), ``redis`` and ``table`` (an Azurite this script starts), and
Django's own ``db`` (PostgreSQL) and ``cache`` (django-redis) engines. One asyncio process
plays the clients. Clients are put in groups that share one signed-in session (one cookie);
each client then reads the session (``GET /load/``) or adds one to its own key in it
(``POST /load/<client>/``) until the time is up. Lost writes are the increments the server
acknowledged that the session no longer holds at the end.

Each run uses its own PostgreSQL database, Redis key prefix and Azurite, removed at the end.
Prints a Markdown table and writes ``benchmarks/results/load-<run>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import django

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-table"
# Azurite's documented development account: a well-known public key, not a secret.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

ENGINES = ("sql", "redis", "table", "django-db", "django-cache")
LABELS = {
    "sql": "django-azure-sessions sql",
    "redis": "django-azure-sessions redis",
    "table": "django-azure-sessions table",
    "django-db": "Django's db engine",
    "django-cache": "Django's cache engine (django-redis)",
}
SERVERS = ("gunicorn", "uvicorn", "uvicorn-workers")
ASGI_APP = "testproject.asgi:application"
CSRF_FIELD = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
MAX_REQUESTS_PER_CLIENT = 1_000_000
# Checking the password costs Django's PBKDF2 rounds, seconds on a busy machine: sign-ins
# (not measured) take turns and may take longer than the measured requests.
SIGN_IN_TIMEOUT = aiohttp.ClientTimeout(total=60)
SIGN_INS_AT_ONCE = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on port {port} within {timeout}s")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a process started in its own group, and its workers with it."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextlib.contextmanager
def postgres_database(name: str, host: str, port: int, user: str) -> Iterator[None]:
    import psycopg
    from psycopg import sql

    conninfo = psycopg.conninfo.make_conninfo(host=host, port=port, user=user, dbname="postgres")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


@contextlib.contextmanager
def azurite(port: int, log: Path) -> Iterator[str]:
    """An in-memory Azurite (Table service); yields its connection string."""
    process = start(
        [
            str(AZURITE),
            *("--tableHost", "127.0.0.1", "--tablePort", str(port)),
            *("--inMemoryPersistence", "--silent", "--disableTelemetry", "--skipApiVersionCheck"),
        ],
        os.environ.copy(),
        log,
    )
    try:
        wait_for_port(port, process, 30)
        yield (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
    finally:
        stop(process, signal.SIGINT)


def delete_redis_keys(url: str, pattern: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        for _ in range(100_000):
            batch = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    break
            if not batch:
                break
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


def uvicorn_worker() -> str:
    """The uvicorn-worker package's class, or the one uvicorn still ships (deprecated)."""
    return (
        "uvicorn_worker.UvicornWorker"
        if importlib.util.find_spec("uvicorn_worker")
        else "uvicorn.workers.UvicornWorker"
    )


def server_command(server: str, port: int, workers: int) -> list[str]:
    gunicorn = [
        sys.executable,
        *("-m", "gunicorn", "--workers", str(workers), "--bind", f"127.0.0.1:{port}"),
        *("--log-level", "warning", "--timeout", "60"),
    ]
    if server == "gunicorn":
        return [*gunicorn, "--worker-class", "sync", "testproject.wsgi:application"]
    if server == "uvicorn":
        # Django's documented way to run uvicorn workers. `uvicorn --workers N` hands them a
        # listener without TCP_NODELAY (uvicorn issue #3149): +40 ms per keep-alive request.
        return [*gunicorn, "--worker-class", uvicorn_worker(), ASGI_APP]
    return [
        sys.executable,
        *("-m", "uvicorn", "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port)),
        *("--log-level", "warning", "--no-access-log", ASGI_APP),
    ]


@dataclasses.dataclass
class Client:
    """One simulated user: its id, its group's cookies, and what it saw."""

    id: int
    group: int
    latencies: list[float] = dataclasses.field(default_factory=list)
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    reads: int = 0
    writes_acked: int = 0
    writes_unknown: int = 0


@dataclasses.dataclass
class Group:
    """Clients that share one signed-in session."""

    id: int
    cookies: dict[str, str] = dataclasses.field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        return {
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            "X-CSRFToken": self.cookies.get("csrftoken", ""),
            "Referer": "http://127.0.0.1/",
        }

    def remember(self, response: aiohttp.ClientResponse) -> None:
        for name, morsel in response.cookies.items():
            self.cookies[name] = morsel.value


async def ready(http: aiohttp.ClientSession, base: str, timeout: float = 120) -> None:
    """Wait for the workers: the port opens before they have loaded Django."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(f"{base}/login/") as page:
                if page.status == 200:
                    return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the server did not answer within {timeout:g}s")


async def sign_in(
    http: aiohttp.ClientSession, base: str, group: Group, turns: asyncio.Semaphore
) -> None:
    """Sign the group in; a busy machine may time a first attempt out."""
    for attempt in range(1, 4):
        try:
            async with turns:
                return await sign_in_once(http, base, group)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if attempt == 3:
                raise RuntimeError(f"sign-in failed 3 times, last: {exc!r}") from exc
            group.cookies.clear()


async def sign_in_once(http: aiohttp.ClientSession, base: str, group: Group) -> None:
    async with http.get(f"{base}/login/") as page:
        body = await page.read()
        group.remember(page)
        if page.status != 200:
            raise RuntimeError(f"GET /login/ answered {page.status}")
    match = CSRF_FIELD.search(body)
    if match is None:
        raise RuntimeError("no CSRF token on the sign-in page")
    form = {
        "username": "demo",
        "password": "azure-sessions-demo",
        "csrfmiddlewaretoken": match.group(1).decode(),
        "next": "/",
    }
    async with http.post(
        f"{base}/login/",
        data=form,
        headers=group.headers(),
        allow_redirects=False,
        timeout=SIGN_IN_TIMEOUT,
    ) as response:
        await response.read()
        group.remember(response)
        if response.status != 302 or "sessionid" not in group.cookies:
            raise RuntimeError(f"POST /login/ answered {response.status}, no session cookie")


async def run_client(
    http: aiohttp.ClientSession,
    base: str,
    client: Client,
    group: Group,
    deadline: float,
    write_ratio: float,
) -> None:
    rng = random.Random(client.id)
    headers = group.headers()
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if time.monotonic() >= deadline:
            return
        write = rng.random() < write_ratio
        began = time.perf_counter()
        try:
            if write:
                request = http.post(f"{base}/load/{client.id}/", headers=headers)
            else:
                request = http.get(f"{base}/load/", headers=headers)
            async with request as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            client.errors[type(exc).__name__] += 1
            client.writes_unknown += write
            continue
        if status >= 400:
            client.errors[f"HTTP {status}"] += 1
            client.writes_unknown += write and status >= 500
            continue
        client.latencies.append(time.perf_counter() - began)
        if write:
            client.writes_acked += 1
        else:
            client.reads += 1


async def final_counters(http: aiohttp.ClientSession, base: str, group: Group) -> dict[str, int]:
    for attempt in range(5):
        try:
            async with http.get(f"{base}/load/", headers=group.headers()) as response:
                if response.status == 200:
                    return dict((await response.json())["counters"])
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"could not read the final counters of group {group.id}")


async def load(
    base: str, clients: int, group_size: int, duration: float, write_ratio: float, timeout: float
) -> dict[str, Any]:
    groups = [Group(n) for n in range((clients + group_size - 1) // group_size)]
    users = [Client(n, n // group_size) for n in range(clients)]
    connector = aiohttp.TCPConnector(limit=clients + len(groups))
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as http:
        await ready(http, base)
        turns = asyncio.Semaphore(SIGN_INS_AT_ONCE)
        await asyncio.gather(*(sign_in(http, base, group, turns) for group in groups))
        cpu, began = time.process_time(), time.monotonic()
        deadline = began + duration
        await asyncio.gather(
            *(run_client(http, base, c, groups[c.group], deadline, write_ratio) for c in users)
        )
        elapsed = time.monotonic() - began
        client_cpu = (time.process_time() - cpu) / elapsed
        finals = await asyncio.gather(*(final_counters(http, base, g) for g in groups))

    lost = 0
    for client in users:
        final = finals[client.group].get(f"counter_{client.id}", 0)
        lost += max(0, client.writes_acked - final)
    latencies = sorted(t for c in users for t in c.latencies)
    errors: Counter[str] = Counter()
    for client in users:
        errors.update(client.errors)
    ok = len(latencies)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if ok > 1 else [0.0] * 99
    return {
        "elapsed_s": elapsed,
        "requests_ok": ok,
        "requests_per_s": ok / elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "max_ms": (latencies[-1] if latencies else 0.0) * 1000,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "reads": sum(c.reads for c in users),
        "writes_acked": sum(c.writes_acked for c in users),
        "writes_unknown": sum(c.writes_unknown for c in users),
        "lost_writes": lost,
        "client_cpu": client_cpu,
    }


def run_combo(
    server: str, engine: str, env: dict[str, str], args: argparse.Namespace, log: Path
) -> dict[str, Any]:
    port = free_port()
    # Persistent connections only where a worker has one thread: under ASGI each request runs
    # in a thread of its own, whose connection would outlive it (Django's docs: use 0).
    env = {**env, "DAS_ENGINE": engine, "DAS_CONN_MAX_AGE": "600" if server == "gunicorn" else "0"}
    process = start(server_command(server, port, args.workers), env, log)
    try:
        wait_for_port(port, process, 60)
        base = f"http://127.0.0.1:{port}"
        return asyncio.run(
            load(base, args.clients, args.group, args.duration, args.write_ratio, args.timeout)
        )
    finally:
        stop(process)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| server | engine | requests/s | p50 (ms) | p99 (ms) | errors | lost writes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['server']} | {LABELS[r['engine']]} | failed: {r['error']} ||||")
            continue
        lines.append(
            f"| {r['server']} | {LABELS[r['engine']]} | {r['requests_per_s']:,.0f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} "
            f"| {r['lost_writes']} of {r['writes_acked']:,} |"
        )
    return "\n".join(lines)


def save(out: Path, run: str, args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    out.write_text(
        json.dumps(
            {
                "run": run,
                "args": vars(args),
                "python": platform.python_version(),
                "django": django.get_version(),
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "uvicorn_worker": uvicorn_worker(),
                "results": results,
            },
            indent=2,
        )
    )


def names(value: str, allowed: Sequence[str]) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = set(chosen) - set(allowed)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose among {', '.join(allowed)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--engines", type=lambda v: names(v, ENGINES), default=list(ENGINES))
    parser.add_argument(
        "--servers", type=lambda v: names(v, SERVERS), default=["gunicorn", "uvicorn"]
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60, help="seconds per server x engine")
    parser.add_argument("--group", type=int, default=5, help="clients that share one session")
    parser.add_argument("--write-ratio", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=2, help="processes of each server")
    parser.add_argument("--timeout", type=float, default=10, help="seconds one request may take")
    parser.add_argument("--durable", action="store_true", help="PostgreSQL synchronous_commit=on")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="user@host:port")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    if not 0 < args.clients <= 1000 or not 0 < args.duration <= 3600 or args.group < 1:
        parser.error("--clients must be 1..1000, --duration 0..3600 s, --group at least 1")

    run = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    tag = run.replace("-", "_")
    RESULTS.mkdir(exist_ok=True)
    logs = RESULTS / f"load-{run}"
    logs.mkdir()
    pg_user, _, pg_address = args.pg.rpartition("@")
    pg_host, _, pg_port = pg_address.partition(":")
    database = f"das_load_{tag}"
    commit = "on" if args.durable else "off"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "PYTHONPATH": str(ROOT),
        "DAS_DEBUG": "0",
        "DAS_LOG_ERRORS": "1",
        "DAS_DATABASE_URL": (
            f"postgres://{pg_user}@{pg_host}:{pg_port}/{database}"
            f"?options={quote(f'-c synchronous_commit={commit}')}"
        ),
        "DAS_REDIS_URL": args.redis_url,
        "DAS_TABLE_NAME": f"load{tag.replace('_', '')}",
    }
    results: list[dict[str, Any]] = []
    out = RESULTS / f"load-{run}.json"
    with contextlib.ExitStack() as stack:
        stack.enter_context(postgres_database(database, pg_host, int(pg_port or 5432), pg_user))
        stack.callback(delete_redis_keys, args.redis_url, f"*load-{run}*")
        if "table" in args.engines:
            env["DAS_TABLE_CONNECTION_STRING"] = stack.enter_context(
                azurite(free_port(), logs / "azurite.log")
            )
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env={**env, "DAS_ENGINE": "sql"},
            check=True,
            timeout=300,
        )
        for server in args.servers:
            for engine in args.engines:
                print(
                    f"{server} x {engine}: {args.clients} clients, {args.duration:g} s", flush=True
                )
                combo_env = {**env, "DAS_KEY_PREFIX": f"load-{run}-{server}-{engine}:"}
                row: dict[str, Any] = {"server": server, "engine": engine}
                try:
                    row.update(
                        run_combo(server, engine, combo_env, args, logs / f"{server}-{engine}.log")
                    )
                except Exception as exc:  # one failed combination must not hide the others
                    row["error"] = f"{type(exc).__name__}: {exc}"
                results.append(row)
                save(out, run, args, results)  # a run cut short keeps the rows it measured
                print(table([row]).splitlines()[-1], flush=True)

    print(
        f"\n{args.clients} clients ({args.group} per session, {args.write_ratio:.0%} writes), "
        f"{args.duration:g} s per row, {args.workers} workers per server; Python "
        f"{platform.python_version()}, Django {django.get_version()}, PostgreSQL "
        f"synchronous_commit={commit}\n"
    )
    print(table(results))
    for r in results:
        if r.get("error_kinds"):
            print(f"{r['server']} x {r['engine']} errors: {r['error_kinds']}")
    print(f"\nwrote {out.relative_to(ROOT)}; server logs in {logs.relative_to(ROOT)}/")
    # Django's engines are expected to lose writes to a shared session; this package's are not.
    failed = [r for r in results if "error" in r]
    lost = [r for r in results if r.get("lost_writes") and not r["engine"].startswith("django")]
    return 1 if failed or lost else 0


if __name__ == "__main__":
    sys.exit(main())
