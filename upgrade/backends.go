package upgrade

import "github.com/pfgateway/pfgateway/session"

// backend is the Backend that serves s's cluster.
func (p *Proxy) backend(s *session.Session) *Backend {
	if p.BackendFor != nil {
		if b := p.BackendFor(s.Cluster); b != nil {
			return b
		}
	}
	return p.Backend
}
