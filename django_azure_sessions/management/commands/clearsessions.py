"""``manage.py clearsessions``: Django's command, made for operators.

List ``django_azure_sessions`` before ``django.contrib.sessions`` in ``INSTALLED_APPS`` for
this one to run (system check W001 says so). On this package's engines:

- it removes expired sessions in bounded batches, each committed on its own, so a run that
  stops (``--max-runtime``, a failure, a kill) leaves a store that the next run finishes;
- ``--dry-run`` counts what a run would remove, and removes nothing;
- ``--max-runtime SECONDS`` stops between batches once the time is up and says how many are
  left;
- on a terminal it draws a progress bar; otherwise it writes one summary line (``-v 0``:
  nothing, for a cron job that should mail nothing);
- a failed batch ends the run with an error and a non-zero exit status, after saying how
  many sessions were removed before it.

Django's own engines (and others') are cleaned by their ``clear_expired()``, as Django's
command does; the options above need an engine of this package.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...core.session import StoreSession
from ...core.storage import Storage, Sweep
from ...secrets import redact
from ...transfer import session_store

BAR_WIDTH = 30
REDRAW_EVERY = 0.2  # seconds between two drawings of the progress bar


class Command(BaseCommand):
    help = "Removes expired sessions from the session store (SESSION_ENGINE, or --engine)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--engine",
            default=None,
            help="The session engine to clean, if not SESSION_ENGINE (e.g. after a move): "
            "sql, redis, table, or an engine's module path.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count the expired sessions, and remove nothing.",
        )
        parser.add_argument(
            "--max-runtime",
            type=_seconds,
            default=None,
            metavar="SECONDS",
            help="Stop after the batch running when this time is up; the next run goes on.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        engine = options["engine"] or settings.SESSION_ENGINE
        try:
            store = session_store(engine)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if not _counts(store):
            if options["dry_run"] or options["max_runtime"] is not None:
                raise CommandError(
                    f"--dry-run and --max-runtime need an engine of django-azure-sessions, "
                    f"not {engine!r}."
                )
            self._clear_other(store, engine, options["verbosity"])
            return
        storage = store.get_storage()
        if options["dry_run"]:
            count = self._attempt(storage.count_expired, storage, engine, "Counting")
            if options["verbosity"] >= 1:
                self.stdout.write(
                    f"{count} {storage.expired_items} would be removed from {engine} "
                    "(dry run: nothing removed)."
                )
            return
        self._clear(storage, engine, options["max_runtime"], options["verbosity"])

    def _clear(
        self, storage: Storage, engine: str, max_runtime: float | None, verbosity: int
    ) -> None:
        bar = None
        if verbosity >= 1 and self.stdout.isatty():
            total = self._attempt(storage.count_expired, storage, engine, "Counting")
            bar = ProgressBar(self.stdout, total, storage.expired_items)
        sweep = Sweep(max_runtime, bar.update if bar else None)
        started = time.monotonic()
        removed = self._attempt(
            lambda: storage.clear_expired(sweep), storage, engine, "Removing", sweep
        )
        if bar is not None:
            bar.finish()
        took = time.monotonic() - started
        if sweep.halted:
            left = self._attempt(storage.count_expired, storage, engine, "Counting", sweep)
            if verbosity >= 1:
                self.stdout.write(
                    f"Stopped after {took:.1f} s (--max-runtime): {removed} "
                    f"{storage.expired_items} removed from {engine}, {left} left; the next "
                    "run goes on."
                )
        elif verbosity >= 1:
            self.stdout.write(
                f"{removed} {storage.expired_items} removed from {engine} in {took:.2f} s."
            )

    def _attempt(
        self,
        call: Callable[[], int],
        storage: Storage,
        engine: str,
        action: str,
        sweep: Sweep | None = None,
    ) -> int:
        """``call()``, with a failure turned into a CommandError (exit status 1) that says
        what ``sweep`` removed before it; secrets are redacted from the store's message."""
        try:
            return call()
        except Exception as exc:  # any store's failure: the operator gets one clear line
            removed = sweep.count if sweep is not None else 0
            raise CommandError(
                f"{action} {storage.expired_items} of {engine} failed "
                f"({type(exc).__name__}: {redact(str(exc))}) after {removed} were removed; "
                "what was removed stays removed, and the next run goes on."
            ) from exc

    def _clear_other(self, store: type[Any], engine: str, verbosity: int) -> None:
        started = time.monotonic()
        try:
            store.clear_expired()
        except NotImplementedError:
            raise CommandError(
                f"Session engine {engine!r} doesn't support clearing expired sessions."
            ) from None
        if verbosity >= 1:
            self.stdout.write(
                f"Expired sessions removed from {engine} in {time.monotonic() - started:.2f} s."
            )


class ProgressBar:
    """A one-line bar redrawn in place: ``[#####.....]  45%  450000 of 1000000 ...``."""

    def __init__(self, out: Any, total: int, items: str) -> None:
        self.out = out
        self.total = total
        self.items = items
        self.started = time.monotonic()
        self.drawn = 0.0
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.drawn >= REDRAW_EVERY:
            self.drawn = now
            self._draw(now)

    def finish(self) -> None:
        if self.done:
            self._draw(time.monotonic())
            self.out.write("")  # ends the line (OutputWrapper adds the newline)

    def _draw(self, now: float) -> None:
        # The total was counted before the run: sessions that expire meanwhile go past it.
        total = max(self.total, self.done, 1)
        filled = BAR_WIDTH * self.done // total
        rate = self.done / max(now - self.started, 1e-6)
        self.out.write(
            f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {100 * self.done // total:3d}%  "
            f"{self.done} of {total} {self.items}, {rate:.0f}/s",
            ending="",
        )
        self.out.flush()


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds above 0")
    return seconds


def _counts(store: type[Any]) -> bool:
    """Whether ``store`` is an engine of this package that does not clear in its own way."""
    return (
        issubclass(store, StoreSession)
        and store.clear_expired.__func__ is StoreSession.clear_expired.__func__  # type: ignore[attr-defined]
    )
