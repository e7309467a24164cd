# Sourced by the build scripts of the Go tools kept in a wrapper module aligned with the test
# control plane's (tools/helm, tools/prometheus-adapter): what they share about a cached binary.
#
#   go_tool_main NAME VERSION BINARY STAMP BUILD [ARG]
#
# BINARY is current when it is executable and its directory's .stamp holds STAMP (a hash of what
# the binary is built from). Current: print BINARY, status 0. Else with ARG --check: print BINARY,
# status 1, build nothing. Else take the directory's build lock (a second caller waits, then finds
# it built), run the function BUILD with the path to write (BINARY.tmp) in a subshell, under the
# Go settings tools/k8s/build.sh uses (or the build cache would not be shared), move it in place,
# write the stamp and print BINARY. BUILD's output goes to stderr: stdout is the path only.

go_tool_main() {
    local name="$1" version="$2" binary="$3" stamp="$4" build="$5" arg="${6:-}"
    local cache
    cache="$(dirname "$binary")"
    if _go_tool_current "$binary" "$stamp"; then
        echo "$binary"
        return 0
    elif [[ "$arg" == "--check" ]]; then
        echo "$binary"
        return 1
    fi
    command -v go >/dev/null || { echo "go is not on PATH (need Go >= 1.25)" >&2; return 1; }
    mkdir -p "$cache"
    exec 9>"$cache/.build.lock"
    flock 9
    if ! _go_tool_current "$binary" "$stamp"; then
        local start=$SECONDS
        (
            export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
            "$build" "$binary.tmp"
        ) >&2
        mv -f "$binary.tmp" "$binary"
        echo "$stamp" >"$cache/.stamp"
        echo "built $name $version in $((SECONDS - start))s" >&2
    fi
    exec 9>&-
    echo "$binary"
}

_go_tool_current() { # BINARY STAMP
    [[ -x "$1" && -f "$(dirname "$1")/.stamp" && "$(cat "$(dirname "$1")/.stamp")" == "$2" ]]
}
