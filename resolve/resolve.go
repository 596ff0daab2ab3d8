// Package resolve turns a pod into the kubelet URL that serves its
// port-forward endpoint, the way the API server's PortForwardLocation does:
// pod → spec.nodeName → the node's preferred address and kubelet port.
package resolve

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// DefaultAddressTypes is the API server's default
// --kubelet-preferred-address-types order.
var DefaultAddressTypes = []corev1.NodeAddressType{
	corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeInternalIP,
	corev1.NodeExternalDNS, corev1.NodeExternalIP,
}

// DefaultKubeletPort is used when a node does not publish its kubelet port.
const DefaultKubeletPort = 10250

// Target is where a port-forward request goes.
type Target struct {
	Node string
	// UID is the pod's, for the pod watch (package podwatch).
	UID types.UID
	// Labels are the pod's labels, for the gateway policy's pod selectors.
	Labels map[string]string
	// URL is https://{address}:{port}/portForward/{ns}/{pod}, without query.
	URL *url.URL
}

// Resolver looks pods up in the API server (one GET per request: pods come and
// go too fast for a cache to be trusted) and nodes in an informer's cache.
type Resolver struct {
	Client         kubernetes.Interface
	Nodes          corelisters.NodeLister
	AddressTypes   []corev1.NodeAddressType
	DefaultPort    int32
	RequireRunning bool
}

// Resolve returns the kubelet target for namespace/name. Errors are
// apierrors.StatusError values with the code the API server would use.
func (r *Resolver) Resolve(ctx context.Context, namespace, name string) (*Target, error) {
	pod, err := r.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if pod.Spec.NodeName == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", name))
	}
	if r.RequireRunning && pod.Status.Phase != corev1.PodRunning {
		// kubectl's own wording for the same check.
		return nil, apierrors.NewBadRequest(fmt.Sprintf("unable to forward port because pod is not running. Current status=%v", pod.Status.Phase))
	}
	node, err := r.node(ctx, pod.Spec.NodeName)
	if err != nil {
		return nil, err
	}
	host, err := PreferredAddress(node, r.AddressTypes)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	port := node.Status.DaemonEndpoints.KubeletEndpoint.Port
	if port <= 0 {
		port = r.DefaultPort
	}
	if port <= 0 {
		port = DefaultKubeletPort
	}
	return &Target{
		Node:   node.Name,
		UID:    pod.UID,
		Labels: pod.Labels,
		URL: &url.URL{
			Scheme: "https",
			Host:   net.JoinHostPort(host, strconv.Itoa(int(port))),
			Path:   "/portForward/" + url.PathEscape(pod.Namespace) + "/" + url.PathEscape(pod.Name),
		},
	}, nil
}

// node reads the informer cache first and falls back to a GET for a node
// the watch has not delivered yet.
func (r *Resolver) node(ctx context.Context, name string) (*corev1.Node, error) {
	if r.Nodes != nil {
		if n, err := r.Nodes.Get(name); err == nil {
			return n, nil
		} else if !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	return r.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
}

// NoMatchError says a node has none of the preferred address types; the API
// server's wording.
type NoMatchError struct{ Addresses []corev1.NodeAddress }

func (e *NoMatchError) Error() string {
	return fmt.Sprintf("no preferred addresses found; known addresses: %v", e.Addresses)
}

// PreferredAddress returns the node's first address of the first preferred
// type that has one, like the API server's GetPreferredNodeAddress.
func PreferredAddress(node *corev1.Node, types []corev1.NodeAddressType) (string, error) {
	for _, t := range types {
		for _, a := range node.Status.Addresses {
			if a.Type == t && a.Address != "" {
				return a.Address, nil
			}
		}
	}
	return "", &NoMatchError{Addresses: node.Status.Addresses}
}

// ParseAddressTypes validates a --kubelet-preferred-address-types value.
func ParseAddressTypes(in []string) ([]corev1.NodeAddressType, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("at least one address type is required")
	}
	known := map[corev1.NodeAddressType]bool{}
	for _, t := range DefaultAddressTypes {
		known[t] = true
	}
	out := make([]corev1.NodeAddressType, 0, len(in))
	for _, s := range in {
		t := corev1.NodeAddressType(s)
		if !known[t] {
			return nil, fmt.Errorf("unknown address type %q, want one of %v", s, DefaultAddressTypes)
		}
		out = append(out, t)
	}
	return out, nil
}
