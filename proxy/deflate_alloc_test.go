//go:build !race

package proxy

// Allocations per relayed compressed message (README "Compression": none
// in steady state), measured as relay_alloc_test.go measures the
// uncompressed path: a real gateway between a client and an upstream that
// allocate nothing per frame, the upstream echoing every frame as it came
// (RSV1 included).

import (
	"bufio"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"

	"wsgate/frame"
	"wsgate/handshake"
	"wsgate/internal/testutil"
	"wsgate/internal/wstest"
)

// newDeflateEchoUpstream is newAllocEchoUpstream answering the handshake
// with answer as its permessage-deflate response.
func newDeflateEchoUpstream(t testing.TB, maxPayload int, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReaderSize(conn, 64<<10)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		hs, rej := handshake.Check(req)
		if rej != nil {
			return
		}
		resp := handshake.AppendResponse101(nil, hs.Key, "", nil)
		resp = append(resp[:len(resp)-2], "Sec-WebSocket-Extensions: "+answer+"\r\n\r\n"...)
		if _, err := conn.Write(resp); err != nil {
			return
		}
		echoFrames(conn, br, make([]byte, frame.MaxHeaderSize+maxPayload))
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return "ws://" + ln.Addr().String()
}

// deflateEchoSetup: a client that sends msg compressed, as op, through a
// gateway with permessage-deflate negotiated (context takeover or not).
func deflateEchoSetup(t testing.TB, op frame.Opcode, msg []byte, takeover bool) *echoClient {
	t.Helper()
	z := deflateMsg(t, msg)
	answer := "permessage-deflate; server_no_context_takeover"
	tk := "false"
	if takeover {
		answer, tk = "permessage-deflate", "true"
	}
	up := newDeflateEchoUpstream(t, len(z), answer)
	gw := startGateway(t, allocYAML(up)+"    permessage_deflate: {context_takeover: "+tk+"}\n")
	a := wstest.MustHandshake(t, gw.Addr, "", nil, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
	if a.Peer == nil || !strings.HasPrefix(a.Resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
		t.Fatalf("handshake: %d %s %q", a.Status(), a.Body, a.Resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	h := frame.Header{Fin: true, Rsv: frame.Rsv1, Opcode: op, Masked: true, Key: [4]byte{0x37, 0xfa, 0x21, 0x3d}}
	return &echoClient{
		conn:    a.Peer.Conn,
		br:      bufio.NewReaderSize(a.Peer.BR, 64<<10),
		msg:     frame.AppendFrame(nil, h, z),
		payload: z,
		buf:     make([]byte, frame.MaxHeaderSize+len(z)),
	}
}

// jsonMessage is about n bytes of chat-like JSON (compresses about 4:1).
func jsonMessage(n int) []byte {
	return testutil.ChatJSON(n, rand.New(rand.NewPCG(7, 9)))
}

// deflateAllocCases: small JSON (a small frame, validated whole) and 64 KiB
// of text (about 20 KiB compressed: a streamed frame), with and without
// context takeover.
var deflateAllocCases = []struct {
	name     string
	op       frame.Opcode
	msg      []byte
	takeover bool
}{
	{"json_1KiB", frame.OpText, jsonMessage(1 << 10), false},
	{"json_1KiB_takeover", frame.OpText, jsonMessage(1 << 10), true},
	{"text_64KiB", frame.OpText, jsonMessage(64 << 10), false},
	{"binary_64KiB_takeover", frame.OpBinary, jsonMessage(64 << 10), true},
}

// TestRelayDeflateAllocs: relaying compressed messages, each inflated to
// be checked, allocates nothing in steady state either.
func TestRelayDeflateAllocs(t *testing.T) {
	for _, tc := range deflateAllocCases {
		t.Run(tc.name, func(t *testing.T) {
			c := deflateEchoSetup(t, tc.op, tc.msg, tc.takeover)
			for i := 0; i < 500; i++ {
				if err := c.roundTrip(true); err != nil {
					t.Fatalf("warm-up round trip %d: %v", i, err)
				}
			}
			n := 10000
			if len(tc.msg) > 16<<10 {
				n = 1000
			}
			before := mallocs()
			for i := 0; i < n; i++ {
				if err := c.roundTrip(i%1024 == 0); err != nil {
					t.Fatalf("round trip %d: %v", i, err)
				}
			}
			got := mallocs() - before
			perMsg := float64(got) / float64(2*n)
			t.Logf("%d allocations over %d relayed compressed messages: %.4f per message", got, 2*n, perMsg)
			if perMsg >= maxAllocsPerFrame {
				t.Errorf("relaying compressed messages allocates: %.3f per message, want < %v; see "+
					"go test -run '^$' -bench 'BenchmarkRelayEchoDeflate/%s' -benchmem -memprofile mem.out ./proxy/",
					perMsg, maxAllocsPerFrame, tc.name)
			}
		})
	}
}

// BenchmarkRelayEchoDeflate is BenchmarkRelayEcho for compressed messages:
// one op is a compressed message relayed each way (both inflated to be
// checked); SetBytes counts the inflated payload.
func BenchmarkRelayEchoDeflate(b *testing.B) {
	for _, bc := range deflateAllocCases {
		b.Run(bc.name, func(b *testing.B) {
			c := deflateEchoSetup(b, bc.op, bc.msg, bc.takeover)
			for i := 0; i < 100; i++ {
				if err := c.roundTrip(true); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.SetBytes(int64(2 * len(bc.msg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.roundTrip(false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
