package handshake

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseDeflate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		elem     string
		response bool
		want     Deflate
		ok       bool
	}{
		{"permessage-deflate", false, Deflate{}, true},
		{"Permessage-Deflate", false, Deflate{}, true},
		// Chromium's offer.
		{"permessage-deflate; client_max_window_bits", false, Deflate{ClientMaxWindowBits: WindowBitsNoValue}, true},
		{"permessage-deflate; client_max_window_bits", true, Deflate{}, false},
		// RFC 7692 §7.1.2.1/§7.1.2.2 examples.
		{"permessage-deflate; client_max_window_bits; server_max_window_bits=10", false,
			Deflate{ClientMaxWindowBits: WindowBitsNoValue, ServerMaxWindowBits: 10}, true},
		{"permessage-deflate;server_no_context_takeover;client_no_context_takeover", true,
			Deflate{ServerNoContextTakeover: true, ClientNoContextTakeover: true}, true},
		{`permessage-deflate; server_max_window_bits="12"`, true, Deflate{ServerMaxWindowBits: 12}, true},
		{"permessage-deflate; client_max_window_bits=15", true, Deflate{ClientMaxWindowBits: 15}, true},
		{"permessage-deflate; server_max_window_bits=8", true, Deflate{ServerMaxWindowBits: 8}, true},
		// Window bits out of range, leading zeros, not a number.
		{"permessage-deflate; server_max_window_bits=7", false, Deflate{}, false},
		{"permessage-deflate; server_max_window_bits=16", false, Deflate{}, false},
		{"permessage-deflate; client_max_window_bits=09", false, Deflate{}, false},
		{"permessage-deflate; client_max_window_bits=x", false, Deflate{}, false},
		{"permessage-deflate; server_max_window_bits", false, Deflate{}, false},
		// Duplicates, unknown parameters, values where none belongs.
		{"permessage-deflate; server_no_context_takeover; server_no_context_takeover", false, Deflate{}, false},
		{"permessage-deflate; client_max_window_bits; client_max_window_bits=10", false, Deflate{}, false},
		{"permessage-deflate; mystery", false, Deflate{}, false},
		{"permessage-deflate; server_no_context_takeover=1", false, Deflate{}, false},
		{`permessage-deflate; server_max_window_bits="1 2"`, false, Deflate{}, false},
		{`permessage-deflate; server_max_window_bits="10`, false, Deflate{}, false},
		{"permessage-deflate; ; server_no_context_takeover", false, Deflate{}, false},
		{"x-webkit-deflate-frame", false, Deflate{}, false},
	} {
		got, err := ParseDeflate(tc.elem, tc.response)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseDeflate(%q, response=%v) = %+v, %v; want %+v ok=%v", tc.elem, tc.response, got, err, tc.want, tc.ok)
		}
		if err == nil {
			// What we write parses back to the same parameters.
			back, err := ParseDeflate(got.String(), tc.response)
			if err != nil || back != got {
				t.Errorf("%q: String %q parses back as %+v, %v", tc.elem, got.String(), back, err)
			}
		}
	}
}

