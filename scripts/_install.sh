# Shared by scripts/test and scripts/demo (sourced, not run): install what a fresh clone lacks.
#
#   das_install       everything scripts/test needs: Debian's libmariadb-dev (mysqlclient
#                     compiles against it), chromium and chromium-driver (the browser tests);
#                     .venv with the project (editable, every extra), the test, lint and bench
#                     groups and tox; node_modules from package.json (Azurite); Django's own
#                     session tests for the Django in .venv (das_install_django_tests).
#   das_install_demo  only what scripts/demo needs: .venv with the project and every extra,
#                     plus the driver of DAS_DATABASE_URL's database (psycopg, or mysqlclient
#                     and libmariadb-dev); node_modules only for DAS_ENGINE=table without
#                     DAS_TABLE_CONNECTION_STRING (Azurite).
#
# Each part is skipped when its inputs have not changed since it last succeeded
# (DAS_REINSTALL=1 forces it); what das_install installed covers the demo too.
#
# Environment: DAS_PYTHON (default python3) builds .venv.

DAS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DAS_VENV="$DAS_ROOT/.venv"

das_say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
das_die() { printf '\033[31mERROR: %s\033[0m\n' "$*" >&2; exit 1; }

# Hash of the given files (absent ones count as empty), to tell whether an install is stale.
das_fingerprint() {
    local file
    for file in "$@"; do
        printf '%s\n' "$file"
        [[ -f $file ]] && cat "$file"
    done | sha256sum | cut -d' ' -f1
}

das_as_root() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        das_die "need root for: $*"
    fi
}

# Install the Debian packages of those named that are missing.
das_apt_install() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    das_say "Installing ${missing[*]} (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    das_as_root apt-get install -y -q "${missing[@]}" \
        || { das_as_root apt-get update -q && das_as_root apt-get install -y -q "${missing[@]}"; } \
        || das_die "could not install ${missing[*]} with apt-get"
}

# mysqlclient has no wheel: it compiles against MariaDB's C library, found through pkg-config.
das_mariadb_packages() {
    if ! command -v pkg-config >/dev/null || ! pkg-config --exists libmariadb; then
        echo libmariadb-dev pkg-config
    fi
}

# The browser tests drive Debian's Chromium through its chromedriver (never a downloaded one).
das_browser_packages() {
    [[ -x /usr/bin/chromium ]] || echo chromium
    [[ -x /usr/bin/chromedriver ]] || echo chromium-driver
}

das_install_system_packages() {
    # shellcheck disable=SC2046  # one word per package
    das_apt_install $(das_mariadb_packages) $(das_browser_packages)
}

# The names of pyproject.toml's [project.optional-dependencies], comma-separated.
das_extras() {
    awk '
        /^\[/ { in_extras = ($0 == "[project.optional-dependencies]"); next }
        in_extras && match($0, /^[A-Za-z0-9_.-]+[ \t]*=/) {
            name = substr($0, 1, RLENGTH); sub(/[ \t]*=$/, "", name)
            names = names (names ? "," : "") name
        }
        END { print names }
    ' "$DAS_ROOT/pyproject.toml"
}

# The requirement for PACKAGE in pyproject.toml (its test group pins the database drivers).
das_requirement() {
    grep -oE "\"$1(\\[[a-z,]+\\])?[<>=!~][^\"]*\"" "$DAS_ROOT/pyproject.toml" | head -n1 | tr -d '"'
}

# The database driver the demo needs for DAS_DATABASE_URL (SQLite needs none).
das_demo_driver() {
    local url=${DAS_DATABASE_URL:-}
    case ${url%%:*} in
        postgres | postgresql) das_requirement psycopg ;;
        mysql | mariadb) das_requirement mysqlclient ;;
    esac
}

# A stamp's content: what an install of MODE ("test" or "demo") was made from.
das_python_fingerprint() {
    local python=${DAS_PYTHON:-python3}
    printf '%s %s %s' "$1" "$("$python" --version 2>&1)" \
        "$(das_fingerprint "$DAS_ROOT/pyproject.toml" "${BASH_SOURCE[0]}")"
}

das_stamp_fresh() {  # MODE [extra]
    local stamp="$DAS_VENV/.das-installed-$1"
    [[ -x $DAS_VENV/bin/python && -f $stamp && -z ${DAS_REINSTALL:-} ]] \
        && [[ $(<"$stamp") == "$(das_python_fingerprint "$1") ${2:-}" ]]
}

das_venv() {
    local python=${DAS_PYTHON:-python3}
    command -v "$python" >/dev/null || das_die "$python not found (set DAS_PYTHON)"
    if [[ ! -x $DAS_VENV/bin/python ]]; then
        das_say "Creating $DAS_VENV with $("$python" --version 2>&1)"
        "$python" -m venv "$DAS_VENV" || das_die "could not create $DAS_VENV"
    fi
}

das_install_python() {
    local stamp="$DAS_VENV/.das-installed-test" extras
    das_stamp_fresh test && return
    das_venv
    rm -f "$stamp"
    das_say "Installing Python packages into .venv"
    # pip >= 25.1 reads pyproject.toml's [dependency-groups] (--group).
    "$DAS_VENV/bin/python" -m pip install -q --upgrade "pip>=25.1" \
        || das_die "could not upgrade pip"
    extras=$(das_extras)
    "$DAS_VENV/bin/python" -m pip install -q \
        --editable "$DAS_ROOT${extras:+[$extras]}" \
        --group "$DAS_ROOT/pyproject.toml:test" --group "$DAS_ROOT/pyproject.toml:lint" \
        --group "$DAS_ROOT/pyproject.toml:bench" \
        "tox>=4.22" \
        || das_die "pip install failed"
    printf '%s ' "$(das_python_fingerprint test)" >"$stamp"
}

