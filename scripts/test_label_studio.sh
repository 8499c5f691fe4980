#!/usr/bin/env bash
# The Label Studio integration test (tests/test_label_studio_live.py, marker label_studio): a
# real Label Studio with `ihp-rt serve` as its ML backend. Too slow for scripts/test.sh's budget,
# so .ci/run runs it after the main suite. Needs .venv (scripts/test.sh makes it) and the openssl
# command (tests/tls_loopback.py makes the CA of the https stand-in for a cloud bucket with it).
#
# Label Studio is installed first, outside pytest's per-test timeout, into its cached venv;
# an install that fails fails this script (on CI as anywhere: it was asked for by name).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    echo "no .venv here: run scripts/test.sh first (it creates .venv with the dev extra)" >&2
    exit 1
fi
start=$(date +%s)
venv=$(bash scripts/label_studio_env.sh | tail -n 1)
echo "Label Studio venv ready in $(( $(date +%s) - start )) s: $venv"
IHP_LABEL_STUDIO_VENV="$venv" exec .venv/bin/python -m pytest -m label_studio tests/test_label_studio_live.py "$@"
