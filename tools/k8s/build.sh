#!/usr/bin/env bash
# Builds the Kubernetes test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok) and the real test node's kubelet and kube-proxy from the Go
# module proxy into a cache keyed by version, building
# only what is missing or was built from different go.mod/go.sum files. Idempotent; a warm run
# takes well under a second. tools/k8s/README.md says why it is built this way and what it costs.
#
#   tools/k8s/build.sh            # build what is missing into $KAIP_K8S_CACHE
#   tools/k8s/build.sh --check    # print the cache directory; exit 0 when nothing needs building,
#                                 # 1 otherwise; builds nothing
#   KAIP_K8S_CACHE=/tmp/k8s tools/k8s/build.sh
#
# Go builds run under `nice -n 19` because the machines we share have two cores.
set -euo pipefail

KUBE_VERSION=v1.35.4
KWOK_VERSION=v0.8.0
GATEWAY_API_VERSION=v1.6.3
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${KAIP_K8S_CACHE:-$HOME/.cache/kaip-k8s/$KUBE_VERSION}"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

KUBE_MINOR="${KUBE_VERSION#v1.}"
KUBE_MINOR="${KUBE_MINOR%%.*}"
KUBE_LDFLAGS="-s -w \
 -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$KUBE_MINOR \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$KUBE_MINOR"
# kwok's own version variables already say 0.8.0 in its tagged source.
KWOK_LDFLAGS="-s -w"
KUBE_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
# The real node's binaries (tests/e2e_node): their own module, node/, so the control plane's
# go.sum and stamps never change for them; the Go build cache is shared (~1-2 min warm).
NODE_BINARIES=(kubelet kube-proxy)

