#!/usr/bin/env bash
# The project's one test command (README, .ci/run): set up .venv, lint, run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser test drives Debian's Chromium (never a browser a test tool downloads); as root
# on Debian, install it when missing. Elsewhere the test says how to provide one and skips.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq --no-install-recommends chromium >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
fi
# The scale-out tests run Debian's redis-server, and the deployment test Debian's nginx in front
# of two workers; as root on Debian, install them when missing (elsewhere those tests skip).
missing=""
command -v redis-server >/dev/null || missing="$missing redis-server"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
if [ -n "$missing" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    # shellcheck disable=SC2086  # one word per package
    apt-get install -y -qq --no-install-recommends $missing >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; }
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
.venv/bin/ruff check .
# The Label Studio integration test is left to scripts/test_label_studio.sh (.ci/run runs it next).
.venv/bin/python -m pytest -m "not label_studio" "$@"
