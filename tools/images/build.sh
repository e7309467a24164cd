#!/usr/bin/env bash
# Builds kaip's OCI images without a Docker engine: buildah runs the repository's own Dockerfiles
# on a base image made here from Debian packages (debootstrap), so no container registry on the
# internet is needed. Idempotent and cached: an image is rebuilt only when what it is built from
# changes (a hash of its Dockerfile, build context files and base image names its tag); a warm
# run takes seconds. Images live in buildah's own storage under $KAIP_IMAGES_CACHE.
#
#   tools/images/build.sh              # build what is missing; print "NAME REF" per image
#   tools/images/build.sh --check      # status 0 when every image is current (builds nothing)
#   tools/images/build.sh --list       # "NAME REF" per image, without building
#   tools/images/build.sh --push HOST:PORT   # copy every image to a registry (plain http)
#
# What it builds (tools/images/README.md has sizes and details):
#   base      Debian bookworm (minbase) + CPython 3.11 + venv + CA certificates, by debootstrap
#   pause     the Kubernetes pause container, upstream pause.c from the k8s.io/kubernetes module
#   server    Dockerfile: the model server (python -m kaip.serving)
#   operator  Dockerfile.operator: kaip operator
#   digits-ui examples/quickstart/Dockerfile: the quickstart's App
#
# Builds run under `nice -n 19`: the machines we share have two cores.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${KAIP_IMAGES_CACHE:-$HOME/.cache/kaip-images}"

DEBIAN_RELEASE=bookworm
DEBIAN_MIRROR="${KAIP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PYTHON_MINOR=3.11
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
# Bump when the base recipe below changes in a way the inputs above do not show.
BASE_RECIPE=1
KUBE_VERSION=v1.35.4
PAUSE_VERSION=3.10.1

