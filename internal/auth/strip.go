package auth

import (
	"net/http"
	"net/url"
	"strings"
)

// Removing a credential from a request without touching anything else: the
// query and the Cookie header are rebuilt from their own raw text, minus
// the pairs that carry it.

type queryPair struct {
	raw      string // as sent, e.g. "access%5Ftoken=abc"
	key, val string // unescaped
}

// queryPairs splits a raw query into its pairs (both & and ; are not
// separators: only &, as net/url has it since Go 1.17).
func queryPairs(raw string) []queryPair {
	var out []queryPair
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		uk, err1 := url.QueryUnescape(k)
		uv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			uk, uv = k, v
		}
		out = append(out, queryPair{raw: part, key: uk, val: uv})
	}
	return out
}

// dropQuery removes every pair named name from a raw query; a query
// without one is returned as it is.
func dropQuery(raw, name string) string {
	pairs := queryPairs(raw)
	var kept []string
	for _, p := range pairs {
		if p.key != name {
			kept = append(kept, p.raw)
		}
	}
	if len(kept) == len(pairs) {
		return raw
	}
	return strings.Join(kept, "&")
}

// dropCookie removes every cookie named name from the Cookie header(s),
// keeping the others as they were sent. A header left empty goes.
func dropCookie(h http.Header, name string) {
	lines := h.Values("Cookie")
	found := false
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			if k, _, _ := strings.Cut(strings.TrimSpace(part), "="); strings.TrimSpace(k) == name {
				found = true
			}
		}
	}
	if !found {
		return
	}
	var out []string
	for _, line := range lines {
		var kept []string
		for part := range strings.SplitSeq(line, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			if k, _, _ := strings.Cut(p, "="); strings.TrimSpace(k) == name {
				continue
			}
			kept = append(kept, p)
		}
		if len(kept) > 0 {
			out = append(out, strings.Join(kept, "; "))
		}
	}
	if len(out) == 0 {
		h.Del("Cookie")
		return
	}
	h["Cookie"] = out
}

// dropOffer removes the subprotocol offers drop reports from the
// Sec-WebSocket-Protocol header(s).
func dropOffer(h http.Header, drop func(string) bool) {
	var kept []string
	for _, p := range offers(h) {
		if !drop(p) {
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		h.Del("Sec-Websocket-Protocol")
		return
	}
	h["Sec-Websocket-Protocol"] = []string{strings.Join(kept, ", ")}
}
