#!/usr/bin/env bash
# The project's test command (README, .ci/run): release profile, so that the numeric code
# is optimised and the binary the README runs is the one under test (one build profile).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release "$@"
