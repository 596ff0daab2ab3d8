// Package controlplane is the third test tier (DESIGN.md §5): the gateway in
// front of a real control plane — etcd from Debian's etcd-server package and
// a kube-apiserver built by hack/kube-apiserver.sh — so that TokenReview,
// SubjectAccessReview, RBAC, impersonation and kubectl's discovery are the
// real thing, not the dev API server's stand-ins. The kubelet is still the
// test kubelet (devcluster/kubelet) behind mTLS, registered as a real Node.
//
// The tier skips, saying why, when etcd or the kube-apiserver binary is
// missing; with CI=true it fails instead, so a CI machine cannot pass it
// silently.
package controlplane
