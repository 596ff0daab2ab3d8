// Package status writes errors to clients as Kubernetes metav1.Status
// objects, negotiated the way the API server does, so kubectl and client-go
// show the message instead of "unable to upgrade connection: <html>…".
package status

import (
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/client-go/kubernetes/scheme"
)

var coreV1 = schema.GroupVersion{Version: "v1"}

// Write sends err as a Status. A plain error becomes a 500 InternalError, as
// the API server does; use the apierrors constructors for anything else.
func Write(w http.ResponseWriter, req *http.Request, err error) {
	responsewriters.ErrorNegotiated(err, scheme.Codecs.WithoutConversion(), coreV1, w, req)
}

// Responder adapts Write to k8s.io/apimachinery/pkg/util/proxy.ErrorResponder.
type Responder struct{}

// Error implements proxy.ErrorResponder.
func (Responder) Error(w http.ResponseWriter, req *http.Request, err error) { Write(w, req, err) }

// NotFound is the Status for a path the gateway does not serve.
func NotFound(w http.ResponseWriter, req *http.Request) {
	Write(w, req, apierrors.NewGenericServerResponse(http.StatusNotFound, req.Method,
		schema.GroupResource{}, "", "the server could not find the requested resource", 0, false))
}

// MethodNotAllowed is the Status for a known path with the wrong method.
func MethodNotAllowed(w http.ResponseWriter, req *http.Request) {
	Write(w, req, &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusMethodNotAllowed, Reason: metav1.StatusReasonMethodNotAllowed,
		Message: fmt.Sprintf("the server does not allow this method on the requested resource: %s %s", req.Method, req.URL.Path),
	}})
}

// OnlyPortForward is the Status for API calls the gateway refuses to proxy.
func OnlyPortForward(w http.ResponseWriter, req *http.Request) {
	Write(w, req, apierrors.NewForbidden(schema.GroupResource{}, "",
		fmt.Errorf("pfgateway only serves port-forward and the read-only calls kubectl makes before it; %s %s is not one of them", req.Method, req.URL.Path)))
}
