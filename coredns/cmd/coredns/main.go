// Command coredns is CoreDNS with only the plugins kubedos's Corefile uses
// (kubeplan.Corefile): the upstream main, minus core/plugin's blank import of
// all ~60 plugins. Fewer plugins link less code (cloud DNS SDKs, etcd, gRPC
// upstreams) and leave nothing a Corefile could turn on that was not reviewed.
//
// A plugin missing here makes CoreDNS refuse the Corefile at start
// ("unknown directive"), so kubeplan's test that every directive of the
// Corefile is in this list keeps them together (TestCorefilePlugins).
package main

import (
	"github.com/coredns/coredns/coremain"

	// The Corefile's plugins, and only those.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
