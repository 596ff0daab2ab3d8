package session

import "github.com/pfgateway/pfgateway/relay"

// Observers tells each of its observers in turn.
type Observers []Observer

var _ Observer = Observers(nil)

func (os Observers) SessionStarted(s *Session) {
	for _, o := range os {
		o.SessionStarted(s)
	}
}

func (os Observers) SessionEnded(s *Session, e Ended) {
	for _, o := range os {
		o.SessionEnded(s, e)
	}
}

func (os Observers) Forwarded(s *Session, rec relay.Record) {
	for _, o := range os {
		o.Forwarded(s, rec)
	}
}

// AddObserver adds o to the registry's observers (SetObserver replaces
// them); call it before the registry's first Begin.
func (r *Registry) AddObserver(o Observer) {
	switch cur := r.observer.(type) {
	case nil:
		r.observer = o
	case Observers:
		r.observer = append(cur[:len(cur):len(cur)], o)
	default:
		r.observer = Observers{cur, o}
	}
}
