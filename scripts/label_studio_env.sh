#!/usr/bin/env bash
# A cached virtual environment holding Label Studio, for tests/test_label_studio_live.py.
#
# Label Studio pins Django, pandas, pyarrow, boto3 and dozens more: installed into .venv it
# would fight our own pins, so it gets a venv of its own. That venv lives in the user's cache
# (outside the clone, so a clean clone on the same machine reuses it), keyed by the pinned
# version: a version bump builds a new one, a rerun costs a second. A venv is only used once
# its last step wrote the .complete stamp, so an interrupted install is redone, not trusted.
#
# Prints the venv's folder as the last line of stdout; progress goes to stderr.
# IHP_LABEL_STUDIO_CACHE overrides the cache folder (default ~/.cache/ihp-rt).
set -euo pipefail

VERSION=1.23.2
CACHE="${IHP_LABEL_STUDIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ihp-rt}"
VENV="$CACHE/label-studio-$VERSION"
PYTHON="${PYTHON:-python3}"

if [ -f "$VENV/.complete" ] && [ -x "$VENV/bin/label-studio" ]; then
    echo "label-studio $VERSION: cached in $VENV" >&2
    echo "$VENV"
    exit 0
fi

start=$(date +%s)
echo "label-studio $VERSION: installing into $VENV (first run only; several minutes)" >&2
rm -rf "$VENV"
mkdir -p "$CACHE"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "label-studio==$VERSION" >&2

# Label Studio itself needs no torch; a GPU build sneaking in through some dependency would cost
# gigabytes of download on every fresh machine, so refuse it loudly rather than carry it.
if "$VENV/bin/python" -m pip list --format=freeze 2>/dev/null | grep -iE '^(torch|nvidia-[a-z0-9-]+)==' >&2; then
    echo "label-studio $VERSION pulled torch / CUDA packages (above): refusing this venv" >&2
    rm -rf "$VENV"
    exit 1
fi
# Not `label-studio --version`: that migrates a database in ~/.local/share and asks PyPI for news.
"$VENV/bin/python" -c "import label_studio, sys; sys.exit(label_studio.__version__ != '$VERSION')" \
    || { echo "label-studio $VERSION does not import in $VENV" >&2; exit 1; }

touch "$VENV/.complete"
echo "label-studio $VERSION: installed in $(( $(date +%s) - start )) s" >&2
echo "$VENV"
