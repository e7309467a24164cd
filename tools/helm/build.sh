#!/usr/bin/env bash
# Builds helm from the Go module proxy into the same version-keyed cache as the Kubernetes test
# binaries (~/.cache/kaip-k8s/helm-<version>/helm), only when it is missing. Helm's module has no
# replace directives, so a plain `go install` builds it. Runs under `nice -n 19`: the machines we
# share have two cores.
#
#   tools/helm/build.sh          # prints the path of the helm binary
#   tools/helm/build.sh --check  # prints it too, but builds nothing: exit 1 when it is missing
set -euo pipefail

HELM_VERSION=v3.22.0
CACHE="${KAIP_HELM_CACHE:-$HOME/.cache/kaip-k8s/helm-$HELM_VERSION}"
BINARY="$CACHE/helm"

if [[ -x "$BINARY" ]]; then
    echo "$BINARY"
    exit 0
elif [[ "${1:-}" == "--check" ]]; then
    echo "$BINARY"
    exit 1
fi
command -v go >/dev/null || { echo "go is not on PATH (need Go >= 1.24)" >&2; exit 1; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if [[ ! -x "$BINARY" ]]; then
    start=$SECONDS
    GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$CACHE" nice -n 19 go install -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
    echo "built helm $HELM_VERSION in $((SECONDS - start))s" >&2
fi
echo "$BINARY"
