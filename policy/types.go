// Package policy is the gateway's own authorization layer on top of the
// cluster's: a YAML file of rules that narrow, per user or group, which
// clusters, namespaces, pods (by label selector) and container ports may be
// forwarded to. With a policy loaded, whatever no rule allows is denied.
//
// The file is decoded strictly (unknown or duplicate fields are errors),
// validated as a whole, and reloaded when it changes; a bad new file keeps
// the policy in force (Loader).
package policy

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// APIVersion and Kind identify a policy file.
const (
	APIVersion = "pfgateway.io/v1alpha1"
	Kind       = "Policy"
)

// File is the policy file as written.
type File struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Rules are alternatives: a request is allowed when any rule allows it.
	Rules []Rule `json:"rules"`
}

// Rule allows its subjects (Users, Groups) to forward to what its other
// fields describe. A field left out allows any value; a field given as an
// empty list is an error, so that "nothing" is never written by accident.
type Rule struct {
	// Name identifies the rule in denials, logs and audit records.
	Name string `json:"name"`
	// Users and Groups: the rule applies to a caller whose name is in
	// Users or who is in one of Groups. At least one is required; "*"
	// matches any caller the gateway lets in (anonymous ones too, when
	// anonymous requests are enabled; system:authenticated excludes them).
	Users  []string `json:"users,omitempty"`
	Groups []string `json:"groups,omitempty"`
	// Clusters the caller may reach (the /clusters/{name} prefix).
	Clusters []string `json:"clusters,omitempty"`
	// Namespaces of the pods the caller may reach.
	Namespaces []string `json:"namespaces,omitempty"`
	// PodSelector selects the pods the caller may reach by their labels.
	// An empty selector ({}) selects every pod, as in a NetworkPolicy.
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`
	// Ports are container ports: numbers (8080) or strings holding a
	// number ("8080") or an inclusive range ("9000-9100").
	Ports []intstr.IntOrString `json:"ports,omitempty"`
}
