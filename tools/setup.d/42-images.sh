# kaip's OCI images (model server, operator, the quickstart App, pause) on a Debian base, built by
# buildah from the Dockerfiles (tools/images/build.sh); the real node pulls them. Needs node.
component images "kaip's OCI images, built by tools/images/build.sh (make images)" kube
images_ready() { tools/images/build.sh --check >/dev/null; }
images_note() {
    echo "building kaip's images (debootstrap base + pip installs): ~5-15 min on 2 cores when cold," \
        "into ${KAIP_IMAGES_CACHE:-~/.cache/kaip-images}; a source change rebuilds one layer"
}
images_install() { tools/images/build.sh; }
