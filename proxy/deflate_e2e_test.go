package proxy

// permessage-deflate through the gateway (README "Compression") with raw
// peers that write every byte: frames relayed as sent, every compressed
// message checked by inflation (caps, bombs, UTF-8, bad data, RSV1 rules),
// and the negotiation table.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"wsgate/frame"
	"wsgate/handshake"
	"wsgate/internal/wstest"
)

// deflateMsg compresses p as one permessage-deflate message (RFC 7692
// §7.2.1: a sync flush, its 00 00 ff ff tail removed). Compressed with the
// standard library, not with what the gateway inflates with.
func deflateMsg(t testing.TB, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	fw, err := flate.NewWriter(&b, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := fw.Flush(); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// inflateMsg is the receiving side of deflateMsg.
func inflateMsg(t testing.TB, p []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

// bomb returns deflate data (no tail) that inflates to n MiB of zeros: one
// compressed MiB repeated, each copy ending on a sync flush (≈1 KiB per
// MiB: deflate's limit is about 1032:1).
func bomb(t testing.TB, n int) []byte {
	one := deflateMsg(t, make([]byte, 1<<20))
	// Each copy must end at a byte boundary for the next to follow: the
	// sync flush does that, and deflateMsg removed its tail, so put it back
	// between copies.
	var b bytes.Buffer
	for i := range n {
		b.Write(one)
		if i < n-1 {
			b.Write([]byte{0, 0, 0xff, 0xff})
		}
	}
	return b.Bytes()
}

// sendRsv writes one frame with the given RSV bits from p.
func sendRsv(p *wstest.Peer, fin bool, op frame.Opcode, rsv uint8, payload []byte) {
	p.T.Helper()
	h := p.Header(fin, op)
	h.Rsv = rsv
	p.Write(frame.AppendFrame(nil, h, payload))
}

// deflateUpstream is a raw upstream that answers the opening handshake
// with answer as its Sec-WebSocket-Extensions ("" = none) and hands the
// connection to the test.
func deflateUpstream(t testing.TB, answer string) (*testUpstream, <-chan *wstest.Peer) {
	ch := make(chan *wstest.Peer, 4)
	done := make(chan struct{})
	u := newUpstream(t, "deflate", func(u *testUpstream, req *http.Request, conn net.Conn, br *bufio.Reader) {
		hs, rej := handshake.Check(req)
		if rej != nil {
			return
		}
		resp := handshake.AppendResponse101(nil, hs.Key, "", nil)
		if answer != "" {
			resp = append(resp[:len(resp)-2], "Sec-WebSocket-Extensions: "+answer+"\r\n\r\n"...)
		}
		if _, err := conn.Write(resp); err != nil {
			return
		}
		_ = conn.SetDeadline(time.Time{})
		ch <- &wstest.Peer{T: t, Conn: conn, BR: br}
		<-done
	})
	t.Cleanup(func() { close(done) })
	return u, ch
}

// deflatePair opens a session with permessage-deflate negotiated (no
// context takeover unless kv sets it) between a raw client and a raw
// upstream.
func deflatePair(t *testing.T, answer string, kv ...string) (*testGateway, *wstest.Peer, *wstest.Peer) {
	t.Helper()
	up, ch := deflateUpstream(t, answer)
	gw := startGateway(t, relayYAML(up.URL, kv...))
	a := wstest.MustHandshake(t, gw.Addr, "", nil, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
	if a.Peer == nil {
		t.Fatalf("handshake: %d %s", a.Status(), a.Body)
	}
	u := recvPeer(t, ch)
	a.Peer.Rsv, u.Rsv = frame.Rsv1, frame.Rsv1
	return gw, a.Peer, u
}

const noTakeover = "permessage-deflate; server_no_context_takeover"

// TestDeflateRelayedAsSent: compressed frames reach the other side as they
// were sent (RSV1 on the first frame only, the same deflate bytes, masked
// toward the upstream only), uncompressed ones still pass, and the access
// log and metrics count what was inflated.
func TestDeflateRelayedAsSent(t *testing.T) {
	t.Parallel()
	gw, c, u := deflatePair(t, noTakeover)
	text := []byte(strings.Repeat(`{"user":"ada","msg":"hello, world"} `, 100))
	z := deflateMsg(t, text)
	if len(z) >= len(text)/4 {
		t.Fatalf("test message compresses to %d of %d bytes", len(z), len(text))
	}
	// One compressed text message in one frame.
	sendRsv(c, true, frame.OpText, frame.Rsv1, z)
	f := u.Next()
	if f.Rsv != frame.Rsv1 || f.Opcode != frame.OpText || !f.Fin || !f.Masked || !bytes.Equal(f.Payload, z) {
		t.Fatalf("upstream got %v, want the compressed frame as sent", f)
	}
	// A compressed binary message in three fragments.
	bin := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 4096)
	zb := deflateMsg(t, bin)
	n := len(zb) / 3
	sendRsv(c, false, frame.OpBinary, frame.Rsv1, zb[:n])
	sendRsv(c, false, frame.OpContinuation, 0, zb[n:2*n])
	sendRsv(c, true, frame.OpContinuation, 0, zb[2*n:])
	var got []byte
	for i, want := range []uint8{frame.Rsv1, 0, 0} {
		f := u.Next()
		if f.Rsv != want || f.Fin != (i == 2) {
			t.Fatalf("fragment %d: %v", i, f)
		}
		got = append(got, f.Payload...)
	}
	if !bytes.Equal(inflateMsg(t, got), bin) {
		t.Fatal("fragmented binary message changed on the way")
	}
	// Uncompressed text still passes (RSV1 clear).
	c.Send(true, frame.OpText, []byte("plain"))
	if f := u.Next(); f.Rsv != 0 || string(f.Payload) != "plain" {
		t.Fatalf("upstream got %v", f)
	}
	// Upstream -> client: compressed, unmasked.
	sendRsv(u, true, frame.OpText, frame.Rsv1, z)
	if f := c.Next(); f.Rsv != frame.Rsv1 || f.Masked || !bytes.Equal(f.Payload, z) {
		t.Fatalf("client got %v", f)
	}
	// The gateway's own pings are never compressed: none here (ping_interval 0);
	// a clean close.
	c.SendClose(1000, "bye")
	u.ExpectClose(1000, "bye")
	u.SendClose(1000, "bye")
	c.ExpectClose(1000, "bye")
	expectLog(t, gw, "compression", "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
		"reason", "normal", "c2u_messages", "3", "u2c_messages", "1")
	gotSeries := series(t, gw)
	for k, v := range map[string]float64{
		seriesKey("wsgate_compressed_messages_total", "route", "relay", "direction", "client_to_upstream"): 2,
		seriesKey("wsgate_compressed_messages_total", "route", "relay", "direction", "upstream_to_client"): 1,
		seriesKey("wsgate_inflated_bytes_total", "route", "relay", "direction", "client_to_upstream"):      float64(len(text) + len(bin)),
		seriesKey("wsgate_inflated_bytes_total", "route", "relay", "direction", "upstream_to_client"):      float64(len(text)),
		// wsgate_bytes_total stays wire bytes.
		seriesKey("wsgate_bytes_total", "route", "relay", "direction", "upstream_to_client"): float64(len(z)),
	} {
		if gotSeries[k] != v {
			t.Errorf("%s = %v, want %v", k, gotSeries[k], v)
		}
	}
}

// series returns the gateway's wsgate_* series, as wsgateSeries names them.
func series(t testing.TB, gw *testGateway) map[string]float64 {
	t.Helper()
	return seriesOf(t, gw.Gateway)
}

func seriesOf(t testing.TB, gw *Gateway) map[string]float64 {
	t.Helper()
	list, err := gw.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	mfs := map[string]*dto.MetricFamily{}
	for _, mf := range list {
		mfs[mf.GetName()] = mf
	}
	return wsgateSeries(t, mfs)
}

// TestDeflateChecks: every compressed message is inflated to be checked;
// each violation gets the close table's codes (README "Close codes").
func TestDeflateChecks(t *testing.T) {
	t.Parallel()
	badUTF8 := func(t testing.TB) [][]byte {
		// "héllo" and the first two bytes of "€", then a byte that cannot
		// continue it: valid up to the fragment boundary, invalid after.
		var b bytes.Buffer
		fw, _ := flate.NewWriter(&b, flate.BestCompression)
		fw.Write([]byte("h\u00e9llo \xe2\x82"))
		fw.Flush()
		first := append([]byte(nil), b.Bytes()...)
		b.Reset()
		fw.Write([]byte("\x28 rest"))
		fw.Flush()
		return [][]byte{first, bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})}
	}
	for _, tc := range []struct {
		name         string
		fromUpstream bool
		kv           []string
		send         func(t testing.TB, p *wstest.Peer)
		client, up   int // Close codes each side gets
	}{
		{name: "client bomb stopped at the cap", kv: []string{"max_frame_bytes", "2MiB", "max_message_bytes", "4MiB"},
			send:   func(t testing.TB, p *wstest.Peer) { sendRsv(p, true, frame.OpBinary, frame.Rsv1, bomb(t, 1024)) },
			client: 1009, up: 1001},
		{name: "upstream bomb stopped at the cap", fromUpstream: true, kv: []string{"max_frame_bytes", "2MiB", "max_message_bytes", "4MiB"},
			send:   func(t testing.TB, p *wstest.Peer) { sendRsv(p, true, frame.OpBinary, frame.Rsv1, bomb(t, 1024)) },
			client: 1014, up: 1009},
		{name: "small frame over the inflated cap", kv: []string{"max_message_bytes", "64KiB"},
			send: func(t testing.TB, p *wstest.Peer) {
				z := bomb(t, 1)
				if len(z) > 2048 {
					t.Fatalf("1 MiB of zeros compressed to %d bytes", len(z))
				}
				sendRsv(p, true, frame.OpText, frame.Rsv1, z)
			},
			client: 1009, up: 1001},
		{name: "client data that does not inflate",
			send: func(t testing.TB, p *wstest.Peer) {
				sendRsv(p, true, frame.OpBinary, frame.Rsv1, []byte{0xff, 0xff, 0xff, 0xff})
			},
			client: 1007, up: 1001},
		{name: "upstream data that does not inflate", fromUpstream: true,
			send: func(t testing.TB, p *wstest.Peer) {
				sendRsv(p, true, frame.OpBinary, frame.Rsv1, []byte{0xff, 0xff, 0xff, 0xff})
			},
			client: 1014, up: 1007},
		{name: "client bad UTF-8 inside compressed text, across fragments",
			send: func(t testing.TB, p *wstest.Peer) {
				parts := badUTF8(t)
				sendRsv(p, false, frame.OpText, frame.Rsv1, parts[0])
				sendRsv(p, true, frame.OpContinuation, 0, parts[1])
			},
			client: 1007, up: 1001},
		{name: "upstream bad UTF-8 inside compressed text", fromUpstream: true,
			send: func(t testing.TB, p *wstest.Peer) {
				parts := badUTF8(t)
				sendRsv(p, false, frame.OpText, frame.Rsv1, parts[0])
				sendRsv(p, true, frame.OpContinuation, 0, parts[1])
			},
			client: 1014, up: 1007},
		{name: "compressed text ending inside a code point",
			send: func(t testing.TB, p *wstest.Peer) {
				sendRsv(p, true, frame.OpText, frame.Rsv1, deflateMsg(t, []byte("abc\xe2\x82")))
			},
			client: 1007, up: 1001},
		{name: "RSV1 on a continuation",
			send: func(t testing.TB, p *wstest.Peer) {
				z := deflateMsg(t, []byte("hello hello hello"))
				sendRsv(p, false, frame.OpText, frame.Rsv1, z[:2])
				sendRsv(p, true, frame.OpContinuation, frame.Rsv1, z[2:])
			},
			client: 1002, up: 1001},
		{name: "RSV1 on a ping",
			send:   func(t testing.TB, p *wstest.Peer) { sendRsv(p, true, frame.OpPing, frame.Rsv1, []byte("x")) },
			client: 1002, up: 1001},
		{name: "RSV1 on an upstream pong", fromUpstream: true,
			send:   func(t testing.TB, p *wstest.Peer) { sendRsv(p, true, frame.OpPong, frame.Rsv1, nil) },
			client: 1014, up: 1002},
		{name: "RSV2 is still refused",
			send:   func(t testing.TB, p *wstest.Peer) { sendRsv(p, true, frame.OpText, frame.Rsv2, []byte("x")) },
			client: 1002, up: 1001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, c, u := deflatePair(t, noTakeover, tc.kv...)
			// A valid compressed message first: the session works.
			sendRsv(c, true, frame.OpText, frame.Rsv1, deflateMsg(t, []byte("ok ok ok")))
			if f := u.Next(); f.Rsv != frame.Rsv1 {
				t.Fatalf("upstream got %v", f)
			}
			if tc.fromUpstream {
				tc.send(t, u)
			} else {
				tc.send(t, c)
			}
			// The side that did not break the rules gets its Close first and
			// answers it; the other side's Close follows.
			first, second := u, c
			wantFirst, wantSecond := tc.up, tc.client
			if tc.fromUpstream {
				first, second = c, u
				wantFirst, wantSecond = tc.client, tc.up
			}
			code, _, _ := first.ReadClose()
			if code != wantFirst {
				t.Errorf("%s got Close %d, want %d", first.Role(), code, wantFirst)
			}
			first.SendClose(frame.CloseCode(code), "")
			code, _, _ = second.ReadClose()
			if code != wantSecond {
				t.Errorf("%s got Close %d, want %d", second.Role(), code, wantSecond)
			}
		})
	}
}

