// Package netconn is the connection under each client and kubelet TLS
// connection of the gateway. It does three things crypto/tls cannot do
// from above:
//
//   - join a relayed frame's short last TLS record with the next record in
//     one system call (write.go);
//   - let the reader of an idle connection wait for bytes outside
//     crypto/tls, on a goroutine with a small stack (idle.go);
//   - give back crypto/tls's input buffers while a connection waits
//     (release.go).
package netconn
