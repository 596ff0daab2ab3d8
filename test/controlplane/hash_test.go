package controlplane

import (
	"net"
	"time"

	"github.com/pfgateway/pfgateway/devcluster/hashpod"
)

// hashTimeout bounds each hash-pod connection, on the pod's side and the
// client's.
const hashTimeout = 2 * time.Minute

// startHashServer starts the "pod" behind the test kubelet (package hashpod),
// with its default 64 MiB bound on what one header may ask for.
func startHashServer() (*hashpod.Server, error) {
	return hashpod.Start(hashpod.Options{Timeout: hashTimeout})
}

// exchange runs one hash-pod exchange over c, checking every byte both ways,
// and closes c.
func exchange(c net.Conn, up, down int, seed uint64) error {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(hashTimeout))
	_, err := hashpod.Exchange(c, int64(up), int64(down), seed)
	return err
}
