package apiserver

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"
	"k8s.io/client-go/kubernetes/scheme"
)

// writeObject answers with obj in the media type the Accept header
// negotiates among the scheme's serializers: JSON, YAML or protobuf, as
// kube-apiserver does. Requests for transformed forms (as=Table, the
// aggregated discovery list) are declined the way a server without them
// declines, by falling back to the next acceptable type, so clients fall
// back too.
func writeObject(w http.ResponseWriter, r *http.Request, code int, obj runtime.Object) {
	_, info, err := negotiation.NegotiateOutputMediaType(r, scheme.Codecs, negotiation.DefaultEndpointRestrictions)
	if err != nil {
		writeJSON(w, statusOf(err))
		return
	}
	gv, err := groupVersionOf(obj)
	if err != nil {
		writeJSON(w, statusOf(err))
		return
	}
	var buf bytes.Buffer
	if err := scheme.Codecs.EncoderForVersion(info.Serializer, gv).Encode(obj, &buf); err != nil {
		slog.Error("fake apiserver: encoding response", "err", err)
		writeJSON(w, statusOf(apierrors.NewInternalError(err)))
		return
	}
	w.Header().Set("Content-Type", info.MediaType)
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// writeError answers with err as a metav1.Status, negotiated like objects:
// JSON unless the client prefers another type.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	st := statusOf(err)
	writeObject(w, r, int(st.Code), st)
}

// writeJSON is the fallback when negotiation itself fails.
func writeJSON(w http.ResponseWriter, st *metav1.Status) {
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(st)
}

// statusOf turns err into the Status the API server would send.
func statusOf(err error) *metav1.Status {
	var st metav1.Status
	if s, ok := err.(apierrors.APIStatus); ok {
		st = s.Status()
	} else {
		st = apierrors.NewInternalError(err).Status()
	}
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	return &st
}

func groupVersionOf(obj runtime.Object) (schema.GroupVersion, error) {
	gvks, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil {
		return schema.GroupVersion{}, err
	}
	return gvks[0].GroupVersion(), nil
}

// notFound is kube-apiserver's answer for a path it does not serve.
func notFound() error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Message: "the server could not find the requested resource",
		Reason:  metav1.StatusReasonNotFound,
		Details: &metav1.StatusDetails{},
		Code:    http.StatusNotFound,
	}}
}

// methodNotAllowed answers writes, which this server does not take.
func methodNotAllowed() error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Message: "the server does not allow this method on the requested resource",
		Reason:  metav1.StatusReasonMethodNotAllowed,
		Details: &metav1.StatusDetails{},
		Code:    http.StatusMethodNotAllowed,
	}}
}
