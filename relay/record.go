package relay

import "time"

// Outcome says how one forwarded connection (an error + data stream pair)
// ended. It is a bounded set, used as a metric label.
type Outcome string

const (
	// OutcomeClientClosed: the client half-closed the data stream first and
	// the pair then ended normally.
	OutcomeClientClosed Outcome = "client_closed"
	// OutcomePodClosed: the kubelet half-closed the data stream first (the
	// pod closed its side).
	OutcomePodClosed Outcome = "pod_closed"
	// OutcomeClientReset: the client reset a stream of the pair before it
	// ended normally.
	OutcomeClientReset Outcome = "client_reset"
	// OutcomeKubeletReset: the kubelet reset a replied stream of the pair
	// without an error message.
	OutcomeKubeletReset Outcome = "kubelet_reset"
	// OutcomeKubeletRefused: the kubelet reset a stream instead of replying
	// (missing or invalid port or stream type headers).
	OutcomeKubeletRefused Outcome = "kubelet_refused"
	// OutcomeKubeletError: the kubelet wrote an error message on the error
	// stream (e.g. nothing listens on the port); Record.Message has it.
	OutcomeKubeletError Outcome = "kubelet_error"
	// OutcomeDuplicateRequest: the client opened a second stream of the same
	// type for a request id.
	OutcomeDuplicateRequest Outcome = "duplicate_request"
	// OutcomeCreationTimeout: the pair's second stream, or the kubelet's
	// reply, did not come in time.
	OutcomeCreationTimeout Outcome = "creation_timeout"
	// OutcomeRefused: the gateway's Decide refused the pair.
	OutcomeRefused Outcome = "refused"
	// OutcomeGatewayLimit: the session's stream limit refused the pair.
	OutcomeGatewayLimit Outcome = "gateway_limit"
	// OutcomeClientGone: the client's connection ended with the pair open.
	OutcomeClientGone Outcome = "client_disconnected"
	// OutcomeKubeletGone: the kubelet's connection ended with the pair open.
	OutcomeKubeletGone Outcome = "kubelet_disconnected"
	// OutcomeProtocolError: a malformed frame ended the session with the
	// pair open.
	OutcomeProtocolError Outcome = "protocol_error"
)

// Outcomes lists every Outcome, for tests and metric initialisation.
var Outcomes = []Outcome{
	OutcomeClientClosed, OutcomePodClosed, OutcomeClientReset, OutcomeKubeletReset,
	OutcomeKubeletRefused, OutcomeKubeletError, OutcomeDuplicateRequest, OutcomeCreationTimeout,
	OutcomeRefused, OutcomeGatewayLimit, OutcomeClientGone, OutcomeKubeletGone, OutcomeProtocolError,
	OutcomeSessionClosed,
}

// MaxMessage bounds the error-stream text kept in a Record.
const MaxMessage = 4 << 10

// Record describes one forwarded connection once it has ended.
type Record struct {
	// RequestID is the client's requestID header, or the id the kubelet
	// derives from stream ids when the header is missing.
	RequestID string
	// Port is the data stream's port header (the error stream's until the
	// data stream arrives); 0 when missing or invalid.
	Port uint16
	// Up and Down are data-stream payload bytes: client to pod, pod to client.
	Up, Down int64
	Start    time.Time
	End      time.Time
	Outcome  Outcome
	// Message is the error-stream text (kubelet or gateway), at most MaxMessage bytes.
	Message string
}

// Duration is End - Start.
func (r Record) Duration() time.Duration { return r.End.Sub(r.Start) }

// PairInfo is what Decide sees of a stream before it reaches the kubelet.
type PairInfo struct {
	RequestID  string
	Port       uint16 // 0 when the header is missing or invalid
	StreamType string // "error" or "data" (as sent; may be invalid)
}

// Decision is Decide's answer. The zero value allows.
type Decision struct {
	// Deny refuses the pair: it never reaches the kubelet.
	Deny bool
	// Message is written on the pair's error stream, the way the kubelet
	// reports a failed forward. client-go then ends the whole session, as it
	// does for a kubelet error. Empty means the client's stream is reset
	// instead: client-go closes only that local connection.
	Message string
}

// Decide is called once per stream the client opens, before it is relayed.
// It runs on the relay's read loop and must not block.
type Decide func(PairInfo) Decision
