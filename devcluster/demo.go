package devcluster

import (
	"fmt"
	"net"
	"net/http"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// DemoPort is the container port of the demo pod's web server.
const DemoPort = 8080

// DemoGreeting starts every answer of the demo pod's web server.
const DemoGreeting = "Hello from pod default/demo, through pfgateway."

// AddDemoApp runs a small web server as pod default/demo (port 8080, label
// app=demo) with a Service and a Deployment named demo selecting it, so
// `kubectl port-forward pod/demo`, `svc/demo` and `deploy/demo` all work.
// It returns a function that stops the web server.
func (c *Cluster) AddDemoApp() (stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s\nYou asked for %s %s at %s.\n", DemoGreeting, r.Method, r.URL.Path, time.Now().UTC().Format(time.RFC3339))
	})}
	go func() { _ = srv.Serve(ln) }()
	stop = func() { _ = srv.Close() }

	labels := map[string]string{"app": "demo"}
	if err := c.AddPod(Pod{Name: "demo", Labels: labels, Ports: map[int32]string{DemoPort: ln.Addr().String()}}); err != nil {
		stop()
		return nil, err
	}
	one := int32(1)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "demo"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{
			Name: "http", Port: 80, TargetPort: intstr.FromInt32(DemoPort), Protocol: corev1.ProtocolTCP,
		}}},
	}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "demo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "pfgateway/dev"}}},
			},
		},
	}
	for _, o := range []runtime.Object{svc, deploy} {
		if err := c.Add(o); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}
