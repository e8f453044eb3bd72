package balance

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// Sticky maps the values of a sticky cookie (balance: cookie) to a pool's
// backends and back.
//
// A value is a keyed MAC of the backend's Key (its URL as configured):
// base64url of the first 16 bytes of HMAC-SHA256(secret, Key). It does
// not reveal the upstream's address, and since a value is looked up, never
// decoded, a client can only present one of the values the gateway hands
// out: it cannot make the gateway connect anywhere else. The same secret
// and Key give the same value in every process, so a cookie survives a
// restart and works on every instance that shares the config. A Sticky is
// immutable and safe for concurrent use.
type Sticky struct {
	byValue map[string]*Backend
	values  map[*Backend]string
}

// stickyValueLen is the length of a value: 16 bytes in base64url.
const stickyValueLen = 22

// NewSticky returns the values of backends under secret.
func NewSticky(secret []byte, backends []*Backend) *Sticky {
	s := &Sticky{byValue: make(map[string]*Backend, len(backends)), values: make(map[*Backend]string, len(backends))}
	for _, b := range backends {
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(b.Key))
		v := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
		s.byValue[v] = b
		s.values[b] = v
	}
	return s
}

// Value is b's cookie value ("" for a backend Sticky does not know).
func (s *Sticky) Value(b *Backend) string { return s.values[b] }

// Lookup returns the backend a cookie value names, or nil when it names
// none (forged, damaged, or an upstream a reload removed).
func (s *Sticky) Lookup(v string) *Backend {
	if len(v) != stickyValueLen {
		return nil
	}
	return s.byValue[v]
}
