package controlplane

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// RegisterNode creates a Ready Node whose kubelet is at 127.0.0.1:port.
func RegisterNode(ctx context.Context, core corev1client.CoreV1Interface, name string, port int) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	node, err := core.Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	// Status goes through the status subresource, as a kubelet reports it.
	node.Status = corev1.NodeStatus{
		// InternalIP only: the gateway (like the API server by default)
		// prefers Hostname, which would not resolve here.
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
	}
	if _, err := core.Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node status: %w", err)
	}
	return nil
}

// CreateServiceAccounts creates ServiceAccounts in ns. No controller-manager
// creates "default", which the ServiceAccount admission plugin wants before
// any pod.
func CreateServiceAccounts(ctx context.Context, core corev1client.CoreV1Interface, ns string, names ...string) error {
	for _, sa := range names {
		if _, err := core.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// CreateRunningPod creates ns/name on node with one container exposing
// ports, and reports it Running and Ready on 127.0.0.1 as a kubelet would.
// It returns the pod with its UID.
func CreateRunningPod(ctx context.Context, core corev1client.CoreV1Interface, ns, name, node string, ports ...int32) (*corev1.Pod, error) {
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			AutomountServiceAccountToken: &no,
			Containers:                   []corev1.Container{{Name: "main", Image: "pfgateway/" + name}},
		},
	}
	for i, p := range ports {
		pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports,
			corev1.ContainerPort{Name: fmt.Sprintf("p%d", i), ContainerPort: p, Protocol: corev1.ProtocolTCP})
	}
	pod, err := core.Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	pod.Status = corev1.PodStatus{
		Phase:  corev1.PodRunning,
		HostIP: "127.0.0.1", HostIPs: []corev1.HostIP{{IP: "127.0.0.1"}},
		PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
	}
	if pod, err = core.Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("pod status: %w", err)
	}
	return pod, nil
}
