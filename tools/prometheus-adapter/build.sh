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

current() { [[ -x "$BINARY" && -f "$CACHE/.stamp" && "$(cat "$CACHE/.stamp")" == "$STAMP" ]]; }

if current; then
    echo "$BINARY"
    exit 0
elif [[ "${1:-}" == "--check" ]]; then
    echo "$BINARY"
    exit 1
fi
command -v go >/dev/null || { echo "go is not on PATH (need Go >= 1.25)" >&2; exit 1; }
command -v patch >/dev/null || { echo "patch is not on PATH (Debian package: patch)" >&2; exit 1; }
grep -qE "sigs.k8s.io/prometheus-adapter $ADAPTER_VERSION( |$)" "$HERE/go.mod" \
    || { echo "tools/prometheus-adapter/go.mod does not require prometheus-adapter $ADAPTER_VERSION" >&2; exit 1; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if ! current; then
    start=$SECONDS
    # The same settings as tools/k8s/build.sh, or the build cache would not be shared.
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
    (cd "$HERE" && go mod download sigs.k8s.io/prometheus-adapter) >&2
    source_dir="$(cd "$HERE" && go list -m -f '{{.Dir}}' sigs.k8s.io/prometheus-adapter)"
    patched="$CACHE/source"
    rm -rf "$patched"
    cp -r "$source_dir" "$patched"
    chmod -R u+w "$patched"
    patch --quiet --forward -d "$patched" -p1 <"$HERE/k8s-v0.35.patch" >&2
    # A copy of go.mod that builds the adapter from the patched copy; go.mod itself stays as
    # committed (a path under $HOME cannot be).
    cp "$HERE/go.mod" "$CACHE/build.mod"
    cp "$HERE/go.sum" "$CACHE/build.sum"
    echo "replace sigs.k8s.io/prometheus-adapter => $patched" >>"$CACHE/build.mod"
    (cd "$HERE" && nice -n 19 go build -modfile "$CACHE/build.mod" -trimpath \
        -ldflags "$LDFLAGS" -o "$BINARY.tmp" sigs.k8s.io/prometheus-adapter/cmd/adapter) >&2
    mv -f "$BINARY.tmp" "$BINARY"
    echo "$STAMP" >"$CACHE/.stamp"
    echo "built prometheus-adapter $ADAPTER_VERSION in $((SECONDS - start))s" >&2
fi
echo "$BINARY"
