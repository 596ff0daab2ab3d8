package policy

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pfgateway/pfgateway/filewatch"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// MaxFileSize bounds a policy file; a larger one is refused unread.
const MaxFileSize = 1 << 20

// wildcard in Users or Groups matches any authenticated caller.
const wildcard = "*"

// Policy is a parsed, validated policy file. It is immutable: a reload
// builds a new one.
type Policy struct {
	rules  []*rule
	limits []*limits
	// Hash is the SHA-256 of the file's bytes, hex, to tell versions apart
	// in logs and metrics.
	Hash string
}

// rule is a Rule compiled for matching. A nil set or selector allows any
// value.
type rule struct {
	name              string
	users, groups     map[string]bool
	anyUser, anyGroup bool
	clusters, nss     map[string]bool
	selector          labels.Selector
	ports             []portRange // nil: any port
}

// portRange is inclusive.
type portRange struct{ lo, hi int32 }

// Parse decodes a policy file strictly and validates it. Every problem is
// reported, each with its field path.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("policy file is %d bytes, larger than the %d allowed", len(data), MaxFileSize)
	}
	var f File
	// Strict: an unknown or duplicated field is an error, so a typo such as
	// "namespace:" cannot silently widen a rule.
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("decoding the policy file: %w", err)
	}
	p, errs := compile(&f)
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid policy file: %w", errs.ToAggregate())
	}
	p.Hash = filewatch.Hash(data)
	return p, nil
}

func compile(f *File) (*Policy, field.ErrorList) {
	var errs field.ErrorList
	if f.APIVersion != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), f.APIVersion, []string{APIVersion}))
	}
	if f.Kind != Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), f.Kind, []string{Kind}))
	}
	if f.Rules == nil {
		// "rules: []" is a valid lockdown; a missing list is more likely a mistake.
		errs = append(errs, field.Required(field.NewPath("rules"), "write `rules: []` to deny everything"))
	}
	p := &Policy{}
	names := map[string]bool{}
	for i := range f.Rules {
		path := field.NewPath("rules").Index(i)
		r, rerrs := compileRule(&f.Rules[i], path)
		errs = append(errs, rerrs...)
		if r.name != "" {
			if names[r.name] {
				errs = append(errs, field.Duplicate(path.Child("name"), r.name))
			}
			names[r.name] = true
		}
		p.rules = append(p.rules, r)
	}
	var lerrs field.ErrorList
	p.limits, lerrs = compileLimits(f.Limits)
	return p, append(errs, lerrs...)
}

func compileRule(in *Rule, path *field.Path) (*rule, field.ErrorList) {
	var errs field.ErrorList
	r := &rule{name: in.Name}
	if in.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), ""))
	} else if len(in.Name) > 253 {
		errs = append(errs, field.TooLong(path.Child("name"), "", 253))
	}
	if in.Users == nil && in.Groups == nil {
		errs = append(errs, field.Required(path.Child("users"), "a rule needs users, groups or both (\"*\" matches any caller)"))
	}
	var e field.ErrorList
	r.users, r.anyUser, e = nameSet(in.Users, path.Child("users"), nil)
	errs = append(errs, e...)
	r.groups, r.anyGroup, e = nameSet(in.Groups, path.Child("groups"), nil)
	errs = append(errs, e...)
	r.clusters, _, e = nameSet(in.Clusters, path.Child("clusters"), validation.IsDNS1123Subdomain)
	errs = append(errs, e...)
	r.nss, _, e = nameSet(in.Namespaces, path.Child("namespaces"), validation.IsDNS1123Label)
	errs = append(errs, e...)
	if in.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(in.PodSelector)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("podSelector"), in.PodSelector.String(), err.Error()))
		} else {
			r.selector = sel
		}
	}
	if in.Ports != nil {
		if len(in.Ports) == 0 {
			errs = append(errs, field.Required(path.Child("ports"), "leave ports out to allow any port"))
		}
		for i, ps := range in.Ports {
			pr, err := parsePorts(ps)
			if err != nil {
				errs = append(errs, field.Invalid(path.Child("ports").Index(i), ps.String(), err.Error()))
				continue
			}
			r.ports = append(r.ports, pr)
		}
		if r.ports == nil {
			// Every entry was bad: keep the rule restrictive anyway.
			r.ports = []portRange{}
		}
	}
	return r, errs
}

// nameSet turns a list into a set. nil stays nil (any value); an empty
// list or an empty name is an error; "*" is reported as any when allowed
// (users, groups: check == nil).
func nameSet(in []string, path *field.Path, check func(string) []string) (map[string]bool, bool, field.ErrorList) {
	if in == nil {
		return nil, false, nil
	}
	var errs field.ErrorList
	if len(in) == 0 {
		errs = append(errs, field.Required(path, "leave the field out to allow any value"))
	}
	set := make(map[string]bool, len(in))
	any := false
	for i, v := range in {
		switch {
		case v == "":
			errs = append(errs, field.Required(path.Index(i), "empty name"))
		case v == wildcard && check == nil:
			any = true
		case check != nil:
			for _, msg := range check(v) {
				errs = append(errs, field.Invalid(path.Index(i), v, msg))
			}
		}
		set[v] = true
	}
	return set, any, errs
}

// parsePorts reads 8080, "8080" or "9000-9100".
func parsePorts(v intstr.IntOrString) (portRange, error) {
	if v.Type == intstr.Int {
		return portRange{v.IntVal, v.IntVal}, checkPort(v.IntVal)
	}
	s := strings.TrimSpace(v.StrVal)
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := portNumber(lo)
	if err != nil {
		return portRange{}, err
	}
	b := a
	if isRange {
		if b, err = portNumber(hi); err != nil {
			return portRange{}, err
		}
		if a > b {
			return portRange{}, fmt.Errorf("range %d-%d is reversed", a, b)
		}
	}
	return portRange{a, b}, nil
}

func portNumber(s string) (int32, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number or a range such as \"9000-9100\"", s)
	}
	return int32(n), checkPort(int32(n))
}

func checkPort(p int32) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("port %d must be between 1 and 65535", p)
	}
	return nil
}

// PortRules names the rules that limit ports: a policy with any cannot be
// enforced by a splice that does not see streams.
func (p *Policy) PortRules() []string {
	var names []string
	for _, r := range p.rules {
		if r.ports != nil {
			names = append(names, r.name)
		}
	}
	return names
}
