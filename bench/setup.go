package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/pfgateway/pfgateway/bench/internal/delayproxy"
	"github.com/pfgateway/pfgateway/devcluster"
	"github.com/pfgateway/pfgateway/devcluster/pki"
)

const (
	// rttPod is the same pod as podName, on a node whose kubelet endpoint
	// is the delay proxy: the gateway reaches it through the proxy because
	// it resolves the node, so the gateways need no flag for it.
	rttPod  = "bench-rtt"
	rttNode = "bench-rtt-node"
)

// env is what setUp started: the paths to measure and how to reach them.
type env struct {
	paths   []string          // direct, each gateway child, the reference relay
	targets map[string]target // to the pod podName, kubelet reached directly
	// rtt reaches rttPod, the kubelet behind the delay proxy; nil without
	// -kubelet-rtt. It has no relay: the relay dials one fixed kubelet.
	rtt          map[string]target
	rttProxyPort int // the delay proxy's port, for the kube-apiserver's node
}

// target is a path to the pod: the kubelet itself, or a gateway.
type target struct {
	url *url.URL
	cfg *rest.Config
	gw  *gatewayProc // nil for the direct path
}

// gatewayURL is the gateway's port-forward endpoint for pod at host.
func gatewayURL(host, pod string) *url.URL {
	return &url.URL{Scheme: "https", Host: host, Path: "/api/v1/namespaces/default/pods/" + pod + "/portforward"}
}

