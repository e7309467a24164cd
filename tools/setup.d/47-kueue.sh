# Kueue's controller manager, for the e2e_kube tier's TrainingJob test (tests/e2e_kube/
# test_training_kueue.py: admission, suspension and quota are the real Kueue's), built by
# tools/kueue/build.sh from the Go module proxy in a wrapper module aligned with the control
# plane's, so after 30-k8s.sh only Kueue's own packages and the modules only it uses compile.
component kueue "Kueue (queues TrainingJobs' Jobs in the e2e_kube tier), built by tools/kueue/build.sh" kube
kueue_ready() { tools/kueue/build.sh --check >/dev/null; }
kueue_note() { echo "building Kueue from the Go module proxy (~10 CPU-minutes once the control plane is built)"; }
kueue_install() { need_go 25 && tools/kueue/build.sh >/dev/null; }
