package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/pfgateway/pfgateway/bench/internal/gwproc"
	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/hashpod"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

const (
	podName  = "soak"
	podUID   = "uid-default-soak" // devcluster.AddPod's
	userName = "soak"
)

// soakPolicy lets the soak user forward every port of the soak pod but
// forbiddenPort (closedPort is allowed: the kubelet is what refuses it).
var soakPolicy = fmt.Sprintf(`apiVersion: pfgateway.io/v1alpha1
kind: Policy
rules:
- name: soak
  users: [%s]
  namespaces: [default]
  podSelector: {matchLabels: {app: soak}}
  ports: [%d, %d, %d]
`, userName, hashPort, echoPort, closedPort)

// splices are the gateway configurations -splice chooses from. Only the
// stream-aware ones can enforce a policy on ports (the opaque splice
// refuses to start with one), so faultForbidden runs only on them.
var splices = map[string]struct {
	args   []string
	policy bool
}{
	"opaque":        {[]string{"--splice-mode=opaque"}, false},
	"streams":       {[]string{"--splice-mode=streams", "--early-stream-reply=false"}, true},
	"streams-early": {[]string{"--splice-mode=streams", "--early-stream-reply=true"}, true},
}

// gateway is one gateway child and what its sessions need.
type gateway struct {
	name       string
	policy     bool // faultForbidden applies
	reconnects bool // stream-aware: survives a lost kubelet connection
	proc       *gwproc.Proc
	url        *url.URL
	cfg        *rest.Config
}

// dial opens a session over proto ("spdy" or "websocket"), as kubectl does.
func (g *gateway) dial(proto string) (httpstream.Connection, error) {
	var d httpstream.Dialer
	switch proto {
	case "spdy":
		rt, up, err := spdy.RoundTripperFor(g.cfg)
		if err != nil {
			return nil, err
		}
		d = spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, g.url)
	case "websocket":
		var err error
		if d, err = portforward.NewSPDYOverWebsocketDialer(g.url, g.cfg); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown protocol %q", proto)
	}
	conn, _, err := d.Dial(portforward.PortForwardProtocolV1Name)
	return conn, err
}

// setUp starts the dev cluster, the soak pod and one gateway child per
// -splice; spawn starts another child (the caller stops it); cleanup undoes
// what succeeded.
func setUp(c *config) (gws []*gateway, spawn func(splice string) (*gateway, error), bf *backendFaults, cleanup func(), err error) {
	var undo []func()
	cleanup = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	dir, err := os.MkdirTemp("", "pfgateway-soak-")
	if err != nil {
		return nil, nil, nil, cleanup, err
	}
	undo = append(undo, func() { _ = os.RemoveAll(dir) })
	bin := c.gatewayBin
	if bin == "" {
		logf("building %s", gwproc.GatewayPkg)
		if bin, err = gwproc.BuildGateway(dir, false); err != nil {
			return nil, nil, nil, cleanup, err
		}
	}
	cl, err := devcluster.Start(devcluster.Options{Dir: dir})
	if err != nil {
		return nil, nil, nil, cleanup, fmt.Errorf("dev cluster: %w", err)
	}
	undo = append(undo, cl.Close)
	hash, err := hashpod.Start(hashpod.Options{MaxBytes: uint64(max(c.maxPayload, c.idlePayload))})
	if err != nil {
		return nil, nil, nil, cleanup, err
	}
	undo = append(undo, hash.Close)
	echo, err := startEchoPod()
	if err != nil {
		return nil, nil, nil, cleanup, err
	}
	undo = append(undo, echo.Close)
	ports := map[int32]string{hashPort: hash.Addr(), echoPort: echo.Addr(), forbiddenPort: echo.Addr()}
	for p, a := range ports {
		podAddrs[int(p)] = a
	}
	if err := cl.AddPod(devcluster.Pod{Name: podName, Labels: map[string]string{"app": "soak"}, Ports: ports}); err != nil {
		return nil, nil, nil, cleanup, err
	}
	if _, backend := c.split(); len(backend) > 0 {
		if bf, err = startBackendFaults(c, cl, backend); err != nil {
			return nil, nil, nil, cleanup, err
		}
		undo = append(undo, bf.close)
	}
	// closedPort is not mapped: the test kubelet refuses its dial as a
	// node would for a port nothing in the pod listens on.
	user, err := cl.CA.Issue(pki.IssueOptions{CommonName: userName, Organization: []string{"soak"}, Usage: pki.Client})
	if err != nil {
		return nil, nil, nil, cleanup, err
	}
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(soakPolicy), 0o600); err != nil {
		return nil, nil, nil, cleanup, err
	}
	spawn = func(name string) (*gateway, error) {
		sp := splices[name]
		extra := append([]string(nil), sp.args...)
		if sp.policy {
			extra = append(extra, "--policy-file", policyFile)
		}
		extra = append(extra, c.gatewayArgs...)
		p, err := gwproc.StartGateway(gwproc.Options{Name: name, Bin: bin, Dir: dir, Files: cl.Files, Extra: extra})
		if err != nil {
			return nil, err
		}
		logf("gateway %s: pid %d at %s, flags %s", name, p.Pid(), p.Addr, strings.Join(extra, " "))
		return &gateway{
			name: name, policy: sp.policy, reconnects: sp.policy && !slices.Contains(c.gatewayArgs, "--kubelet-reconnect=false"), proc: p,
			url: &url.URL{Scheme: "https", Host: p.Addr, Path: "/api/v1/namespaces/default/pods/" + podName + "/portforward"},
			cfg: &rest.Config{Host: "https://" + p.Addr, TLSClientConfig: rest.TLSClientConfig{CAData: cl.CA.CertPEM, CertData: user.CertPEM, KeyData: user.KeyPEM}},
		}, nil
	}
	for _, name := range c.splice {
		gw, err := spawn(name)
		if err != nil {
			return nil, nil, nil, cleanup, err
		}
		undo = append(undo, func() { gw.proc.Stop() })
		gws = append(gws, gw)
	}
	return gws, spawn, bf, cleanup, nil
}
