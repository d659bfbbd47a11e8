"""``manage.py migratesessions --from ENGINE``: copy live sessions into another engine.

To move a site to another engine without signing anyone out: run it once before switching
``SESSION_ENGINE`` (it copies every live session), switch, and run it again right after (it
copies the sessions created in between; those already copied are left alone). A session
changed in the old engine between the first copy and the switch keeps its first copy.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...transfer import copy, engine_module, our_store, source_records


class Command(BaseCommand):
    help = (
        "Copies live sessions from one session engine into a django_azure_sessions engine, "
        "keeping their keys, never overwriting a session the target already has."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from",
            dest="source",
            required=True,
            help="The engine to copy from: a django_azure_sessions engine (sql, redis, table, "
            "or its module path), or django.contrib.sessions.backends.db / cached_db.",
        )
        parser.add_argument(
            "--to",
            dest="target",
            default=None,
            help="The django_azure_sessions engine to copy into: sql, redis, table or its "
            "module path (default: SESSION_ENGINE).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Sessions read from the source at a time (default: 500).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be copied; write nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        source = engine_module(options["source"])
        target = engine_module(options["target"] or settings.SESSION_ENGINE)
        if source == target:
            raise CommandError("--from and --to name the same engine.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        started = time.monotonic()
        try:
            store = our_store(target, "Sessions can be copied")
            records = source_records(source, options["batch_size"], store)
            counts = copy(records, store.get_storage(), dry_run=options["dry_run"])
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if options["verbosity"] >= 1:
            verb = "Would copy" if options["dry_run"] else "Copied"
            self.stdout.write(
                f"{verb} {counts.copied} sessions from {source} to {target} in "
                f"{time.monotonic() - started:.1f} s; {counts.present} already there, "
                f"{counts.skipped} expired, empty or unreadable skipped."
            )
