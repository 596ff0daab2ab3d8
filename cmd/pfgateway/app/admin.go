package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"

	"github.com/pfgateway/pfgateway/session"
	"github.com/pfgateway/pfgateway/status"
)

// The session admin API's types, in the group the policy file uses.
const (
	adminAPIVersion = "pfgateway.io/v1alpha1"
	kindSessionList = "SessionList"
	kindSession     = "Session"
)

var sessionsResource = schema.GroupResource{Group: "pfgateway.io", Resource: "sessions"}

// sessionList is the body of GET /sessions.
type sessionList struct {
	metav1.TypeMeta `json:",inline"`
	Items           []session.Snapshot `json:"items"`
}

// sessionItem is the body of GET /sessions/{id}.
type sessionItem struct {
	metav1.TypeMeta `json:",inline"`
	session.Snapshot
}

// sessionsAPI serves the session admin API on the admin listener, which has
// no authentication of its own: it is bound to localhost by default and
// must not be exposed (README, "Session admin API").
type sessionsAPI struct {
	reg *session.Registry
	now func() time.Time
}

func (a *sessionsAPI) register(mux *http.ServeMux) {
	mux.HandleFunc("/sessions", a.list)
	mux.HandleFunc("/sessions/{id}", a.one)
}

// list is GET /sessions: every live session, oldest first.
func (a *sessionsAPI) list(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		status.MethodNotAllowed(w, req)
		return
	}
	writeJSON(w, sessionList{
		TypeMeta: metav1.TypeMeta{Kind: kindSessionList, APIVersion: adminAPIVersion},
		Items:    a.reg.List(a.now()),
	})
}

// one is GET or DELETE /sessions/{id}.
func (a *sessionsAPI) one(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("id")
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		for _, s := range a.reg.List(a.now()) {
			if s.ID == id {
				writeJSON(w, sessionItem{TypeMeta: metav1.TypeMeta{Kind: kindSession, APIVersion: adminAPIVersion}, Snapshot: s})
				return
			}
		}
		status.Write(w, req, apierrors.NewNotFound(sessionsResource, id))
	case http.MethodDelete:
		a.terminate(w, req, id)
	default:
		w.Header().Set("Allow", "GET, HEAD, DELETE")
		status.MethodNotAllowed(w, req)
	}
}

// terminate ends one session. The caller is named by its address: the
// listener has no client authentication.
func (a *sessionsAPI) terminate(w http.ResponseWriter, req *http.Request, id string) {
	by := "admin API client " + req.RemoteAddr
	if err := a.reg.Terminate(id, by); err != nil {
		if errors.Is(err, session.ErrNotFound) {
			err = apierrors.NewNotFound(sessionsResource, id)
		}
		status.Write(w, req, err)
		return
	}
	klog.InfoS("Terminating port-forward session through the admin API", "sessionID", id, "by", by)
	writeJSON(w, metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusSuccess, Code: http.StatusOK,
		Message: fmt.Sprintf("session %q terminated", id),
		Details: &metav1.StatusDetails{Name: id, Group: sessionsResource.Group, Kind: sessionsResource.Resource},
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		klog.V(2).InfoS("Admin API answer not written", "err", err)
	}
}
