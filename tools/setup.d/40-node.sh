# The real-node tier (tests/e2e_node) and `make images`: Debian's container runtime (containerd,
# runc), CNI plugins, iptables for kube-proxy, buildah and debootstrap for the images, gcc for
# the pause binary. The kubelet and kube-proxy come with the k8s component (tools/k8s/build.sh).
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables buildah debootstrap gcc libc6-dev)
component node "containerd, runc, CNI plugins, iptables, buildah, debootstrap (Debian) for the real node" kube
node_ready() {
    local p
    for p in "${NODE_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
    done
}
node_install() { apt_install "${NODE_PACKAGES[@]}"; }
