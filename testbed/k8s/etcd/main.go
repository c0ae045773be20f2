// Command etcd is the upstream etcd server, built from the Go module proxy:
// the same entry point as go.etcd.io/etcd/v3's main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