log() { printf '[images %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

buildah_() { buildah --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver overlay "$@"; }

have_image() { buildah_ inspect --type image "$1" >/dev/null 2>&1; }

hash_files() { # FILE...: one digest over the paths and contents, in a stable order
    local f
    for f in "$@"; do printf '%s\n' "$f"; sha256sum <"$ROOT/$f"; done | sha256sum | cut -c1-16
}

tree_files() { # DIR...: the files a build context takes from DIR (no caches)
    (cd "$ROOT" && find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' | LC_ALL=C sort)
}

# -- names and tags ----------------------------------------------------------------------------

base_tag() {
    local key
    key="$(printf '%s\n' "$DEBIAN_RELEASE" "$DEBIAN_MIRROR" "$PYTHON_MINOR" "$BASE_PACKAGES" \
        "$BASE_RECIPE" | sha256sum | cut -c1-16)"
    echo "localhost/kaip/base:$DEBIAN_RELEASE-py$PYTHON_MINOR-$key"
}

pause_source() { # the upstream pause.c from the k8s.io/kubernetes module (Go module cache)
    local dir
    dir="$(cd "$ROOT/tools/k8s/kube" && GOFLAGS=-mod=mod GOTOOLCHAIN=local \
        go list -m -f '{{.Dir}}' k8s.io/kubernetes)"
    [[ -n "$dir" && -f "$dir/build/pause/linux/pause.c" ]] \
        || { log "no build/pause/linux/pause.c in k8s.io/kubernetes ($dir)"; return 1; }
    echo "$dir/build/pause/linux/pause.c"
}

pause_tag() { echo "localhost/kaip/pause:$PAUSE_VERSION"; }

# NAME DOCKERFILE CONTEXT FILES...: the tag of an image built from a Dockerfile
dockerfile_tag() {
    local name="$1" dockerfile="$2" context="$3"
    shift 3
    local key
    key="$(
        {
            base_tag
            hash_files "$dockerfile" "$context/.dockerignore"
            hash_files $(tree_files "$@")
        } | sha256sum | cut -c1-16
    )"
    echo "localhost/kaip/$name:$key"
}

SERVER_INPUTS=(requirements.lock tools/images/requirements.py pyproject.toml README.md src)
OPERATOR_INPUTS=("${SERVER_INPUTS[@]}")
UI_INPUTS=(examples/quickstart/app.py)

declare -A TAGS=()
compute_tags() {
    TAGS[base]="$(base_tag)"
    TAGS[pause]="$(pause_tag)"
    TAGS[server]="$(dockerfile_tag server Dockerfile . "${SERVER_INPUTS[@]}")"
    TAGS[operator]="$(dockerfile_tag operator Dockerfile.operator . "${OPERATOR_INPUTS[@]}")"
    TAGS[digits-ui]="$(dockerfile_tag digits-ui examples/quickstart/Dockerfile examples/quickstart \
        "${UI_INPUTS[@]}")"
}
IMAGES=(base pause server operator digits-ui)

# -- builds ------------------------------------------------------------------------------------

build_base() {
    local tag="$1" rootfs="$CACHE/base-rootfs.tmp" ctr mnt python
    command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; return 1; }
    log "base: debootstrap $DEBIAN_RELEASE ($BASE_PACKAGES) from $DEBIAN_MIRROR (~3-8 min)"
    rm -rf "$rootfs"
    nice -n 19 debootstrap --variant=minbase --include="$BASE_PACKAGES" \
        "$DEBIAN_RELEASE" "$rootfs" "$DEBIAN_MIRROR" >"$CACHE/base-debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/base-debootstrap.log" >&2; return 1; }
    python="$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
    [[ "$python" == "$PYTHON_MINOR".* ]] \
        || { log "base: Debian $DEBIAN_RELEASE gave Python $python, expected $PYTHON_MINOR.x"; return 1; }
    chroot "$rootfs" dpkg-query -W -f '${Package} ${Version}\n' >"$CACHE/base-packages.txt"
    # What a container never needs: package lists and caches, docs, translations, device nodes
    # (the runtime mounts /dev).
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/var/log/* "$rootfs"/dev/* "$rootfs"/tmp/* \
        "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/cache/ldconfig/*
    ctr="$(buildah_ from scratch)"
    mnt="$(buildah_ mount "$ctr")"
    tar -C "$rootfs" -cf - . | tar -C "$mnt" -xf -
    buildah_ umount "$ctr" >/dev/null
    buildah_ config \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 \
        --cmd python3 \
        --label "org.opencontainers.image.title=kaip base: Debian $DEBIAN_RELEASE, Python $python" \
        --label "org.opencontainers.image.source=debootstrap --variant=minbase $DEBIAN_RELEASE $DEBIAN_MIRROR" \
        --label "dev.kaip.python=$python" \
        --label "dev.kaip.python-deb=$(awk '$1 == "python3.11" {print $2}' "$CACHE/base-packages.txt")" \
        "$ctr"
    buildah_ commit --quiet --rm --format oci "$ctr" "$tag" >/dev/null
    buildah_ tag "$tag" "localhost/kaip/base:$DEBIAN_RELEASE-py$PYTHON_MINOR"
    rm -rf "$rootfs"
    log "base: Python $python, packages listed in $CACHE/base-packages.txt"
}

build_pause() {
    local tag="$1" source work ctr
    source="$(pause_source)"
    work="$(mktemp -d "$CACHE/pause.XXXXXX")"
    # The flags of upstream's build/pause/Makefile.
    gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-kaip" -o "$work/pause" "$source"
    strip "$work/pause"
    ctr="$(buildah_ from scratch)"
    buildah_ copy --quiet "$ctr" "$work/pause" /pause >/dev/null
    buildah_ config --entrypoint '["/pause"]' --user 65535:65535 \
        --label "org.opencontainers.image.source=k8s.io/kubernetes@$KUBE_VERSION build/pause/linux/pause.c" \
        "$ctr"
    buildah_ commit --quiet --rm --format oci "$ctr" "$tag" >/dev/null
    rm -rf "$work"
}

# RUN steps reach PyPI as this machine does: its CA bundle (an intercepting proxy's CA, say) and
# index settings are mounted for the build only; they never land in an image layer.
build_mounts() {
    local ca="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
    local conf="$CACHE/build-pip.conf"
    {
        echo "[global]"
        [[ -f "$ca" ]] && echo "cert = /etc/ssl/certs/ca-certificates.crt"
        [[ -n "${PIP_INDEX_URL:-}" ]] && echo "index-url = $PIP_INDEX_URL"
        [[ -n "${PIP_EXTRA_INDEX_URL:-}" ]] && echo "extra-index-url = $PIP_EXTRA_INDEX_URL"
        true
    } >"$conf"
    echo "--volume=$conf:/etc/pip.conf:ro"
    [[ -f "$ca" ]] && echo "--volume=$(readlink -f "$ca"):/etc/ssl/certs/ca-certificates.crt:ro"
    true
}

build_dockerfile() { # TAG DOCKERFILE CONTEXT
    local tag="$1" dockerfile="$2" context="$3" mounts
    mapfile -t mounts < <(build_mounts)
    nice -n 19 buildah --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver overlay \
        bud --quiet --layers --isolation chroot --pull-never --format oci "${mounts[@]}" \
        --build-arg "BASE=${TAGS[base]}" \
        --file "$ROOT/$dockerfile" --tag "$tag" "$ROOT/$context" >/dev/null
}

build_image() { # NAME
    local name="$1" tag="${TAGS[$1]}" start=$SECONDS
    if have_image "$tag"; then
        return 0
    fi
    log "$name: building $tag"
    case "$name" in
        base) build_base "$tag" ;;
        pause) build_pause "$tag" ;;
        server) build_dockerfile "$tag" Dockerfile . ;;
        operator) build_dockerfile "$tag" Dockerfile.operator . ;;
        digits-ui) build_dockerfile "$tag" examples/quickstart/Dockerfile examples/quickstart ;;
    esac
    log "$name: built in $((SECONDS - start))s, $(image_size "$tag")"
    prune_old "$tag"
}

image_size() { # TAG: the uncompressed size of its layers
    buildah_ images --format '{{.Size}}' "$1" 2>/dev/null | sed -n 1p
}

prune_old() { # TAG: drop older builds of the same image (their layers nothing else uses)
    # Untagged intermediate images stay: they are the layer cache (the pinned dependencies).
    local repo="${1%:*}" old
    for old in $(buildah_ images --format '{{.Name}}:{{.Tag}}' | grep "^$repo:" | grep -vx "$1"); do
        [[ "$old" == "localhost/kaip/base:$DEBIAN_RELEASE-py$PYTHON_MINOR" ]] && continue
        buildah_ rmi "$old" >/dev/null 2>&1 || true
    done
}

push_all() { # HOST:PORT
    local registry="$1" name tag
    for name in "${IMAGES[@]}"; do
        [[ "$name" == base ]] && continue
        tag="${TAGS[$name]}"
        buildah_ push --quiet --tls-verify=false --format oci "$tag" \
            "docker://$registry/${tag#localhost/}" >/dev/null
        echo "$name $registry/${tag#localhost/}"
    done
}

# -- main --------------------------------------------------------------------------------------

mkdir -p "$CACHE"
compute_tags
case "${1:-}" in
    --list)
        for name in "${IMAGES[@]}"; do echo "$name ${TAGS[$name]}"; done
        exit 0
        ;;
    --check)
        for name in "${IMAGES[@]}"; do have_image "${TAGS[$name]}" || exit 1; done
        echo "$CACHE"
        exit 0
        ;;
    --push)
        [[ -n "${2:-}" ]] || { log "--push needs HOST:PORT"; exit 2; }
        push_all "$2"
        exit 0
        ;;
    "") ;;
    *)
        log "unknown argument '$1' (see the top of $0)"
        exit 2
        ;;
esac

command -v buildah >/dev/null || { log "buildah is missing (apt-get install buildah)"; exit 1; }
# Two builds into one cache (make test in two checkouts) would race; the second waits.
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
    log "another build holds $CACHE/.build.lock; waiting"
    flock 9
fi
for name in "${IMAGES[@]}"; do build_image "$name"; done
for name in "${IMAGES[@]}"; do echo "$name ${TAGS[$name]}"; done