// TestDeflateNegotiation is the negotiation table of README "Compression":
// what goes upstream for the client's offers, and which upstream answers
// are accepted (and what the client then gets) or refused (502).
func TestDeflateNegotiation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		client   []string // the client's Sec-WebSocket-Extensions elements
		takeover bool
		upstream string // the offer sent upstream; "" = none
		answer   []string
		accepted bool   // something was negotiated
		bad      bool   // the answer is refused (502)
		toClient string // what the client's 101 carries
	}{
		{name: "no offer", client: nil, upstream: ""},
		{name: "only other extensions", client: []string{"x-webkit-deflate-frame", "foo; bar=1"}, upstream: ""},
		{name: "offer refused by the upstream", client: []string{"permessage-deflate"},
			upstream: "permessage-deflate; server_no_context_takeover", answer: nil},
		{name: "accepted without takeover",
			client:   []string{"permessage-deflate; client_max_window_bits"},
			upstream: "permessage-deflate; server_no_context_takeover; client_max_window_bits",
			answer:   []string{"permessage-deflate; server_no_context_takeover"},
			accepted: true, toClient: "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		{name: "upstream keeps server context takeover", client: []string{"permessage-deflate"},
			upstream: "permessage-deflate; server_no_context_takeover",
			answer:   []string{"permessage-deflate"}, bad: true},
		{name: "takeover allowed", client: []string{"permessage-deflate; client_max_window_bits"}, takeover: true,
			upstream: "permessage-deflate; client_max_window_bits",
			answer:   []string{"permessage-deflate; client_max_window_bits=12"},
			accepted: true, toClient: "permessage-deflate; client_max_window_bits=12"},
		{name: "extension not offered", client: []string{"permessage-deflate"}, takeover: true,
			upstream: "permessage-deflate", answer: []string{"x-webkit-deflate-frame"}, bad: true},
		{name: "two extensions in the answer", client: []string{"permessage-deflate"}, takeover: true,
			upstream: "permessage-deflate", answer: []string{"permessage-deflate, permessage-deflate"}, bad: true},
		{name: "parameter not offered", client: []string{"permessage-deflate"}, takeover: true,
			upstream: "permessage-deflate", answer: []string{"permessage-deflate; client_max_window_bits=10"}, bad: true},
		{name: "unknown parameter", client: []string{"permessage-deflate"}, takeover: true,
			upstream: "permessage-deflate", answer: []string{"permessage-deflate; zip=1"}, bad: true},
		{name: "window bits out of range in the answer", client: []string{"permessage-deflate"}, takeover: true,
			upstream: "permessage-deflate", answer: []string{"permessage-deflate; server_max_window_bits=16"}, bad: true},
		{name: "window bits above the offer", client: []string{"permessage-deflate; server_max_window_bits=10"}, takeover: true,
			upstream: "permessage-deflate; server_max_window_bits=10",
			answer:   []string{"permessage-deflate; server_max_window_bits=11"}, bad: true},
		{name: "duplicate parameter in the answer", client: []string{"permessage-deflate"}, takeover: true,
			upstream: "permessage-deflate",
			answer:   []string{"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}, bad: true},
		{name: "client offers with bad window bits and duplicates are declined",
			client:   []string{"permessage-deflate; server_max_window_bits=20", "permessage-deflate; client_no_context_takeover; client_no_context_takeover", "permessage-deflate"},
			takeover: true, upstream: "permessage-deflate",
			answer: []string{"permessage-deflate"}, accepted: true, toClient: "permessage-deflate"},
		{name: "two offers, the upstream picks the second",
			client:   []string{"permessage-deflate; server_max_window_bits=10", "permessage-deflate"},
			takeover: true, upstream: "permessage-deflate; server_max_window_bits=10, permessage-deflate",
			answer:   []string{"permessage-deflate; client_no_context_takeover"},
			accepted: true, toClient: "permessage-deflate; client_no_context_takeover"},
		// Python websockets' server limits both windows to 12 bits by default.
		{name: "python websockets' default answer", client: []string{"permessage-deflate; client_max_window_bits"}, takeover: true,
			upstream: "permessage-deflate; client_max_window_bits",
			answer:   []string{"permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"},
			accepted: true, toClient: "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"},
		{name: "python websockets' answer without takeover", client: []string{"permessage-deflate; client_max_window_bits"},
			upstream: "permessage-deflate; server_no_context_takeover; client_max_window_bits",
			answer:   []string{"permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12"},
			accepted: true, toClient: "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12"},
		{name: "two offers, the upstream picks the first",
			client:   []string{"permessage-deflate; server_max_window_bits=10", "permessage-deflate"},
			takeover: true, upstream: "permessage-deflate; server_max_window_bits=10, permessage-deflate",
			answer:   []string{"permessage-deflate; server_max_window_bits=9"},
			accepted: true, toClient: "permessage-deflate; server_max_window_bits=9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := OfferDeflate(tc.client, tc.takeover)
			if tc.upstream == "" {
				if o != nil {
					t.Fatalf("offer %q, want none", o.String())
				}
				return
			}
			if o == nil || o.String() != tc.upstream {
				t.Fatalf("upstream offer = %v, want %q", o, tc.upstream)
			}
			d, ok, err := o.Accept(tc.answer)
			if tc.bad {
				if !errors.Is(err, ErrBadExtension) {
					t.Fatalf("Accept(%q) = %+v, %v, %v; want ErrBadExtension", tc.answer, d, ok, err)
				}
				return
			}
			if err != nil || ok != tc.accepted {
				t.Fatalf("Accept(%q) = %+v, %v, %v", tc.answer, d, ok, err)
			}
			if ok {
				if got := o.ClientResponse(d).String(); got != tc.toClient {
					t.Errorf("client response = %q, want %q", got, tc.toClient)
				}
			}
		})
	}
}

