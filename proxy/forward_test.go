package proxy

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"wsgate/internal/config"
	"wsgate/internal/listen"
)

// upstreamHeaderRef is upstreamHeader as first written, with maps, Split
// and string concatenation: the reference the allocation-lean version must
// match header for header.
func upstreamHeaderRef(r *http.Request, route *config.Route, proxies []netip.Prefix) http.Header {
	h := make(http.Header, len(r.Header)+4)
	var named map[string]bool
	for _, v := range r.Header.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				if named == nil {
					named = make(map[string]bool)
				}
				named[textproto.CanonicalMIMEHeaderKey(t)] = true
			}
		}
	}
	peer := peerAddr(r)
	peerTrusted := listen.Trusted(peer, proxies)
	for k, vs := range r.Header {
		if hopByHop[k] || named[k] || strings.HasPrefix(k, "Sec-Websocket-") {
			continue
		}
		if !peerTrusted && isForwarding(k) {
			continue
		}
		h[k] = append([]string(nil), vs...)
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	prior := h.Values("X-Forwarded-For")
	if len(prior) == 0 && peerTrusted && len(h.Values("Forwarded")) > 0 {
		prior = []string{strings.Join(forwardedChain(r), ", ")}
	}
	if len(prior) > 0 {
		h.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+peer.String())
	} else {
		h.Set("X-Forwarded-For", peer.String())
	}
	if h.Get("X-Forwarded-Proto") == "" {
		h.Set("X-Forwarded-Proto", proto)
	}
	if h.Get("X-Forwarded-Host") == "" {
		h.Set("X-Forwarded-Host", r.Host)
	}
	node := peer.String()
	if peer.Is6() {
		node = `"[` + node + `]"`
	}
	host := r.Host
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			host = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(host) + `"`
			break
		}
	}
	elem := "for=" + node + ";host=" + host + ";proto=" + proto
	if prior := h.Values("Forwarded"); len(prior) > 0 {
		h.Set("Forwarded", strings.Join(prior, ", ")+", "+elem)
	} else {
		h.Set("Forwarded", elem)
	}
	for k, v := range route.SetHeaders {
		h.Set(k, v)
	}
	return h
}

// normalize makes empty value lists nil, the one way the two versions may
// differ without any reader of the header telling them apart.
func normalize(h http.Header) http.Header {
	for k, v := range h {
		if len(v) == 0 {
			h[k] = nil
		}
	}
	return h
}

// forwardCase is one request for upstreamHeader.
type forwardCase struct {
	name    string
	remote  string
	host    string
	tls     bool
	header  http.Header
	set     map[string]string
	proxies []netip.Prefix
}

func forwardCases() []forwardCase {
	trustLo := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	return []forwardCase{
		{name: "browser", remote: "192.0.2.7:5555", host: "gw.example:8080", header: http.Header{
			"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
			"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Extensions": {"permessage-deflate"},
			"Cookie": {"a=1", "b=2"}, "Origin": {"https://app.example"}, "User-Agent": {"x"}}},
		{name: "untrusted forwarding dropped", remote: "192.0.2.7:5555", host: "gw.example", header: http.Header{
			"X-Forwarded-For": {"10.0.0.1"}, "Forwarded": {"for=10.0.0.1"}, "X-Real-Ip": {"10.0.0.1"},
			"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil"}}},
		{name: "trusted xff", remote: "127.0.0.1:1", host: "gw", proxies: trustLo, header: http.Header{
			"X-Forwarded-For": {"198.51.100.1, 10.0.0.2", "10.0.0.3"}, "X-Forwarded-Proto": {"https"}, "X-Real-Ip": {"1.2.3.4"}}},
		{name: "trusted forwarded only", remote: "127.0.0.1:1", host: "gw", proxies: trustLo, header: http.Header{
			"Forwarded": {`for="[2001:db8::1]:80";proto=https, for=198.51.100.9`}}},
		{name: "trusted empty forwarded", remote: "127.0.0.1:1", host: "gw", proxies: trustLo, header: http.Header{
			"Forwarded": {""}}},
		{name: "ipv6 peer quoted host", remote: "[2001:db8::5]:443", host: `we"ird\host`, tls: true, header: http.Header{}},
		{name: "ipv6 trusted", remote: "[::1]:443", host: "[::1]:8443", proxies: trustLo, header: http.Header{
			"X-Forwarded-For": {"2001:db8::7"}, "Forwarded": {"for=x"}, "X-Forwarded-Host": {""}}},
		{name: "connection names headers", remote: "192.0.2.7:1", host: "gw", header: http.Header{
			"Connection": {"keep-alive, x-drop-me ,Upgrade", " , X-Also"}, "X-Drop-Me": {"1"}, "X-Also": {"2"},
			"X-Keep": {"3"}, "Keep-Alive": {"timeout=5"}, "Proxy-Authorization": {"p"}, "Te": {"trailers"},
			"Content-Length": {"0"}, "Transfer-Encoding": {"chunked"}, "Host": {"h"}}},
		{name: "empty values", remote: "192.0.2.7:1", host: "", header: http.Header{"X-Empty": {}, "X-Blank": {""}}},
		{name: "bad remote", remote: "not-an-address", host: "gw", header: http.Header{"A": {"b"}}},
		{name: "set headers", remote: "192.0.2.7:1", host: "gw", header: http.Header{"Authorization": {"Bearer c"}},
			set: map[string]string{"authorization": "Bearer route", "X-Forwarded-Proto": "wss", "x-route": "r"}},
	}
}

// The lean upstreamHeader builds exactly what the straightforward one did.
func TestUpstreamHeaderMatchesReference(t *testing.T) {
	for _, tc := range forwardCases() {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr, r.Host, r.Header = tc.remote, tc.host, tc.header
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			route := &config.Route{SetHeaders: tc.set}
			before := r.Header.Clone()
			want := normalize(upstreamHeaderRef(r, route, tc.proxies))
			got := upstreamHeader(r, route, tc.proxies)
			if !reflect.DeepEqual(normalize(got.Clone()), want) {
				t.Errorf("upstreamHeader:\n got %q\nwant %q", got, want)
			}
			// The shared value slices must not let a writer reach r.Header.
			for k := range got {
				got.Add(k, "appended")
			}
			if !reflect.DeepEqual(r.Header, before) {
				t.Errorf("r.Header changed: %q, was %q", r.Header, before)
			}
		})
	}
}

func BenchmarkUpstreamHeader(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "/chat?room=1", nil)
	r.RemoteAddr, r.Host = "192.0.2.7:5555", "gw.example:8080"
	r.Header = http.Header{
		"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-Websocket-Version": {"13"}, "Origin": {"https://app.example"}, "User-Agent": {"wsbench"},
		"Cookie": {"sid=abc"},
	}
	route := &config.Route{}
	for _, bc := range []struct {
		name string
		f    func(*http.Request, *config.Route, []netip.Prefix) http.Header
	}{{"lean", upstreamHeader}, {"reference", upstreamHeaderRef}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = bc.f(r, route, nil)
			}
		})
	}
}
