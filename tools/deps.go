//go:build tools

package tools
import (
 _ "k8s.io/client-go/kubernetes"
 _ "k8s.io/client-go/tools/portforward"
 _ "k8s.io/client-go/transport/spdy"
 _ "k8s.io/apimachinery/pkg/util/proxy"
 _ "k8s.io/apiserver/pkg/util/proxy"
 _ "k8s.io/apiserver/pkg/authentication/request/x509"
 _ "k8s.io/cri-streaming/pkg/streaming/portforward"
 _ "k8s.io/streaming/pkg/httpstream/wsstream"
 _ "github.com/gorilla/mux"
 _ "github.com/prometheus/client_golang/prometheus/promhttp"
 _ "github.com/spf13/cobra"
 _ "k8s.io/klog/v2"
)