log() { printf '[k8s-build %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# A stamp per binary records what it was built from; a different stamp means rebuild.
stamp_of() { # module-dir extra...
    { cat "$1/go.mod" "$1/go.sum"; shift; printf '%s\n' "$@"; } | sha256sum | cut -d' ' -f1
}
is_current() { # binary stamp
    [[ -x "$CACHE/$1" && -f "$CACHE/.$1.stamp" && "$(cat "$CACHE/.$1.stamp")" == "$2" ]]
}

etcd_stamp="$(stamp_of "$HERE/etcd" "-s -w")"
kube_stamp="$(stamp_of "$HERE/kube" "$KUBE_LDFLAGS")"
node_stamp="$(stamp_of "$HERE/node" "$KUBE_LDFLAGS")"
kwok_stamp="$(printf '%s\n' "$KWOK_VERSION" "$KWOK_LDFLAGS" | sha256sum | cut -d' ' -f1)"
crd_dir="$CACHE/crds/gateway-api"
crds_current() { [[ -f "$crd_dir/.version" && "$(cat "$crd_dir/.version")" == "$GATEWAY_API_VERSION" ]]; }

if [[ "${1:-}" == "--check" ]]; then
    echo "$CACHE"
    is_current etcd "$etcd_stamp" && is_current kwok "$kwok_stamp" && crds_current || exit 1
    for b in "${KUBE_BINARIES[@]}"; do is_current "$b" "$kube_stamp" || exit 1; done
    for b in "${NODE_BINARIES[@]}"; do is_current "$b" "$node_stamp" || exit 1; done
    exit 0
elif [[ $# -gt 0 ]]; then
    echo "usage: tools/k8s/build.sh [--check]" >&2
    exit 2
fi

mkdir -p "$CACHE"
# Two builds into one cache (CI and `make k8s-up`, say) would race; the second waits.
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
    log "another build holds $CACHE/.build.lock; waiting"
    flock 9
fi

command -v go >/dev/null || { log "go is not on PATH (need Go >= 1.26)"; exit 1; }
log "cache $CACHE ($(go version | cut -d' ' -f3)); free disk: $(df -h "$CACHE" | awk 'NR==2 {print $4}')"
total_start=$SECONDS
built=0

# etcd: its own module (it pins different grpc/otel versions than Kubernetes).
if is_current etcd "$etcd_stamp"; then
    log "etcd: cached"
else
    log "etcd: building (~2 min cold)"
    start=$SECONDS
    (cd "$HERE/etcd" && nice -n 19 go build -trimpath -ldflags "-s -w" -o "$CACHE/etcd.tmp" .)
    mv -f "$CACHE/etcd.tmp" "$CACHE/etcd"
    echo "$etcd_stamp" >"$CACHE/.etcd.stamp"
    log "etcd: built in $((SECONDS - start))s"
    built=1
fi

# build_missing DIR STAMP HINT BINARY...: one `go build` in DIR's module for every BINARY whose
# stamp is not STAMP, so the packages they share compile once.
build_missing() {
    local dir=$1 stamp=$2 hint=$3 b
    shift 3
    local missing=() pkgs=()
    for b in "$@"; do
        if is_current "$b" "$stamp"; then log "$b: cached"; else missing+=("$b"); fi
    done
    ((${#missing[@]})) || return 0
    log "${missing[*]}: building ($hint)"
    local start=$SECONDS tmp="$CACHE/.$dir.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    (cd "$HERE/$dir" && nice -n 19 go build -trimpath -ldflags "$KUBE_LDFLAGS" -o "$tmp/" "${pkgs[@]}")
    for b in "${missing[@]}"; do
        mv -f "$tmp/$b" "$CACHE/$b"
        echo "$stamp" >"$CACHE/.$b.stamp"
    done
    rm -rf "$tmp"
    log "${missing[*]}: built in $((SECONDS - start))s"
    built=1
}

# The control plane, then kubelet and kube-proxy (node/: the same Kubernetes, its own module).
build_missing kube "$kube_stamp" "~15 min on 2 cores with a cold Go build cache, ~1 min warm" \
    "${KUBE_BINARIES[@]}"
build_missing node "$node_stamp" "~1-2 min with the control plane's Go build cache" \
    "${NODE_BINARIES[@]}"

# kwok: a plain `go install` (its module has no replace directives).
if is_current kwok "$kwok_stamp"; then
    log "kwok: cached"
else
    log "kwok: building $KWOK_VERSION"
    start=$SECONDS
    gobin="$CACHE/.kwok.tmp"
    rm -rf "$gobin" && mkdir -p "$gobin"
    # From outside any module: `go install pkg@version` must not see one of ours.
    (cd "$gobin" && GOFLAGS= GOBIN="$gobin" nice -n 19 go install -trimpath \
        -ldflags "$KWOK_LDFLAGS" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
    mv -f "$gobin/kwok" "$CACHE/kwok"
    rm -rf "$gobin"
    echo "$kwok_stamp" >"$CACHE/.kwok.stamp"
    log "kwok: built in $((SECONDS - start))s"
    built=1
fi

# Gateway API CRDs (kaip renders HTTPRoutes): the standard channel's YAML, straight from the
# sigs.k8s.io/gateway-api module; the full-cluster fixture and `make k8s-up` install them.
if crds_current; then
    log "gateway-api CRDs: cached"
else
    log "gateway-api CRDs: fetching $GATEWAY_API_VERSION"
    module_dir="$(cd "$CACHE" && GOFLAGS= go mod download -json \
        "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$module_dir/config/crd/standard" ]] || { log "gateway-api module has no CRDs"; exit 1; }
    rm -rf "$crd_dir" && mkdir -p "$crd_dir"
    for f in "$module_dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
        [[ "$f" == *_vap_* ]] && continue  # a ValidatingAdmissionPolicy, not a CRD
        install -m 0644 "$f" "$crd_dir/"
    done
    echo "$GATEWAY_API_VERSION" >"$crd_dir/.version"
    log "gateway-api CRDs: $(ls "$crd_dir" | wc -l) files"
fi

if ((built)); then
    # sed reads to the end: `head -1` may close the pipe while a binary still writes, and under
    # pipefail that SIGPIPE (exit 141) failed a whole cold build at its last line.
    "$CACHE/kube-apiserver" --version
    "$CACHE/kubectl" version --client 2>/dev/null | sed -n 1p
    "$CACHE/etcd" --version | sed -n 1p
fi
log "done in $((SECONDS - total_start))s: $CACHE"
