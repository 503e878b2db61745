#!/usr/bin/env bash
# Installs schemathesis (PyPI), pinned, into a virtual environment in the cache once, and
# prints the path of its command. Later runs find it there and return at once.
#
# The OpenAPI contract test (e2e/tests/openapi_contract.rs) runs it against every service's
# /openapi.json: requests generated from the document, valid and invalid, and every answer
# checked against the document. Installing takes about 15 s (measured, with pip's cache warm).
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
venv="${XDG_CACHE_HOME:-$HOME/.cache}/shop/schemathesis-$SCHEMATHESIS_VERSION"
bin="$venv/bin/schemathesis"
# Written last: a half-done install is never taken for a finished one.
done_marker="$venv/.installed"
if [ -f "$done_marker" ]; then
  echo "$bin"
  exit 0
fi
python=$(command -v python3) || { echo "error: schemathesis needs Python 3.10 or newer (python3)" >&2; exit 1; }
printf '\033[1m==> %s\033[0m\n' "installing schemathesis==$SCHEMATHESIS_VERSION into $venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
touch "$done_marker"
echo "$bin"
