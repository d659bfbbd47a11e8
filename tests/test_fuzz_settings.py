"""Whatever ``AZURE_SESSIONS`` holds, the system checks report it; they never crash."""

from __future__ import annotations

from typing import Any

from django.core.checks import run_checks
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from django_azure_sessions.conf import SECTIONS, TOP_LEVEL_DEFAULTS, section_keys

ENGINES = [f"django_azure_sessions.backends.{name}" for name in ("sql", "redis", "table")]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "redis://127.0.0.1:6379/0",
            "rediss://:pw@x.redis.cache.windows.net:6380/0?password=q",
            "unix:///tmp/redis.sock",
            "UseDevelopmentStorage=true",
            "AccountName=a; AccountKey=k",
            "https://a.table.core.windows.net/?sig=s",
            "default",
            "postgres",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=10), inner, max_size=3),
    ),
    max_leaves=8,
)


def section(name: str) -> st.SearchStrategy[Any]:
    keys = st.sampled_from([*sorted(section_keys(name)), "UNKNOWN"])
    return st.one_of(values, st.dictionaries(keys, values, max_size=4))


config = st.one_of(
    values,
    st.fixed_dictionaries(
        {},
        optional={
            **{key: values for key in TOP_LEVEL_DEFAULTS},
            **{name: section(name) for name in SECTIONS},
        },
    ),
)


@settings(max_examples=300, deadline=None)
@given(engine=st.sampled_from(ENGINES), azure_sessions=config)
def test_checks_report_and_never_crash(engine: str, azure_sessions: Any) -> None:
    with override_settings(SESSION_ENGINE=engine, AZURE_SESSIONS=azure_sessions):
        messages = run_checks()
    assert all(message.id for message in messages)
