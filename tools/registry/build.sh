#!/usr/bin/env bash
# Builds the OCI distribution registry (github.com/distribution/distribution/v3/cmd/registry, the
# registry behind Docker Hub and most private registries) from the Go module proxy into a cache
# keyed by version, only when it is missing. Its module has no replace directives, so a plain
# `go install` builds it. The real-node test tier (tests/e2e_node) runs it on loopback and pushes
# kaip's images there, so the kubelet pulls them by reference as on any cluster.
#
#   tools/registry/build.sh          # prints the path of the registry binary
#   tools/registry/build.sh --check  # the same, or status 1 when it is not built (builds nothing)
#
# Runs under `nice -n 19`: the machines we share have two cores.
set -euo pipefail

REGISTRY_VERSION=v3.1.2
CACHE="${KAIP_REGISTRY_CACHE:-$HOME/.cache/kaip-k8s/registry-$REGISTRY_VERSION}"
BINARY="$CACHE/registry"

if [[ -x "$BINARY" ]]; then
    echo "$BINARY"
    exit 0
fi
[[ "${1:-}" == "--check" ]] && exit 1
command -v go >/dev/null || { echo "go is not on PATH (need Go >= 1.26)" >&2; exit 1; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if [[ ! -x "$BINARY" ]]; then
    start=$SECONDS
    # From outside any module: `go install pkg@version` must not see one of ours.
    (cd "$CACHE" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS= GOBIN="$CACHE" nice -n 19 go install \
        -trimpath \
        -ldflags "-s -w -X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION" \
        "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION" >&2)
    echo "built registry $REGISTRY_VERSION in $((SECONDS - start))s" >&2
fi
echo "$BINARY"
