"""Django's own session tests against every engine of this package.

``SessionTestsMixin`` (tests/sessions_tests/tests.py of Django's source tree) is what Django
runs against each of its own engines. Its wheel has no tests: ``scripts/test`` fetches them
from the sdist of the installed release (``das_install_django_tests`` in
scripts/_install.sh) into .cache/django-tests/<version>/sessions_tests/.

For each engine, a ``TestCase`` is built the way Django builds its own (``TestCase`` on the
engine's database for SQL, ``SimpleTestCase``, with no database, for the others), with
``backend`` set to the engine's ``SessionStore`` as the ``engine`` fixture configures it, and
run with unittest: every test must pass, and the only skips allowed are those Django's mixin
declares itself.
"""

from __future__ import annotations

import functools
import importlib
import sys
import unittest
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings
from django.test import SimpleTestCase, TestCase, override_settings

from django_azure_sessions.conf import TOP_LEVEL_DEFAULTS, app_settings

pytestmark = pytest.mark.django_db(databases="__all__")

ROOT = Path(__file__).resolve().parents[1]
DJANGO_TESTS = ROOT / ".cache" / "django-tests" / django.__version__
MIDDLEWARE = "django_azure_sessions.middleware.SessionMiddleware"


@functools.cache
def session_tests_mixin() -> type[Any]:
    """Django's ``SessionTestsMixin``, imported from the fetched ``sessions_tests`` package.

    Its module imports ``sessions_tests.models``, which defines a model: the import runs with
    ``sessions_tests`` in ``INSTALLED_APPS``, as in Django's own test run (no table is made;
    the mixin does not use it).
    """
    if not (DJANGO_TESTS / "sessions_tests" / "tests.py").is_file():
        pytest.fail(
            f"Django {django.__version__}'s own session tests are missing "
            f"({DJANGO_TESTS.relative_to(ROOT)}/sessions_tests/tests.py): run scripts/test, "
            "which fetches them from the sdist on PyPI; for another Python than .venv's, run "
            "`bash -c 'source scripts/_install.sh && das_install_django_tests "
            f"{sys.executable}'`.",
            pytrace=False,
        )
    sys.path.insert(0, str(DJANGO_TESTS))
    try:
        with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, "sessions_tests"]):
            module = importlib.import_module("sessions_tests.tests")
    finally:
        sys.path.remove(str(DJANGO_TESTS))
    if Path(module.__file__ or "").parent != DJANGO_TESTS / "sessions_tests":
        pytest.fail(f"sessions_tests was imported from {module.__file__}, not {DJANGO_TESTS}")
    mixin: type[Any] = module.SessionTestsMixin
    return mixin


def mixin_test_names(mixin: type[Any]) -> list[str]:
    return list(unittest.defaultTestLoader.getTestCaseNames(mixin))


def declared_skips(mixin: type[Any]) -> dict[str, str]:
    """The tests that Django's mixin itself marks to skip (``unittest.skip*``), with the reason
    it gives. A skip decided at run time (``skipIfDBFeature``...) is not declared: it fails the
    test below, which shows it with its reason."""
    skips = {}
    for name in mixin_test_names(mixin):
        method = getattr(mixin, name)
        if getattr(method, "__unittest_skip__", False):
            skips[name] = getattr(method, "__unittest_skip_why__", "")
    return skips


class Result(unittest.TestResult):
    """A unittest result that also keeps the names of the tests that passed."""

    def __init__(self) -> None:
        super().__init__()
        self.passed: list[str] = []

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self.passed.append(name_of(test))


def name_of(test: Any) -> str:
    """A test's method name; a subtest's with its parameters; else what unittest says."""
    test_case = getattr(test, "test_case", None)  # a subtest
    if test_case is not None:
        return f"{name_of(test_case)} {test._subDescription()}"
    method = getattr(test, "_testMethodName", None)
    return str(method or test)  # no method: an error in setUpClass or tearDownClass


def summary(trace: str) -> str:
    """The last lines of a traceback: where it failed, and with what."""
    lines = trace.rstrip().splitlines()
    return "\n      ".join(lines[-6:])


def build_case(mixin: type[Any], engine: type[Any], name: str) -> type[unittest.TestCase]:
    """Django's tests on ``engine``, in the TestCase flavour Django uses for such an engine."""
    backend_module = settings.SESSION_ENGINE
    if backend_module.endswith(".sql"):  # a database engine: like Django's DatabaseSessionTests
        alias = app_settings.SQL.DATABASE
        base: type[SimpleTestCase] = TestCase
        databases: set[str] = {alias}
    else:  # like Django's CacheSessionTests: no database may be queried
        base, databases = SimpleTestCase, set()
    return type(
        f"DjangoSessionTests_{name}",
        (mixin, base),
        {
            "backend": engine,
            "session_engine": backend_module,
            "databases": databases,
            "__module__": __name__,
            "__qualname__": f"DjangoSessionTests_{name}",
        },
    )


def test_djangos_own_session_tests(
    engine: type[Any], request: pytest.FixtureRequest, record_property: Any
) -> None:
    mixin = session_tests_mixin()
    name = request.node.callspec.params["engine"]
    # What a deployment runs: the package's middleware, activity tracking as by default.
    assert MIDDLEWARE in settings.MIDDLEWARE
    default_track = TOP_LEVEL_DEFAULTS["TRACK"]
    assert "TRACK" not in app_settings.raw
    assert default_track == app_settings.TRACK
    assert "last_activity" in default_track

    case = build_case(mixin, engine, name)
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(case)
    expected = mixin_test_names(mixin)
    assert suite.countTestCases() == len(expected) > 0
    result = Result()
    suite.run(result)

    skipped = {name_of(test): reason for test, reason in result.skipped}
    counts = {
        "run": result.testsRun,
        "passed": len(result.passed),
        "skipped": len(skipped),
        "failed": len(result.failures) + len(result.unexpectedSuccesses),
        "errors": len(result.errors),
        "expected failures": len(result.expectedFailures),
    }
    record_property("django_session_tests", counts)
    print(f"Django {django.__version__} SessionTestsMixin on {name}: {counts}")

    problems = [
        f"  {kind} {name_of(test)}:\n      {summary(trace)}"
        for kind, outcomes in (("FAIL", result.failures), ("ERROR", result.errors))
        for test, trace in outcomes
    ]
    problems += [f"  UNEXPECTED SUCCESS {name_of(test)}" for test in result.unexpectedSuccesses]
    if problems:
        pytest.fail(
            f"Django {django.__version__}'s session tests on {name}: {counts}\n"
            + "\n".join(problems),
            pytrace=False,
        )
    declared = declared_skips(mixin)
    assert skipped == declared, (
        f"{name}: the skips must be those Django's mixin declares, {declared}; they are {skipped}"
    )
    assert result.testsRun == len(expected)
    expected_failures = [name_of(test) for test, _ in result.expectedFailures]
    assert sorted(result.passed + list(skipped) + expected_failures) == sorted(expected)
