# The Kubernetes test control plane (etcd, kube-apiserver, controller-manager, scheduler, kubectl,
# kwok, Gateway API CRDs) and the real node's kubelet and kube-proxy, built by tools/k8s/build.sh
# into its version-keyed cache. It serves the e2e_kube and e2e_node tiers, so KAIP_SKIP_KUBE=1
# leaves it out.
component k8s "the Kubernetes test control plane, built by tools/k8s/build.sh" kube
k8s_ready() { tools/k8s/build.sh --check >/dev/null; }
k8s_note() {
    echo "building the Kubernetes test control plane: ~15-25 min on 2 cores with a cold Go cache," \
        "into $(tools/k8s/build.sh --check || true); KAIP_SKIP_KUBE=1 skips the Kubernetes tiers instead"
}
k8s_install() { need_go 26 && tools/k8s/build.sh; }
