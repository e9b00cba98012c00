#!/usr/bin/env bash
# The demo command (README): installs grantkeeper into .venv if needed, then runs `grantkeeper demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/bootstrap
exec .venv/bin/grantkeeper demo "$@"
