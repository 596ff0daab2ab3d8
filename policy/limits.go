package policy

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Bounds of the limit values; larger ones are typos more likely than intents.
const (
	maxLimitCount    = 1 << 20
	maxLimitDuration = 366 * 24 * time.Hour
)

// UserLimits are the policy's limits for one caller: the first limits
// entry that applies to them. A zero field sets nothing (the flag's limit
// applies); Name is empty when no entry applies.
type UserLimits struct {
	Name                  string
	MaxSessions           int
	MaxForwardsPerSession int
	IdleTimeout           time.Duration
	MaxSessionDuration    time.Duration
}

// limits is a Limits entry compiled for matching.
type limits struct {
	UserLimits
	users, groups     map[string]bool
	anyUser, anyGroup bool
}

// LimitsFor returns the limits of the first entry that applies to the
// caller. First match, not smallest value, so that an entry placed before a
// catch-all can give some users the flags' (wider) limits back: an
// exception is one entry, not a list of everyone else. The flags stay a
// ceiling either way.
func (p *Policy) LimitsFor(user string, groups []string) UserLimits {
	for _, l := range p.limits {
		if applies(l.users, l.groups, l.anyUser, l.anyGroup, user, groups) {
			return l.UserLimits
		}
	}
	return UserLimits{}
}

// ForwardLimits names the limits entries that bound forwarded connections:
// like port rules, only the stream-aware splice can enforce them.
func (p *Policy) ForwardLimits() []string {
	var names []string
	for _, l := range p.limits {
		if l.MaxForwardsPerSession > 0 {
			names = append(names, l.Name)
		}
	}
	return names
}

func compileLimits(in []Limits) ([]*limits, field.ErrorList) {
	var errs field.ErrorList
	var out []*limits
	names := map[string]bool{}
	for i := range in {
		path := field.NewPath("limits").Index(i)
		l, lerrs := compileLimit(&in[i], path)
		errs = append(errs, lerrs...)
		if l.Name != "" {
			if names[l.Name] {
				errs = append(errs, field.Duplicate(path.Child("name"), l.Name))
			}
			names[l.Name] = true
		}
		out = append(out, l)
	}
	return out, errs
}

func compileLimit(in *Limits, path *field.Path) (*limits, field.ErrorList) {
	var errs field.ErrorList
	l := &limits{UserLimits: UserLimits{Name: in.Name}}
	if in.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), ""))
	} else if len(in.Name) > 253 {
		errs = append(errs, field.TooLong(path.Child("name"), "", 253))
	}
	if in.Users == nil && in.Groups == nil {
		errs = append(errs, field.Required(path.Child("users"), "an entry needs users, groups or both (\"*\" matches any caller)"))
	}
	var e field.ErrorList
	l.users, l.anyUser, e = nameSet(in.Users, path.Child("users"), nil)
	errs = append(errs, e...)
	l.groups, l.anyGroup, e = nameSet(in.Groups, path.Child("groups"), nil)
	errs = append(errs, e...)
	l.MaxSessions, e = count(in.MaxSessions, path.Child("maxSessions"))
	errs = append(errs, e...)
	l.MaxForwardsPerSession, e = count(in.MaxForwardsPerSession, path.Child("maxForwardsPerSession"))
	errs = append(errs, e...)
	l.IdleTimeout, e = duration(in.IdleTimeout, path.Child("idleTimeout"))
	errs = append(errs, e...)
	l.MaxSessionDuration, e = duration(in.MaxSessionDuration, path.Child("maxSessionDuration"))
	errs = append(errs, e...)
	return l, errs
}

// count checks an optional positive count; nil is 0 (not set).
func count(v *int32, path *field.Path) (int, field.ErrorList) {
	switch {
	case v == nil:
		return 0, nil
	case *v < 1 || *v > maxLimitCount:
		return 0, field.ErrorList{field.Invalid(path, *v, "must be between 1 and 1048576 (leave it out to keep the flag's limit)")}
	}
	return int(*v), nil
}

// duration checks an optional positive duration; nil is 0 (not set).
func duration(v *metav1.Duration, path *field.Path) (time.Duration, field.ErrorList) {
	switch {
	case v == nil:
		return 0, nil
	case v.Duration <= 0 || v.Duration > maxLimitDuration:
		return 0, field.ErrorList{field.Invalid(path, v.Duration.String(), "must be a positive duration of at most 366 days, such as \"15m\" (leave it out to keep the flag's limit)")}
	}
	return v.Duration, nil
}
