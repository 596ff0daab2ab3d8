package audit

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/uuid"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	apiaudit "k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/pfgateway/pfgateway/relay"
	"github.com/pfgateway/pfgateway/router"
	"github.com/pfgateway/pfgateway/session"
)

// Annotations for what audit.k8s.io/v1 Event has no field for.
const (
	prefix            = "pfgateway.io/"
	AnnotCluster      = prefix + "cluster"
	AnnotNode         = prefix + "node"
	AnnotProtocol     = prefix + "protocol"
	AnnotPorts        = prefix + "ports"
	AnnotPort         = prefix + "port"
	AnnotRequestID    = prefix + "request-id"
	AnnotSessionID    = prefix + "session-id"
	AnnotBytesUp      = prefix + "bytes-up"
	AnnotBytesDown    = prefix + "bytes-down"
	AnnotDuration     = prefix + "duration"
	AnnotOutcome      = prefix + "outcome"
	AnnotCloseReason  = prefix + "close-reason"
	AnnotPolicy       = prefix + "policy"
	AnnotTerminatedBy = prefix + "terminated-by"
	authzAnnotPrefix  = "authorization.k8s.io/"
	maxUserAgent      = 1024 // as the apiserver truncates it
	maxReason         = 1024
	truncatedSuffix   = "...TRUNCATED"
	verbPortForward   = "create"
	responseUpgraded  = http.StatusSwitchingProtocols
	maxCapturedStatus = 16 << 10
)

// record is what the audit knows of one port-forward request: the fields
// every event of the request shares, and the apiserver's audit context, in
// which filters further in (the authorization) leave annotations.
type record struct {
	base    auditinternal.Event
	ac      *apiaudit.AuditContext
	started atomic.Bool // the session-start event was emitted

	mu    sync.Mutex
	ended *sessionEnd // a session that began but was never upgraded
}

type sessionEnd struct {
	s *session.Session
	e session.Ended
}

type recordKey struct{}

// isPortForward: the request is for pods/{name}/portforward.
func isPortForward(req *http.Request) bool {
	ri, ok := request.RequestInfoFrom(req.Context())
	return ok && ri.IsResourceRequest && ri.Resource == "pods" && ri.Subresource == "portforward"
}

// newRecord builds the shared fields of req's events, as the apiserver's
// audit.LogRequestMetadata does, except that the verb is always "create",
// the verb port-forward is authorized with (the apiserver also checks
// "create" for a WebSocket GET). The auditID is always the gateway's own: a
// client-supplied Audit-ID would let callers forge correlations.
func newRecord(req *http.Request, received time.Time) *record {
	ev := auditinternal.Event{
		Level:                    auditinternal.LevelMetadata,
		AuditID:                  types.UID(uuid.NewUUID()),
		Verb:                     verbPortForward,
		RequestURI:               req.RequestURI,
		UserAgent:                truncate(req.UserAgent(), maxUserAgent),
		RequestReceivedTimestamp: metav1.NewMicroTime(received),
		Annotations:              map[string]string{AnnotCluster: router.ClusterFrom(req.Context())},
	}
	if ev.RequestURI == "" {
		ev.RequestURI = req.URL.RequestURI()
	}
	for _, ip := range utilnet.SourceIPs(req) {
		ev.SourceIPs = append(ev.SourceIPs, ip.String())
	}
	if u, ok := request.UserFrom(req.Context()); ok {
		ev.User = userInfo(u)
	}
	if ri, ok := request.RequestInfoFrom(req.Context()); ok && ri.IsResourceRequest {
		ev.ObjectRef = &auditinternal.ObjectReference{
			Resource: ri.Resource, Subresource: ri.Subresource, Namespace: ri.Namespace, Name: ri.Name,
			APIGroup: ri.APIGroup, APIVersion: ri.APIVersion,
		}
	}
	return &record{base: ev}
}

func userInfo(u user.Info) authnv1.UserInfo {
	ui := authnv1.UserInfo{Username: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups()}
	if ex := u.GetExtra(); len(ex) > 0 {
		ui.Extra = make(map[string]authnv1.ExtraValue, len(ex))
		for k, v := range ex {
			ui.Extra[k] = v
		}
	}
	return ui
}

// sessionBase is the record's shared fields, or for a session created
// outside the audit filter what the session itself knows.
func sessionBase(s *session.Session) (auditinternal.Event, *record) {
	if s.Context != nil {
		if r, ok := s.Context.Value(recordKey{}).(*record); ok {
			return r.event(), r
		}
	}
	ev := auditinternal.Event{
		Level: auditinternal.LevelMetadata, AuditID: types.UID(uuid.NewUUID()), Verb: verbPortForward,
		User:                     authnv1.UserInfo{Username: s.User, Groups: s.Groups},
		ObjectRef:                &auditinternal.ObjectReference{Resource: "pods", Subresource: "portforward", Namespace: s.Namespace, Name: s.Pod, APIVersion: "v1"},
		RequestReceivedTimestamp: metav1.NewMicroTime(s.Start),
		Annotations:              map[string]string{AnnotCluster: s.Cluster},
	}
	if host, _, err := net.SplitHostPort(s.Source); err == nil {
		ev.SourceIPs = []string{host}
	}
	return ev, nil
}

