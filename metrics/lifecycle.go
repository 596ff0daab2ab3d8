package metrics

// Outcomes of sessions the gateway ended because their target went away
// (package podwatch).
const (
	// OutcomePodDeleted: the session's pod was deleted, or replaced by a
	// new pod of the same name (a new UID).
	OutcomePodDeleted Outcome = "pod_deleted"
	// OutcomeNodeDeleted: the node of the session's pod was deleted.
	OutcomeNodeDeleted Outcome = "node_deleted"
)
