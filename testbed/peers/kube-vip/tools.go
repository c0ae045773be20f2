//go:build tools

package tools

import _ "github.com/kube-vip/kube-vip"