das_install_demo_python() {
    local stamp="$DAS_VENV/.das-installed-demo" driver extras
    driver=$(das_demo_driver)
    # The test install has every driver the demo can use.
    das_stamp_fresh test && return
    das_stamp_fresh demo "$driver" && return
    if [[ $driver == mysqlclient* ]]; then
        # shellcheck disable=SC2046  # one word per package
        das_apt_install $(das_mariadb_packages)
    fi
    das_venv
    rm -f "$stamp"
    das_say "Installing the project into .venv${driver:+ (and $driver)}"
    extras=$(das_extras)
    # shellcheck disable=SC2086  # no driver: no word
    "$DAS_VENV/bin/python" -m pip install -q --editable "$DAS_ROOT${extras:+[$extras]}" \
        ${driver:+"$driver"} \
        || das_die "pip install failed"
    printf '%s %s' "$(das_python_fingerprint demo)" "$driver" >"$stamp"
}

das_install_node() {
    [[ -f $DAS_ROOT/package.json ]] || return 0
    local stamp="$DAS_ROOT/node_modules/.das-installed" fingerprint
    command -v npm >/dev/null || das_die "package.json needs npm, which is not installed"
    fingerprint=$(das_fingerprint "$DAS_ROOT/package.json" "$DAS_ROOT/package-lock.json")
    if [[ -f $stamp && $(<"$stamp") == "$fingerprint" && -z ${DAS_REINSTALL:-} ]]; then
        return
    fi
    das_say "Installing npm packages (package.json)"
    if [[ -f $DAS_ROOT/package-lock.json ]]; then
        (cd "$DAS_ROOT" && npm ci --no-audit --no-fund --loglevel=error) || das_die "npm ci failed"
    else
        (cd "$DAS_ROOT" && npm install --no-audit --no-fund --loglevel=error) \
            || das_die "npm install failed"
    fi
    printf '%s' "$fingerprint" >"$stamp"
}

# Django's own session tests (tests/sessions_tests/ of Django's source tree), which
# tests/test_django_suite.py runs against every engine. The wheel has no tests, the sdist of
# the same release has: it is downloaded from PyPI and only that directory is kept, in
# .cache/django-tests/<version>/sessions_tests/ (gitignored). The argument is the Python whose
# Django it is for (default: .venv's; another env, such as a tox env, passes its own).
DAS_DJANGO_TESTS_DIR="$DAS_ROOT/.cache/django-tests"
das_install_django_tests() {
    local python=${1:-$DAS_VENV/bin/python} version dest stamp fingerprint tmp archive
    version=$("$python" -c 'import django; print(django.__version__)') \
        || das_die "could not read Django's version from $python"
    dest="$DAS_DJANGO_TESTS_DIR/$version"
    stamp="$dest/.das-installed"
    fingerprint="django==$version tests/sessions_tests/"
    if [[ -f $stamp && $(<"$stamp") == "$fingerprint" && -f $dest/sessions_tests/tests.py
        && -z ${DAS_REINSTALL:-} ]]; then
        return
    fi
    das_say "Fetching Django $version's own session tests (its sdist, from PyPI)"
    tmp=$(mktemp -d) || das_die "could not create a temporary directory"
    if ! "$python" -m pip download -q --no-deps --no-binary :all: "django==$version" \
        -d "$tmp" >&2; then
        rm -rf "$tmp"
        das_die "could not download the sdist of django==$version from PyPI"
    fi
    archive=$(compgen -G "$tmp/[Dd]jango-$version.tar.gz" | head -n1) || true
    mkdir -p "$tmp/out"
    # The sdist's top directory is django-<version>/ (Django-<version>/ in older releases).
    if [[ -z $archive ]] \
        || ! tar -xzf "$archive" -C "$tmp/out" --no-same-owner --strip-components=2 --wildcards \
            '*/tests/sessions_tests/*' \
        || [[ ! -f $tmp/out/sessions_tests/tests.py ]]; then
        rm -rf "$tmp"
        das_die "the sdist of django==$version has no tests/sessions_tests/tests.py"
    fi
    rm -rf "$dest"
    mkdir -p "$dest" && mv "$tmp/out/sessions_tests" "$dest/" \
        || { rm -rf "$tmp"; das_die "could not write $dest"; }
    rm -rf "$tmp"
    printf '%s' "$fingerprint" >"$stamp"
}

das_install() {
    das_install_system_packages
    das_install_python
    das_install_node
    das_install_django_tests
    export PATH="$DAS_VENV/bin:$DAS_ROOT/node_modules/.bin:$PATH"
}

das_install_demo() {
    das_install_demo_python
    if [[ ${DAS_ENGINE:-sql} == table && -z ${DAS_TABLE_CONNECTION_STRING:-} ]]; then
        das_install_node
    fi
    export PATH="$DAS_VENV/bin:$DAS_ROOT/node_modules/.bin:$PATH"
}
