package relay

import "wsgate/frame"

// Why a session ended, as the access log says it (docs/operations.md).
const (
	whyNormal        = "normal"
	whyProtocolError = "protocol_error"
	whyBadData       = "bad_data"
	whyTooBig        = "too_big"
	whyRateLimited   = "rate_limited"
	whyIdle          = "idle"
	whyUpstreamGone  = "upstream_gone"
	whyClientGone    = "client_gone"
	whyShutdown      = "shutdown"
	whyDrained       = "drained"
	whyTruncated     = "truncated"
	whyLifetime      = "lifetime"
	whyTokenExpired  = "token_expired"
)

// event is a way a session can end: one row of the docs/relay.md close-translation
// table. Relayed Close frames (a peer's own close handshake) are not events:
// they are passed through as they are.
type event uint8

const (
	evClientProtocol   event = iota // unmasked, RSV, opcode, control >125, fragmented control, continuation order, illegal close code, 1-byte close
	evClientBadData                 // text or close reason not UTF-8
	evClientTooBig                  // frame or message over the cap
	evClientRate                    // over a rate limit with on_exceed: close
	evClientGone                    // EOF, reset, write error, pong timeout
	evIdle                          // idle_timeout
	evUpstreamGone                  // EOF, reset, pong/write timeout, no close
	evUpstreamProtocol              // masked frame, RSV, opcode, illegal close code...
	evUpstreamBadData               // bad UTF-8
	evUpstreamTooBig                // message over the cap
	evShutdown                      // SIGTERM
	evDrained                       // reload removed the route/upstream; admin drain
	evLifetime                      // max_session_lifetime (SetLifetime)
	evTokenExpired                  // the client's token expired (SetExpiry)
)

// closeRule is what each side is sent for an event. codeNone means that side
// gets no Close frame (it is gone).
type closeRule struct {
	toClient, toUpstream frame.CloseCode
	why                  string
	reason               string // the close reason text sent to both sides
}

const (
	codeNone    frame.CloseCode = 0
	codeFailure frame.CloseCode = 1 // placeholder: server.upstream_failure_code
	codeShut    frame.CloseCode = 2 // placeholder: server.shutdown_close_code
)

// closeTable mirrors the the close-translation table (docs/relay.md) row by row.
var closeTable = [...]closeRule{
	evClientProtocol:   {frame.CloseProtocolError, frame.CloseGoingAway, whyProtocolError, "client protocol error"},
	evClientBadData:    {frame.CloseInvalidPayload, frame.CloseGoingAway, whyBadData, "client sent invalid UTF-8"},
	evClientTooBig:     {frame.CloseMessageTooBig, frame.CloseGoingAway, whyTooBig, "client message too big"},
	evClientRate:       {frame.ClosePolicyViolation, frame.CloseGoingAway, whyRateLimited, "client over rate limit"},
	evClientGone:       {codeNone, frame.CloseGoingAway, whyClientGone, "client gone"},
	evIdle:             {frame.CloseGoingAway, frame.CloseGoingAway, whyIdle, "idle timeout"},
	evUpstreamGone:     {codeFailure, codeNone, whyUpstreamGone, "upstream gone"},
	evUpstreamProtocol: {codeFailure, frame.CloseProtocolError, whyProtocolError, "upstream protocol error"},
	evUpstreamBadData:  {codeFailure, frame.CloseInvalidPayload, whyBadData, "upstream sent invalid UTF-8"},
	evUpstreamTooBig:   {codeFailure, frame.CloseMessageTooBig, whyTooBig, "upstream message too big"},
	evShutdown:         {codeShut, frame.CloseGoingAway, whyShutdown, "gateway shutting down"},
	evDrained:          {frame.CloseServiceRestart, frame.CloseGoingAway, whyDrained, "route drained"},
	evLifetime:         {frame.CloseGoingAway, frame.CloseGoingAway, whyLifetime, "session lifetime reached"},
	evTokenExpired:     {frame.ClosePolicyViolation, frame.CloseGoingAway, whyTokenExpired, "token expired"},
}

// violationEvent maps a frame-level violation by the peer on side s to its
// table row, using the close code the violation carries.
func violationEvent(s Side, code frame.CloseCode) event {
	switch {
	case s == SideClient && code == frame.CloseInvalidPayload:
		return evClientBadData
	case s == SideClient && code == frame.CloseMessageTooBig:
		return evClientTooBig
	case s == SideClient:
		return evClientProtocol
	case code == frame.CloseInvalidPayload:
		return evUpstreamBadData
	case code == frame.CloseMessageTooBig:
		return evUpstreamTooBig
	}
	return evUpstreamProtocol
}

func goneEvent(s Side) event {
	if s == SideClient {
		return evClientGone
	}
	return evUpstreamGone
}