// TestResponse101Extension: the client's 101 carries the extension as
// built, and nothing from extra can add another.
func TestResponse101Extension(t *testing.T) {
	t.Parallel()
	d := Deflate{ServerNoContextTakeover: true, ClientNoContextTakeover: true}
	b := appendResponse101(nil, rfcKey, "", &d, http.Header{"Sec-Websocket-Extensions": {"evil"}})
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(b))), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header["Sec-Websocket-Extensions"]; len(got) != 1 || got[0] != d.String() {
		t.Fatalf("Sec-WebSocket-Extensions = %q", got)
	}
	if b := AppendResponse101(nil, rfcKey, "", nil); strings.Contains(string(b), "Extensions") {
		t.Fatalf("101 without an extension carries one:\n%s", b)
	}
}

// FuzzParseDeflate: ParseDeflate never panics, and whatever it accepts is
// within RFC 7692's ranges and round-trips through String. The offer
// built from fuzzed client offers always accepts its own first offer
// answered as a server would.
func FuzzParseDeflate(f *testing.F) {
	for _, s := range []string{
		"permessage-deflate",
		"permessage-deflate; client_max_window_bits",
		"permessage-deflate; client_max_window_bits; server_max_window_bits=10",
		"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
		`permessage-deflate; server_max_window_bits="15"`,
		`permessage-deflate; server_max_window_bits="1\5"`,
		"permessage-deflate; server_max_window_bits=016",
		"permessage-deflate; a=\"; b",
		"permessage-deflate;;",
		"permessage-deflate, x-webkit-deflate-frame",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, elem string, response bool) {
		d, err := ParseDeflate(elem, response)
		if err != nil {
			return
		}
		for _, bits := range []int{d.ServerMaxWindowBits, d.ClientMaxWindowBits} {
			if bits != 0 && bits != WindowBitsNoValue && (bits < 8 || bits > 15) {
				t.Fatalf("%q: window bits %d accepted", elem, bits)
			}
		}
		if response && d.ClientMaxWindowBits == WindowBitsNoValue {
			t.Fatalf("%q: a response without client_max_window_bits value accepted", elem)
		}
		back, err := ParseDeflate(d.String(), response)
		if err != nil || back != d {
			t.Fatalf("%q: String %q parses back as %+v, %v", elem, d.String(), back, err)
		}
		for _, takeover := range []bool{false, true} {
			o := OfferDeflate(splitExtensions([]string{elem}), takeover)
			if o == nil {
				continue
			}
			// A server that accepts the first offer as it stands.
			ans := o.Offers[0]
			if ans.ClientMaxWindowBits == WindowBitsNoValue {
				ans.ClientMaxWindowBits = 0
			}
			if _, ok, err := o.Accept([]string{ans.String()}); !ok || err != nil {
				t.Fatalf("%q: the offer %q refuses its own acceptance %q: %v", elem, o.String(), ans.String(), err)
			}
		}
	})
}

// TestDialDeflate: DialDeflate sends the offer as one
// Sec-WebSocket-Extensions line and returns the accepted response; an
// answer that accepts none of the offers fails with ErrBadExtension and
// closes the connection.
func TestDialDeflate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		answer string // "" = no Sec-WebSocket-Extensions
		on     bool
		want   error
	}{
		{"", false, nil},
		{"permessage-deflate; server_no_context_takeover", true, nil},
		{"permessage-deflate", false, ErrBadExtension},
		{"permessage-deflate; server_no_context_takeover; client_max_window_bits=10", false, ErrBadExtension},
		{"x-other", false, ErrBadExtension},
	} {
		heads := make(chan http.Header, 1)
		u := newRawUpstream(t, func(c net.Conn, req *http.Request) {
			heads <- req.Header.Clone()
			resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
				AcceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n"
			if tc.answer != "" {
				resp += "Sec-WebSocket-Extensions: " + tc.answer + "\r\n"
			}
			c.Write([]byte(resp + "\r\n"))
			io.Copy(io.Discard, c)
		})
		offer := OfferDeflate([]string{"permessage-deflate"}, false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		up, err := (&Dialer{}).DialDeflate(ctx, u.url("/"), nil, nil, offer)
		cancel()
		if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Fatalf("answer %q: err %v, want %v", tc.answer, err, tc.want)
		}
		if err != nil {
			continue
		}
		up.Conn.Close()
		if e := (<-heads)["Sec-Websocket-Extensions"]; len(e) != 1 || e[0] != "permessage-deflate; server_no_context_takeover" {
			t.Errorf("offer sent: %q", e)
		}
		if up.DeflateOn != tc.on || (tc.on && up.Deflate != (Deflate{ServerNoContextTakeover: true})) {
			t.Errorf("answer %q: DeflateOn %v, Deflate %+v", tc.answer, up.DeflateOn, up.Deflate)
		}
	}
}
