#!/usr/bin/env bash
# Builds the Kueue controller manager (sigs.k8s.io/kueue/cmd/kueue) from the Go module proxy into
# the same cache as the Kubernetes test binaries (~/.cache/kaip-k8s/kueue-<version>/kueue), with
# Kueue's CRDs from the same module beside it (crds/), only when missing or its module changed.
# The e2e_kube tier (tests/e2e_kube/test_training_kueue.py) runs it against the test control
# plane, so admission, suspension and quota of TrainingJobs' Jobs are Kueue's own.
#
# It builds in this directory's wrapper module (go.mod), which keeps every module Kueue shares with
# the test control plane (tools/k8s/kube/go.mod: k8s.io at v0.35.4 and the replace blocks) at the
# control plane's version: with one Go build cache only Kueue's own packages and the modules only
# it uses (controller-runtime, jobset, ...) compile. Runs under `nice -n 19`: the machines we
# share have two cores.
#
#   tools/kueue/build.sh          # prints the path of the kueue binary (its crds/ beside it)
#   tools/kueue/build.sh --check  # prints it too, but builds nothing: exit 1 when it is missing
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
KUEUE_VERSION=v0.17.0
CACHE="${KAIP_KUEUE_CACHE:-$HOME/.cache/kaip-k8s/kueue-$KUEUE_VERSION}"
BINARY="$CACHE/kueue"
LDFLAGS="-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION"
STAMP="$({ cat "$HERE/go.mod" "$HERE/go.sum"; echo "$LDFLAGS"; } | sha256sum | cut -d' ' -f1)"

# shellcheck source=../lib/go-tool.sh
source "$HERE/../lib/go-tool.sh"

build() { # OUT
    grep -qE "sigs.k8s.io/kueue $KUEUE_VERSION( |$)" "$HERE/go.mod" \
        || { echo "tools/kueue/go.mod does not require kueue $KUEUE_VERSION" >&2; return 1; }
    cd "$HERE" && nice -n 19 go build -trimpath -ldflags "$LDFLAGS" -o "$1" sigs.k8s.io/kueue/cmd/kueue
    local module_dir
    module_dir="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)"
    rm -rf "$CACHE/crds" && mkdir -p "$CACHE/crds"
    install -m 0644 "$module_dir"/config/components/crd/bases/*.yaml "$CACHE/crds/"
}

go_tool_main kueue "$KUEUE_VERSION" "$BINARY" "$STAMP" build "${1:-}"
