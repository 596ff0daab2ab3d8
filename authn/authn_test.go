package authn

import (
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/pfgateway/pfgateway/devcluster/pki"
)

func TestClientCert(t *testing.T) {
	ca, err := pki.NewCA("clients")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewCA("other")
	caFile, err := ca.WriteFile(t.TempDir(), "ca")
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewClientCert(caFile)
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := ca.Issue(pki.IssueOptions{CommonName: "alice", Organization: []string{"devs", "ops"}, Usage: pki.Client})
	mallory, _ := other.Issue(pki.IssueOptions{CommonName: "admin", Organization: []string{"system:masters"}, Usage: pki.Client})
	server, _ := ca.Issue(pki.Loopback("not-a-client"))

	tests := []struct {
		name       string
		cert       *pki.KeyPair
		wantOK     bool
		wantErr    bool
		wantUser   string
		wantGroups []string
	}{
		{name: "should map CN to the user and O to groups", cert: alice, wantOK: true, wantUser: "alice", wantGroups: []string{"devs", "ops", "system:authenticated"}},
		{name: "should not authenticate a request without a certificate"},
		{name: "should reject a certificate from another CA", cert: mallory, wantErr: true},
		{name: "should reject a certificate without client auth usage", cert: server, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/", nil)
			req.TLS = &tls.ConnectionState{}
			if tt.cert != nil {
				req.TLS.PeerCertificates = []*x509.Certificate{tt.cert.TLS.Leaf}
			}
			resp, ok, err := a.AuthenticateRequest(req)
			if (err != nil) != tt.wantErr || ok != tt.wantOK {
				t.Fatalf("ok=%v err=%v", ok, err)
			}
			if ok && (resp.User.GetName() != tt.wantUser || !reflect.DeepEqual(sets.List(sets.New(resp.User.GetGroups()...)), sets.List(sets.New(tt.wantGroups...)))) {
				t.Fatalf("user %q groups %v", resp.User.GetName(), resp.User.GetGroups())
			}
		})
	}
}
