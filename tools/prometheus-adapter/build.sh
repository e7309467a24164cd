#!/usr/bin/env bash
# Builds prometheus-adapter (sigs.k8s.io/prometheus-adapter/cmd/adapter), the custom-metrics API
# server that serves Prometheus series to the HorizontalPodAutoscaler, from the Go module proxy
# into ~/.cache/kaip-k8s/prometheus-adapter-<version>/adapter, only when it is missing or its
# module changed. The real-node test tier (tests/e2e_node) runs it beside the apiserver so that
# kaip's rendered HPA (metric kaip_inflight_requests) scales real pods.
#
# It builds in this directory's wrapper module (go.mod), which keeps every module the adapter
# shares with the test control plane (tools/k8s/kube/go.mod: k8s.io at v0.35.4 and the replace
# blocks) at the control plane's version: with one Go build cache only the adapter's own packages
# compile. v0.12.0 was released against k8s.io v0.30; k8s-v0.35.patch makes it build and serve
# against v0.35: cmd.Run takes a context.Context (custom-metrics-apiserver v1.35), the generated
# OpenAPI definitions are also keyed by the names v0.35's apiserver asks for (the types'
# OpenAPIModelName; else "cannot find model definition"), and the Prometheus query timeout is
# time.Until the request's deadline (upstream's time.Since gives a negative one, which Prometheus
# refuses, now that the apiserver gives requests a deadline). It is applied to a copy of the
# module's source that a generated copy of go.mod (-modfile) builds from (`go build -overlay` may
# not replace files in the module cache).
#
#   tools/prometheus-adapter/build.sh          # prints the path of the adapter binary
#   tools/prometheus-adapter/build.sh --check  # prints it too, but builds nothing: exit 1 when missing
#
# Runs under `nice -n 19`: the machines we share have two cores.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ADAPTER_VERSION=v0.12.0
CACHE="${KAIP_ADAPTER_CACHE:-$HOME/.cache/kaip-k8s/prometheus-adapter-$ADAPTER_VERSION}"
BINARY="$CACHE/adapter"
LDFLAGS="-s -w"
STAMP="$({ cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/k8s-v0.35.patch"; echo "$LDFLAGS"; } | sha256sum | cut -d' ' -f1)"

# shellcheck source=../lib/go-tool.sh
source "$HERE/../lib/go-tool.sh"

build() { # OUT
    command -v patch >/dev/null || { echo "patch is not on PATH (Debian package: patch)" >&2; return 1; }
    grep -qE "sigs.k8s.io/prometheus-adapter $ADAPTER_VERSION( |$)" "$HERE/go.mod" \
        || { echo "tools/prometheus-adapter/go.mod does not require prometheus-adapter $ADAPTER_VERSION" >&2; return 1; }
    cd "$HERE"
    go mod download sigs.k8s.io/prometheus-adapter
    local source_dir patched="$CACHE/source"
    source_dir="$(go list -m -f '{{.Dir}}' sigs.k8s.io/prometheus-adapter)"
    rm -rf "$patched"
    cp -r "$source_dir" "$patched"
    chmod -R u+w "$patched"
    patch --quiet --forward -d "$patched" -p1 <"$HERE/k8s-v0.35.patch"
    # A copy of go.mod that builds the adapter from the patched copy; go.mod itself stays as
    # committed (a path under $HOME cannot be).
    cp "$HERE/go.mod" "$CACHE/build.mod"
    cp "$HERE/go.sum" "$CACHE/build.sum"
    echo "replace sigs.k8s.io/prometheus-adapter => $patched" >>"$CACHE/build.mod"
    nice -n 19 go build -modfile "$CACHE/build.mod" -trimpath -ldflags "$LDFLAGS" -o "$1" \
        sigs.k8s.io/prometheus-adapter/cmd/adapter
}

go_tool_main prometheus-adapter "$ADAPTER_VERSION" "$BINARY" "$STAMP" build "${1:-}"
