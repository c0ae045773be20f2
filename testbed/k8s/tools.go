//go:build tools

// Package tools is never built. Its imports (the same ones as the
// cmd/kube-apiserver and cmd/kube-controller-manager main packages, which
// cannot be imported themselves) keep `go mod tidy` from dropping the
// requirements and go.sum lines that
// `go build k8s.io/kubernetes/cmd/kube-apiserver` needs.
package tools

import (
	_ "time/tzdata"

	_ "k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)
