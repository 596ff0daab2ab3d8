// Package policy is the gateway's own authorization layer on top of the
// cluster's: a YAML file of rules that narrow, per user or group, which
// clusters, namespaces, pods (by label selector) and container ports may be
// forwarded to. With a policy loaded, whatever no rule allows is denied.
//
// Its limits section narrows the gateway's limit flags per user or group:
// concurrent sessions per user, forwarded connections per session, idle
// timeout, session duration. The entries are ordered and the first that
// applies to a caller sets all of that caller's limits (LimitsFor); a limit
// it leaves out, or sets above the flag, is the flag's, so a policy can only
// narrow. The values are fixed when a session is admitted.
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
	// Limits narrow the gateway's limit flags per user or group. They are
	// ordered: the first entry that applies to a caller sets that caller's
	// limits (limits.go).
	Limits []Limits `json:"limits,omitempty"`
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

// Limits narrow the gateway's limits for the callers it applies to. A limit
// left out is the flag's; a value above the flag's is capped by the flag,
// so a policy can only narrow. Zero or negative values are errors: leave a
// limit out to keep the flag's.
type Limits struct {
	// Name identifies the entry in messages, logs and audit records.
	Name string `json:"name"`
	// Users and Groups select the callers, as in a Rule ("*": any caller).
	Users  []string `json:"users,omitempty"`
	Groups []string `json:"groups,omitempty"`
	// MaxSessions bounds the concurrent sessions of one user name
	// (--max-sessions-per-user).
	MaxSessions *int32 `json:"maxSessions,omitempty"`
	// MaxForwardsPerSession bounds the forwarded connections open at once
	// in one session (--max-forwards-per-session).
	MaxForwardsPerSession *int32 `json:"maxForwardsPerSession,omitempty"`
	// IdleTimeout closes a session without traffic for this long
	// (--session-idle-timeout), e.g. "15m".
	IdleTimeout *metav1.Duration `json:"idleTimeout,omitempty"`
	// MaxSessionDuration closes a session this long after it began
	// (--max-session-duration), e.g. "8h".
	MaxSessionDuration *metav1.Duration `json:"maxSessionDuration,omitempty"`
}
