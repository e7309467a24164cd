#!/usr/bin/env bash
# Builds helm from the Go module proxy into the same cache as the Kubernetes test binaries
# (~/.cache/kaip-k8s/helm-<version>/helm), only when it is missing or its module changed. It builds
# in this directory's wrapper module (go.mod), which keeps every module helm shares with the test
# control plane at the control plane's version: with one Go build cache, the k8s.io packages
# (about 60 % of helm's) compile once for both. Runs under `nice -n 19`: the machines we share
# have two cores.
#
#   tools/helm/build.sh          # prints the path of the helm binary
#   tools/helm/build.sh --check  # prints it too, but builds nothing: exit 1 when it is missing
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
HELM_VERSION=v3.19.5
CACHE="${KAIP_HELM_CACHE:-$HOME/.cache/kaip-k8s/helm-$HELM_VERSION}"
BINARY="$CACHE/helm"
LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
STAMP="$({ cat "$HERE/go.mod" "$HERE/go.sum"; echo "$LDFLAGS"; } | sha256sum | cut -d' ' -f1)"

# shellcheck source=../lib/go-tool.sh
source "$HERE/../lib/go-tool.sh"

build() { # OUT
    grep -qE "helm.sh/helm/v3 $HELM_VERSION( |$)" "$HERE/go.mod" \
        || { echo "tools/helm/go.mod does not require helm $HELM_VERSION" >&2; return 1; }
    cd "$HERE" && nice -n 19 go build -trimpath -ldflags "$LDFLAGS" -o "$1" helm.sh/helm/v3/cmd/helm
}

go_tool_main helm "$HELM_VERSION" "$BINARY" "$STAMP" build "${1:-}"
