#!/usr/bin/env bash
# Installs and builds what the tests need besides the Python virtualenv (`make venv` owns that):
# the Debian packages tests call and the Go tools built from the module proxy. It never touches
# the virtualenv and never starts a service. Idempotent: a component that is ready costs one quick
# check; only a missing or stale one is installed or built. One line per component, with the time
# it took; a long install says so before it starts and shows its own progress, indented.
#
#   tools/setup.sh                    # every component (what `make setup` and `make test` run)
#   tools/setup.sh helm lua           # only these
#   tools/setup.sh --list             # the components and what each is for
#   KAIP_SKIP_KUBE=1 tools/setup.sh   # leave out the components of the Kubernetes tiers
#
# Components live in tools/setup.d/*.sh, sourced in name order; each file declares one with
#
#   component NAME "what it is for" [kube]   # kube: left out when KAIP_SKIP_KUBE=1
#   NAME_ready()   { ...; }   # status 0 when nothing needs doing: quick, changes nothing
#   NAME_install() { ...; }   # install or build it (output is shown indented)
#   NAME_note()    { ...; }   # optional: one line printed before a long install starts
#
# and may use the helpers below: apt_install, need_go, elapsed. CONTRIBUTING.md walks through it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NAMES=()
declare -A ABOUT=() TAG=()

component() { # NAME "what it is for" [kube]
    NAMES+=("$1")
    ABOUT[$1]="$2"
    TAG[$1]="${3:-}"
}

say() { printf 'setup: %s\n' "$*"; }

elapsed() { # START (an $EPOCHREALTIME): seconds since, one decimal
    awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'
}

_apt_updated=0
apt_install() { # PACKAGE...: install the Debian packages that are not installed yet
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    local sudo=()
    if ! command -v apt-get >/dev/null; then
        echo "not a Debian-based system: install the equivalent of: ${missing[*]}" >&2
        return 1
    elif [[ "$(id -u)" != 0 ]]; then
        if sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "missing Debian packages: run sudo apt-get install -y ${missing[*]}" >&2
            return 1
        fi
    fi
    if ((!_apt_updated)); then
        "${sudo[@]}" apt-get update -qq
        _apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends \
        "${missing[@]}"
}

need_go() { # MINOR: fail with a clear message unless Go 1.MINOR or newer is on PATH
    local have
    have="$(go env GOVERSION 2>/dev/null || true)"
    have="${have#go1.}"
    if [[ -z "$have" || "${have%%.*}" -lt "$1" ]]; then
        echo "needs Go >= 1.$1 on PATH (found: ${have:+go1.$have}${have:-none}); see https://go.dev/dl/" >&2
        return 1
    fi
}

for f in "$ROOT"/tools/setup.d/*.sh; do
    # shellcheck source=/dev/null
    source "$f"
done

if [[ "${1:-}" == "--list" ]]; then
    for name in "${NAMES[@]}"; do
        printf '%-10s %s%s\n' "$name" "${ABOUT[$name]}" "${TAG[$name]:+ [${TAG[$name]}]}"
    done
    exit 0
fi
selected=("$@")
((${#selected[@]})) || selected=("${NAMES[@]}")
for name in "${selected[@]}"; do
    [[ -n "${ABOUT[$name]+set}" ]] || {
        say "no component '$name' (tools/setup.sh --list shows them)"
        exit 2
    }
done

cd "$ROOT"
total="$EPOCHREALTIME"
width=0
for name in "${selected[@]}"; do ((${#name} > width)) && width=${#name}; done
for name in "${selected[@]}"; do
    label="$(printf "%-${width}s" "$name")"
    if [[ "${TAG[$name]}" == kube && "${KAIP_SKIP_KUBE:-}" == 1 ]]; then
        say "$label skipped: KAIP_SKIP_KUBE=1 (the Kubernetes tiers are skipped on purpose)"
        continue
    fi
    start="$EPOCHREALTIME"
    if "${name}_ready"; then
        say "$label ready ($(elapsed "$start"))"
        continue
    fi
    if declare -F "${name}_note" >/dev/null; then
        say "$label $("${name}_note")"
    fi
    say "$label installing: ${ABOUT[$name]}"
    set +e
    (set -e; "${name}_install") 2>&1 | sed -u 's/^/    /'
    status=${PIPESTATUS[0]}
    set -e
    if ((status)); then
        say "$label FAILED after $(elapsed "$start") (exit $status); the lines above say why"
        exit 1
    elif ! "${name}_ready"; then
        say "$label FAILED: installed in $(elapsed "$start"), but ${name}_ready still says no"
        exit 1
    fi
    say "$label done in $(elapsed "$start")"
done
say "all ready in $(elapsed "$total")"
