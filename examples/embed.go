// Package examples ships the example ClusterSpecs inside the binary, so
// `kubedos spec init` writes the same files the repository documents.
package examples

import _ "embed"

// Reference is the 16-node reference platform.
//
//go:embed reference.yaml
var Reference []byte

// Local is the three-node cluster small enough to boot on one machine.
//
//go:embed local.yaml
var Local []byte

// LocalK8s is the smallest Kubernetes cluster: master, one control-plane
// node with stacked etcd, one worker.
//
//go:embed local-k8s.yaml
var LocalK8s []byte

// LocalHA is the smallest highly available Kubernetes cluster: master,
// three control-plane nodes with stacked etcd holding the API VIP, one
// worker.
//
//go:embed local-ha.yaml
var LocalHA []byte
