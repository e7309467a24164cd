# The OCI registry the real node pulls kaip's images from, built by tools/registry/build.sh.
component registry "the OCI registry (distribution v3), built by tools/registry/build.sh" kube
registry_ready() { tools/registry/build.sh --check >/dev/null; }
registry_note() { echo "building the OCI registry from the Go module proxy (~2-5 min on 2 cores when cold)"; }
registry_install() { need_go 26 && tools/registry/build.sh >/dev/null; }