// setUp starts the dev cluster, the pod and the gateways, and returns the
// paths to measure: "direct" first, then each gateway binary in each
// -splice variant, then the reference relay (unless -relay=false).
func setUp(c *config, r *results) (*env, error) {
	dir, err := os.MkdirTemp("", "pfgateway-bench-")
	if err != nil {
		return nil, err
	}
	atCleanup(func() { _ = os.RemoveAll(dir) })
	if len(c.gateways) == 0 && len(c.splice) > 0 {
		logf("building %s", gatewayPkg)
		bin, err := buildGateway(dir, c.profileDir != "")
		if err != nil {
			return nil, err
		}
		c.gateways = []gatewaySpec{{pathGateway, bin}}
	}
	relayBin := ""
	if c.relay {
		logf("building %s", relayPkg)
		if relayBin, err = goBuild(dir, relayPkg, "refrelay"); err != nil {
			return nil, err
		}
	}
	cl, err := devcluster.Start(devcluster.Options{Dir: dir})
	if err != nil {
		return nil, fmt.Errorf("dev cluster: %w", err)
	}
	atCleanup(cl.Close)
	pod, err := startPodServer()
	if err != nil {
		return nil, err
	}
	atCleanup(pod.Close)
	echo, err := startEchoServer()
	if err != nil {
		return nil, err
	}
	atCleanup(echo.Close)
	ports := map[int32]string{podPort: pod.Addr(), echoPort: echo.Addr()}
	if err := cl.AddPod(devcluster.Pod{Name: podName, Ports: ports}); err != nil {
		return nil, err
	}
	user, err := cl.CA.Issue(pki.IssueOptions{CommonName: benchUser, Organization: []string{benchGroup}, Usage: pki.Client})
	if err != nil {
		return nil, err
	}
	restCfg := func(host string) *rest.Config {
		return &rest.Config{Host: "https://" + host, TLSClientConfig: rest.TLSClientConfig{CAData: cl.CA.CertPEM, CertData: user.CertPEM, KeyData: user.KeyPEM}}
	}
	kubelet := cl.Kubelet.Addr()
	e := &env{
		paths:   []string{pathDirect},
		targets: map[string]target{pathDirect: {&url.URL{Scheme: "https", Host: kubelet, Path: "/portForward/default/" + podName}, restCfg(kubelet), nil}},
	}
	r.KubeletTLS = probeTLS(kubelet, cl, user)
	if c.latencyConns > 0 && c.kubeletRTT > 0 {
		proxy, err := addRTTNode(cl, ports, c.kubeletRTT)
		if err != nil {
			return nil, err
		}
		_, port, _ := net.SplitHostPort(proxy)
		e.rttProxyPort, _ = strconv.Atoi(port)
		e.rtt = map[string]target{pathDirect: {&url.URL{Scheme: "https", Host: proxy, Path: "/portForward/default/" + rttPod}, restCfg(proxy), nil}}
		if r.Latency.ProxyRTT, err = calibrateRTT(echo.Addr(), c.kubeletRTT); err != nil {
			return nil, err
		}
		logf("kubelet behind a delay proxy at %s for pod %s: %s added per round trip, a TCP echo through it measures %s",
			proxy, rttPod, c.kubeletRTT, r.Latency.ProxyRTT)
	}
	if c.paths[pathAPIServer] {
		if err := e.addAPIServer(c, r, dir, cl, user, restCfg); err != nil {
			return nil, err
		}
	}

	for _, spec := range c.gateways {
		for _, v := range c.splice {
			name := gatewayPath(spec, v, len(c.gateways) > 1)
			gw, err := startGateway(name, spec.Bin, dir, c.profileDir, c.pin, cl.Files, v.Args)
			if err != nil {
				return nil, err
			}
			atCleanup(func() { gw.Stop() })
			info := gatewayInfo{Name: name, Bin: spec.Name, Variant: v.Name, TLS: probeTLS(gw.Addr, cl, user)}
			if info.RSSIdle, _, err = gw.Memory(); err != nil {
				return nil, err
			}
			if err := gw.calibrateScrape(); err != nil {
				return nil, err
			}
			info.ScrapeCost = gw.scrapeCost
			logf("gateway %s: pid %d ready at %s, flags %q, VmRSS %s", name, gw.Pid(), gw.Addr, v.Args, bytesString(info.RSSIdle))
			r.Gateways = append(r.Gateways, info)
			e.targets[name] = target{gatewayURL(gw.Addr, podName), restCfg(gw.Addr), gw}
			if e.rtt != nil {
				e.rtt[name] = target{gatewayURL(gw.Addr, rttPod), restCfg(gw.Addr), gw}
			}
			e.paths = append(e.paths, name)
		}
	}
	if c.relay {
		rl, err := startRelay(pathRelay, relayBin, dir, c.pin, cl.Files, kubelet)
		if err != nil {
			return nil, err
		}
		atCleanup(func() { rl.Stop() })
		info := gatewayInfo{Name: pathRelay, TLS: probeTLS(rl.Addr, cl, user)}
		if info.RSSIdle, _, err = rl.Memory(); err != nil {
			return nil, err
		}
		logf("reference relay: pid %d listening at %s, VmRSS %s", rl.Pid(), rl.Addr, bytesString(info.RSSIdle))
		r.Gateways = append(r.Gateways, info)
		e.targets[pathRelay] = target{gatewayURL(rl.Addr, podName), restCfg(rl.Addr), rl}
		e.paths = append(e.paths, pathRelay)
	}
	return e, nil
}

// addRTTNode starts a delay proxy in front of the kubelet and adds a node
// whose kubelet endpoint is the proxy, with rttPod on it (same ports as
// the benchmark pod). It returns the proxy's address.
func addRTTNode(cl *devcluster.Cluster, ports map[int32]string, rtt time.Duration) (string, error) {
	p, err := delayproxy.Start(cl.Kubelet.Addr(), rtt/2)
	if err != nil {
		return "", err
	}
	atCleanup(func() { _ = p.Close() })
	_, port, _ := net.SplitHostPort(p.Addr())
	var node corev1.Node
	node.Name = rttNode
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", err
	}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(n)
	if err := cl.Add(&node); err != nil {
		return "", err
	}
	nodeName := rttNode
	return p.Addr(), cl.AddPod(devcluster.Pod{Name: rttPod, Ports: ports, NodeName: &nodeName})
}