// TestDeflateBombMemory: a frame of 1 MiB that would inflate to 1 GiB is
// stopped with 1009 at max_message_bytes while the process allocates less
// than 4 MiB (the bomb itself is built before measuring). Not parallel: it
// measures the whole process.
func TestDeflateBombMemory(t *testing.T) {
	for _, fromUpstream := range []bool{false, true} {
		gw, c, u := deflatePair(t, noTakeover, "max_frame_bytes", "2MiB", "max_message_bytes", "4MiB")
		z := bomb(t, 1024)
		src, other := c, u
		if fromUpstream {
			src, other = u, c
		}
		h := src.Header(true, frame.OpBinary)
		h.Rsv = frame.Rsv1
		b := frame.AppendFrame(nil, h, z)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		src.Write(b)
		code, _, _ := other.ReadClose()
		runtime.ReadMemStats(&after)
		want := 1001
		if fromUpstream {
			want = 1014
		}
		if code != want {
			t.Fatalf("upstream bomb=%v: %s got %d, want %d", fromUpstream, other.Role(), code, want)
		}
		other.SendClose(frame.CloseCode(code), "")
		code, _, _ = src.ReadClose()
		if code != 1009 {
			t.Fatalf("upstream bomb=%v: %s got %d, want 1009", fromUpstream, src.Role(), code)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("upstream bomb=%v: %d KiB compressed, allocated %d KiB while stopping it", fromUpstream, len(z)>>10, alloc>>10)
		if alloc >= 4<<20 {
			t.Errorf("upstream bomb=%v: %d bytes allocated while stopping a bomb, want < 4 MiB", fromUpstream, alloc)
		}
		waitFor(t, "the session to end", func() bool { return gw.Sessions() == 0 })
	}
}

// TestDeflateNegotiationE2E is the negotiation table through the gateway:
// what the upstream is offered for the client's offer, what the client's
// 101 says, and the upstream answers that are refused with 502.
func TestDeflateNegotiationE2E(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		route    string   // permessage_deflate block, "" = defaults
		offer    []string // the client's Sec-WebSocket-Extensions lines
		answer   string   // the upstream's
		upstream string   // what the upstream was offered ("" = no header)
		status   int
		toClient string
	}{
		{name: "no offer", answer: "", upstream: "", status: 101},
		{name: "only another extension", offer: []string{"x-webkit-deflate-frame"}, upstream: "", status: 101},
		{name: "offer refused by the upstream", offer: []string{"permessage-deflate; client_max_window_bits"},
			upstream: "permessage-deflate; server_no_context_takeover; client_max_window_bits", status: 101},
		{name: "accepted", offer: []string{"permessage-deflate; client_max_window_bits", "x-other"},
			answer:   "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
			upstream: "permessage-deflate; server_no_context_takeover; client_max_window_bits", status: 101,
			toClient: "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=12"},
		{name: "an extension that was not offered", offer: []string{"permessage-deflate"},
			answer: "x-webkit-deflate-frame", upstream: "permessage-deflate; server_no_context_takeover", status: 502},
		{name: "a parameter that was not offered", offer: []string{"permessage-deflate"},
			answer: "permessage-deflate; server_no_context_takeover; client_max_window_bits=9", upstream: "permessage-deflate; server_no_context_takeover", status: 502},
		{name: "server context takeover kept against the policy", offer: []string{"permessage-deflate"},
			answer: "permessage-deflate", upstream: "permessage-deflate; server_no_context_takeover", status: 502},
		{name: "window bits out of range", offer: []string{"permessage-deflate"},
			answer: "permessage-deflate; server_no_context_takeover; server_max_window_bits=7", upstream: "permessage-deflate; server_no_context_takeover", status: 502},
		{name: "duplicate parameters", offer: []string{"permessage-deflate"},
			answer: "permessage-deflate; server_no_context_takeover; server_no_context_takeover", upstream: "permessage-deflate; server_no_context_takeover", status: 502},
		{name: "client offer with window bits out of range is declined", offer: []string{"permessage-deflate; server_max_window_bits=16"},
			upstream: "", status: 101},
		{name: "client offer with a duplicate parameter is declined", offer: []string{"permessage-deflate; client_max_window_bits; client_max_window_bits"},
			upstream: "", status: 101},
		{name: "two offers, the upstream picks the second", route: "{context_takeover: true}",
			offer:    []string{"permessage-deflate; server_max_window_bits=10, permessage-deflate"},
			answer:   "permessage-deflate",
			upstream: "permessage-deflate; server_max_window_bits=10, permessage-deflate", status: 101,
			toClient: "permessage-deflate"},
		{name: "enabled: false", route: "{enabled: false}", offer: []string{"permessage-deflate"},
			answer: "", upstream: "", status: 101},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up, ch := deflateUpstream(t, tc.answer)
			var kv []string
			if tc.route != "" {
				kv = []string{"permessage_deflate", tc.route}
			}
			gw := startGateway(t, relayYAML(up.URL, kv...))
			var extra []string
			for _, o := range tc.offer {
				extra = append(extra, "Sec-WebSocket-Extensions: "+o)
			}
			a := wstest.MustHandshake(t, gw.Addr, "", nil, extra...)
			if a.Status() != tc.status {
				t.Fatalf("status %d (%s), want %d", a.Status(), a.Body, tc.status)
			}
			r := up.only(t)
			if got := strings.Join(r.Header["Sec-Websocket-Extensions"], ", "); got != tc.upstream {
				t.Errorf("upstream offered %q, want %q", got, tc.upstream)
			}
			if tc.status != 101 {
				if !strings.Contains(a.Body, "extension") {
					t.Errorf("502 body %q does not name the extension", a.Body)
				}
				return
			}
			if got := a.Resp.Header.Get("Sec-WebSocket-Extensions"); got != tc.toClient {
				t.Errorf("client 101 Sec-WebSocket-Extensions = %q, want %q", got, tc.toClient)
			}
			u := recvPeer(t, ch)
			c := a.Peer
			c.Rsv, u.Rsv = frame.Rsv1, frame.Rsv1
			// Negotiated or not, RSV1 is legal only when it was.
			sendRsv(c, true, frame.OpText, frame.Rsv1, deflateMsg(t, []byte("hello")))
			if tc.toClient != "" {
				if f := u.Next(); f.Rsv != frame.Rsv1 {
					t.Fatalf("upstream got %v", f)
				}
				c.SendClose(1000, "")
				u.ExpectClose(1000, "")
				return
			}
			code, _, _ := u.ReadClose()
			u.SendClose(frame.CloseCode(code), "")
			if code, _, _ := c.ReadClose(); code != 1002 {
				t.Errorf("RSV1 without compression negotiated: client got %d, want 1002", code)
			}
		})
	}
}

// TestDeflateGatewayFramesUncompressed: what the gateway sends of its own
// on a compressed session (keepalive pings, Close frames) never has RSV1.
func TestDeflateGatewayFramesUncompressed(t *testing.T) {
	t.Parallel()
	_, c, u := deflatePair(t, noTakeover, "ping_interval", "100ms", "pong_timeout", "2s")
	for _, p := range []*wstest.Peer{c, u} {
		for {
			f := p.Next()
			if f.Opcode != frame.OpPing {
				continue
			}
			if f.Rsv != 0 {
				t.Fatalf("%s: the gateway's ping has RSV %d", p.Role(), f.Rsv)
			}
			break
		}
	}
	// A violation makes the gateway close both sides itself.
	sendRsv(c, true, frame.OpBinary, frame.Rsv1, []byte{0xff, 0xff})
	for _, p := range []*wstest.Peer{u, c} {
		for {
			f := p.Next()
			if f.Opcode != frame.OpClose {
				continue
			}
			if f.Rsv != 0 {
				t.Fatalf("%s: the gateway's Close has RSV %d", p.Role(), f.Rsv)
			}
			if p == u {
				u.SendClose(1001, "")
			}
			break
		}
	}
}
