#!/usr/bin/env bash
# What make bench-serving needs besides the project's own .venv: wrk (Debian package, installed
# when missing and we are root), and one virtualenv per peer server under bench/.venvs/<peer>,
# created only when missing or when its requirements or lock file changed. Each peer installs its
# requirements.txt with the versions its requirements.lock pins (make lock writes both locks).
# Usage: setup.sh [peer ...]   (default: every peer)
set -euo pipefail
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq wrk
  else
    echo "wrk is missing: sudo apt-get install -y wrk" >&2
    exit 1
  fi
fi
here="$(cd "$(dirname "$0")" && pwd)"
venvs="$(cd "$here/.." && pwd)/.venvs"
python="${PYTHON:-python3}"
peers=("$@")
[ ${#peers[@]} -gt 0 ] || peers=(mlserver kserve bentoml ray)
mkdir -p "$venvs"
for peer in "${peers[@]}"; do
  req="$here/peers/$peer/requirements.txt"
  lock="$here/peers/$peer/requirements.lock"
  venv="$venvs/$peer"
  stamp="$venv/.requirements.sha256"
  want="$(cat "$req" "$lock" | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "bench venv $peer: up to date"
    continue
  fi
  echo "bench venv $peer: installing $(grep -v '^#' "$req" | tr '\n' ' ')"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q -c "$here/../../requirements.lock" pip
  if "$venv/bin/python" -m pip install -q -r "$req" -c "$lock" > "$venv.pip.log" 2>&1; then
    echo "$want" > "$stamp"
    "$venv/bin/python" -m pip freeze > "$venv.freeze.txt"
  else
    echo "bench venv $peer: FAILED, see $venv.pip.log" >&2
    tail -5 "$venv.pip.log" >&2
  fi
done
