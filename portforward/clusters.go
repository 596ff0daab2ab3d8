package portforward

// resolver returns cluster's resolver from ResolverFor, or else Resolvers.
func (h *Handler) resolver(cluster string) (Resolver, bool) {
	if h.ResolverFor != nil {
		return h.ResolverFor(cluster)
	}
	r, ok := h.Resolvers[cluster]
	return r, ok
}
