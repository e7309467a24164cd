// Command etcd is the etcd server built from go.etcd.io/etcd/server/v3, for the kaip test control
// plane (tools/k8s/build.sh). Debian's etcd 3.4 is older than Kubernetes 1.31+ accepts.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