// event is a copy of the shared fields with the annotations left so far in
// the audit context (the authorization decision) merged in.
func (r *record) event() auditinternal.Event {
	ev := r.base
	ev.Annotations = make(map[string]string, len(r.base.Annotations)+16)
	for k, v := range r.base.Annotations {
		ev.Annotations[k] = v
	}
	if r.ac != nil {
		for k, v := range r.ac.GetEventAnnotations() {
			if _, set := ev.Annotations[k]; !set {
				ev.Annotations[k] = v
			}
		}
	}
	return ev
}

// sessionStarted is the ResponseStarted event of an upgraded session.
func sessionStarted(base auditinternal.Event, s *session.Session, now time.Time) *auditinternal.Event {
	ev := base
	ev.Stage = auditinternal.StageResponseStarted
	ev.StageTimestamp = metav1.NewMicroTime(now)
	ev.ResponseStatus = &metav1.Status{Status: metav1.StatusSuccess, Code: responseUpgraded}
	sessionAnnotations(ev.Annotations, s, s.Node())
	return &ev
}

// sessionEnded is the ResponseComplete event of an upgraded session.
func sessionEnded(base auditinternal.Event, s *session.Session, e session.Ended, now time.Time) *auditinternal.Event {
	ev := base
	ev.Stage = auditinternal.StageResponseComplete
	ev.StageTimestamp = metav1.NewMicroTime(now)
	ev.ResponseStatus = &metav1.Status{Status: metav1.StatusSuccess, Code: responseUpgraded}
	a := ev.Annotations
	sessionAnnotations(a, s, e.Node)
	a[AnnotBytesUp] = strconv.FormatInt(e.Up, 10)
	a[AnnotBytesDown] = strconv.FormatInt(e.Down, 10)
	a[AnnotDuration] = e.Duration.Round(time.Millisecond).String()
	a[AnnotOutcome] = string(e.Outcome)
	if e.Reason != "" {
		a[AnnotCloseReason] = truncate(e.Reason, maxReason)
	}
	set(a, AnnotTerminatedBy, e.TerminatedBy)
	return &ev
}

// forwarded is the event of one forwarded connection: its own auditID, the
// session's id in an annotation.
func forwarded(base auditinternal.Event, s *session.Session, rec relay.Record, now time.Time) *auditinternal.Event {
	ev := base
	ev.AuditID = types.UID(uuid.NewUUID())
	ev.Stage = auditinternal.StageResponseComplete
	ev.RequestReceivedTimestamp = metav1.NewMicroTime(rec.Start)
	ev.StageTimestamp = metav1.NewMicroTime(now)
	st := &metav1.Status{Status: metav1.StatusSuccess, Code: responseUpgraded}
	if rec.Outcome != relay.OutcomeClientClosed && rec.Outcome != relay.OutcomePodClosed {
		st.Status, st.Message = metav1.StatusFailure, truncate(rec.Message, maxReason)
	}
	ev.ResponseStatus = st
	a := ev.Annotations
	sessionAnnotations(a, s, s.Node())
	delete(a, AnnotPorts)
	a[AnnotPort] = strconv.Itoa(int(rec.Port))
	a[AnnotRequestID] = rec.RequestID
	a[AnnotBytesUp] = strconv.FormatInt(rec.Up, 10)
	a[AnnotBytesDown] = strconv.FormatInt(rec.Down, 10)
	a[AnnotDuration] = rec.Duration().Round(time.Microsecond).String()
	a[AnnotOutcome] = string(rec.Outcome)
	if rec.Message != "" {
		a[AnnotCloseReason] = truncate(rec.Message, maxReason)
	}
	return &ev
}

// refused is the ResponseComplete event of a request answered without an
// upgrade. st is the Status the client got (nil if its body was none); end
// is set when a session began (and was rejected) before the answer.
func refused(base auditinternal.Event, code int, st *metav1.Status, end *sessionEnd, now time.Time) *auditinternal.Event {
	ev := base
	ev.Stage = auditinternal.StageResponseComplete
	ev.StageTimestamp = metav1.NewMicroTime(now)
	if st == nil {
		st = &metav1.Status{Status: metav1.StatusFailure}
	} else {
		st = &metav1.Status{Status: st.Status, Message: truncate(st.Message, maxReason), Reason: st.Reason}
	}
	st.Code = int32(code)
	ev.ResponseStatus = st
	if end != nil {
		a := ev.Annotations
		sessionAnnotations(a, end.s, end.e.Node)
		a[AnnotDuration] = end.e.Duration.Round(time.Millisecond).String()
		a[AnnotOutcome] = string(end.e.Outcome)
		if end.e.Reason != "" {
			a[AnnotCloseReason] = truncate(end.e.Reason, maxReason)
		}
	}
	return &ev
}

func sessionAnnotations(a map[string]string, s *session.Session, node string) {
	a[AnnotCluster] = s.Cluster
	a[AnnotSessionID] = s.ID
	a[AnnotProtocol] = string(s.Protocol)
	set(a, AnnotNode, node)
	set(a, AnnotPolicy, s.Policy)
	if len(s.Ports) > 0 {
		ps := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ps[i] = strconv.Itoa(int(p))
		}
		a[AnnotPorts] = strings.Join(ps, ",")
	}
}

func set(a map[string]string, k, v string) {
	if v != "" {
		a[k] = v
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + truncatedSuffix
}
