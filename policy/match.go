package policy

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Request is what a port-forward request is judged on, known once its pod
// has been read.
type Request struct {
	User      string
	Groups    []string
	Cluster   string
	Namespace string
	Pod       string
	PodLabels map[string]string
}

// Admission is a policy's yes to a request: the rules that allowed it and
// the ports they allow together. It is fixed for the session's life; a
// reloaded policy applies to new sessions.
type Admission struct {
	req     Request
	rules   []string
	anyPort bool
	ports   []portRange
}

// Denied is a policy's no. Its message is the reason appended to the API
// server's "forbidden" wording.
type Denied struct{ Reason string }

func (d *Denied) Error() string { return d.Reason }

// Admit judges r. Rules are alternatives: every rule that applies to the
// caller and allows the cluster, namespace and pod labels admits the
// request, and the ports it allows add up.
func (p *Policy) Admit(r Request) (*Admission, error) {
	a := &Admission{req: r}
	subject := false
	for _, rl := range p.rules {
		if !rl.appliesTo(r.User, r.Groups) {
			continue
		}
		subject = true
		if !rl.allows(r) {
			continue
		}
		a.rules = append(a.rules, rl.name)
		if rl.ports == nil {
			a.anyPort = true
		}
		a.ports = append(a.ports, rl.ports...)
	}
	switch {
	case !subject:
		return nil, &Denied{Reason: "pfgateway policy: no rule applies to this user or their groups"}
	case len(a.rules) == 0:
		return nil, &Denied{Reason: fmt.Sprintf("pfgateway policy: no rule allows cluster %q, namespace %q, pod labels %s for this user",
			r.Cluster, r.Namespace, formatLabels(r.PodLabels))}
	}
	if a.anyPort {
		a.ports = nil
	}
	return a, nil
}

func (rl *rule) appliesTo(user string, groups []string) bool {
	return applies(rl.users, rl.groups, rl.anyUser, rl.anyGroup, user, groups)
}

// applies: the caller is named in users, or in one of groups, or either
// holds "*".
func applies(users, groups map[string]bool, anyUser, anyGroup bool, user string, callerGroups []string) bool {
	if anyUser || anyGroup || users[user] {
		return true
	}
	for _, g := range callerGroups {
		if groups[g] {
			return true
		}
	}
	return false
}

func (rl *rule) allows(r Request) bool {
	if rl.clusters != nil && !rl.clusters[r.Cluster] {
		return false
	}
	if rl.nss != nil && !rl.nss[r.Namespace] {
		return false
	}
	return rl.selector == nil || rl.selector.Matches(labels.Set(r.PodLabels))
}

// Rules names the rules that admitted the request, comma-separated: the
// decision recorded on the session for the audit.
func (a *Admission) Rules() string { return strings.Join(a.rules, ",") }

// RestrictsPorts says whether some port is not allowed.
func (a *Admission) RestrictsPorts() bool { return !a.anyPort }

// AllowsPort says whether the admitting rules allow container port p.
func (a *Admission) AllowsPort(p int32) bool {
	if a.anyPort {
		return true
	}
	for _, r := range a.ports {
		if p >= r.lo && p <= r.hi {
			return true
		}
	}
	return false
}

// PortDenial is the message for a port no admitting rule allows.
func (a *Admission) PortDenial(p int32) string {
	return fmt.Sprintf("pfgateway policy forbids port %d on pod %s/%s for user %s (no rule allows it)",
		p, a.req.Namespace, a.req.Pod, a.req.User)
}

// formatLabels is the label set as kubectl shows it: k=v sorted, or <none>.
func formatLabels(l map[string]string) string {
	if len(l) == 0 {
		return "<none>"
	}
	return labels.Set(l).String()
}
