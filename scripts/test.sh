#!/usr/bin/env bash
# The project's test command (README, .ci/run): release profile, so that the numeric code
# is optimised and the binary the README runs is the one under test (one build profile).
#
# The S3 tests of `sedflow run` need a real S3-compatible server: moto (pinned below) is
# installed once into target/test-venv and its moto_server path exported for the tests,
# which start it on a free port. If it cannot be installed the S3 tests say so loudly and
# skip, unless SEDFLOW_REQUIRE_S3_TESTS is set (CI sets it), where they fail.
#
# The Slurm test (tests/slurm.rs) needs a single-node Slurm cluster on localhost:
# scripts/slurm_local.sh installs slurm-wlm and munge (apt-get, as root) and starts munged,
# slurmctld and slurmd, or reuses the cluster already up; its slurm.conf path is exported as
# SEDFLOW_SLURM_CONF. If that fails the Slurm test says so loudly and skips, unless
# SEDFLOW_REQUIRE_SLURM_TESTS is set (CI sets it), where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_SPEC='moto[server]==5.2.1'
VENV=target/test-venv
if [ ! -x "$VENV/bin/moto_server" ] || [ "$(cat "$VENV/.spec" 2>/dev/null)" != "$MOTO_SPEC" ]; then
    echo "scripts/test.sh: installing $MOTO_SPEC into $VENV (S3 test server)" >&2
    if python3 -m venv "$VENV" >&2 && "$VENV/bin/pip" install -q "$MOTO_SPEC" >&2; then
        echo "$MOTO_SPEC" > "$VENV/.spec"
    else
        echo "scripts/test.sh: WARNING: could not install $MOTO_SPEC; the S3 tests will be skipped" >&2
    fi
fi
if [ -x "$VENV/bin/moto_server" ]; then
    export SEDFLOW_MOTO_SERVER="$PWD/$VENV/bin/moto_server"
fi

# The readers test (tests/outputs.rs) reads a run's output with the tools users read it with:
# pyarrow.dataset, polars and DuckDB over the whole output directory, astropy for the units.
# Pinned, installed once into target/readers-venv; without them that test says so loudly and
# skips, unless SEDFLOW_REQUIRE_READER_TESTS is set (CI sets it), where it fails.
READERS_SPEC='astropy==8.0.2 pandas==3.1.1 pyarrow==26.0.1 polars==2.1.0 duckdb==2.0.0'
READERS_VENV=target/readers-venv
if [ ! -x "$READERS_VENV/bin/python" ] || [ "$(cat "$READERS_VENV/.spec" 2>/dev/null)" != "$READERS_SPEC" ]; then
    echo "scripts/test.sh: installing $READERS_SPEC into $READERS_VENV (readers test)" >&2
    # shellcheck disable=SC2086 # the spec is a list of requirements
    if python3 -m venv "$READERS_VENV" >&2 && "$READERS_VENV/bin/pip" install -q $READERS_SPEC >&2; then
        echo "$READERS_SPEC" > "$READERS_VENV/.spec"
    else
        echo "scripts/test.sh: WARNING: could not install $READERS_SPEC; the readers test will be skipped" >&2
    fi
fi
if [ -f "$READERS_VENV/.spec" ]; then
    export SEDFLOW_READERS_PYTHON="$PWD/$READERS_VENV/bin/python"
fi

t0=$(date +%s%N)
if SLURM_CONF_PATH=$(./scripts/slurm_local.sh); then
    export SEDFLOW_SLURM_CONF=$SLURM_CONF_PATH
    echo "scripts/test.sh: Slurm test cluster up ($SLURM_CONF_PATH) after $(( ($(date +%s%N) - t0) / 1000000 )) ms" >&2
else
    echo "scripts/test.sh: WARNING: no Slurm test cluster (see above); the Slurm test will be skipped" >&2
fi

# The report page's browser test needs Debian's chromium (headless). Installed here when
# missing and we may (root with apt-get); otherwise that test skips loudly, unless
# SEDFLOW_REQUIRE_BROWSER_TESTS is set (CI), where it fails.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "scripts/test.sh: installing chromium (report browser test)" >&2
        if ! { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends chromium >&2; }; then
            echo "scripts/test.sh: WARNING: could not install chromium; the browser test will be skipped" >&2
        fi
    else
        echo "scripts/test.sh: WARNING: no chromium and cannot apt-get it; the browser test will be skipped" >&2
    fi
fi
exec cargo test --release "$@"
