package frame

import "strconv"

// CloseCode is a status code carried in a Close frame (RFC 6455 §7.4).
type CloseCode uint16

// Close codes from RFC 6455 §7.4.1 and the IANA WebSocket Close Code Number
// Registry (1012-1014 were registered after the RFC).
const (
	CloseNormal             CloseCode = 1000
	CloseGoingAway          CloseCode = 1001
	CloseProtocolError      CloseCode = 1002
	CloseUnsupportedData    CloseCode = 1003
	CloseNoStatus           CloseCode = 1005 // never on the wire: "no code was present"
	CloseAbnormal           CloseCode = 1006 // never on the wire: "closed without a Close frame"
	CloseInvalidPayload     CloseCode = 1007
	ClosePolicyViolation    CloseCode = 1008
	CloseMessageTooBig      CloseCode = 1009
	CloseMandatoryExtension CloseCode = 1010
	CloseInternalError      CloseCode = 1011
	CloseServiceRestart     CloseCode = 1012
	CloseTryAgainLater      CloseCode = 1013
	CloseBadGateway         CloseCode = 1014
	CloseTLSHandshake       CloseCode = 1015 // never on the wire
)

// IsLegalOnWire reports whether c may appear in a Close frame: 1000-1003 and
// 1007-1014 (RFC 6455 §7.4.1 plus the IANA registry), and 3000-4999 (§7.4.2:
// registered libraries and private use). 0-999 are unused, 1004 is reserved,
// 1005, 1006 and 1015 must never be sent, 1016-2999 are reserved for future
// revisions, and 5000 and above are undefined: a peer that sends any of those
// commits a protocol error.
func (c CloseCode) IsLegalOnWire() bool {
	switch {
	case c >= 1000 && c <= 1003:
		return true
	case c >= 1007 && c <= 1014:
		return true
	case c >= 3000 && c <= 4999:
		return true
	}
	return false
}

func (c CloseCode) String() string {
	switch c {
	case CloseNormal:
		return "normal closure"
	case CloseGoingAway:
		return "going away"
	case CloseProtocolError:
		return "protocol error"
	case CloseUnsupportedData:
		return "unsupported data"
	case CloseNoStatus:
		return "no status"
	case CloseAbnormal:
		return "abnormal closure"
	case CloseInvalidPayload:
		return "invalid payload data"
	case ClosePolicyViolation:
		return "policy violation"
	case CloseMessageTooBig:
		return "message too big"
	case CloseMandatoryExtension:
		return "mandatory extension"
	case CloseInternalError:
		return "internal error"
	case CloseServiceRestart:
		return "service restart"
	case CloseTryAgainLater:
		return "try again later"
	case CloseBadGateway:
		return "bad gateway"
	case CloseTLSHandshake:
		return "TLS handshake"
	}
	return "close code " + strconv.Itoa(int(c))
}
