#!/usr/bin/env bash
# Builds a minimal OpenTelemetry Collector (main.go: the otlp receiver and the file exporter only)
# from the Go module proxy into the same cache as the Kubernetes test binaries
# (~/.cache/kaip-k8s/otelcol-<version>/otelcol), only when it is missing or its module changed.
# The e2e test tests/e2e_local/test_observability.py sends kaip up's traces to it.
#
# It builds in this directory's module (go.mod pins every version; go.sum the hashes). Modules it
# shares with the test control plane (tools/k8s/kube/go.mod) are kept at the control plane's
# version where the Collector builds with it, so one Go build cache compiles them once; the
# Collector needs newer grpc, protobuf and OpenTelemetry Go than Kubernetes 1.35 pins, and those
# compile apart (tests/unit/test_tool_modules.py lists the exceptions). Runs under `nice -n 19`:
# the machines we share have two cores.
#
#   tools/otelcol/build.sh          # prints the path of the otelcol binary
#   tools/otelcol/build.sh --check  # prints it too, but builds nothing: exit 1 when it is missing
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
OTELCOL_VERSION=v0.161.0
CACHE="${KAIP_OTELCOL_CACHE:-$HOME/.cache/kaip-k8s/otelcol-$OTELCOL_VERSION}"
BINARY="$CACHE/otelcol"
LDFLAGS="-s -w -X main.version=$OTELCOL_VERSION"
STAMP="$({ cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go"; echo "$LDFLAGS"; } | sha256sum | cut -d' ' -f1)"

# shellcheck source=../lib/go-tool.sh
source "$HERE/../lib/go-tool.sh"

build() { # OUT
    grep -qE "go.opentelemetry.io/collector/otelcol $OTELCOL_VERSION( |$)" "$HERE/go.mod" \
        || { echo "tools/otelcol/go.mod does not require otelcol $OTELCOL_VERSION" >&2; return 1; }
    cd "$HERE" && nice -n 19 go build -trimpath -ldflags "$LDFLAGS" -o "$1" .
}

go_tool_main otelcol "$OTELCOL_VERSION" "$BINARY" "$STAMP" build "${1:-}"
