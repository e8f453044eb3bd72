package handshake

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"
)

// Handshake-only interop with two widely used implementations, both
// directions. Frame-level interop is tested elsewhere; here each side only
// proves the stream after the 101 is clean by sending one tiny frame
// (RFC 6455 §5.7: a single-frame unmasked text message "hi" is 0x81 0x02 'h' 'i').

var hiFrame = []byte{0x81, 0x02, 'h', 'i'}

// ourServer answers with Check + Upgrade, choosing the first offered
// subprotocol it supports, and then writes hiFrame.
func ourServer(t *testing.T, supported ...string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, rej := Check(r)
		if rej != nil {
			t.Errorf("peer's request rejected: %v", rej)
			WriteRejection(w, rej)
			return
		}
		var protocol string
		for _, p := range req.Protocols {
			if contains(supported, p) {
				protocol = p
				break
			}
		}
		c, _, err := Upgrade(w, req, protocol, http.Header{"Set-Cookie": {"s=1"}})
		if err != nil {
			t.Errorf("Upgrade: %v", err)
			return
		}
		defer c.Close()
		c.Write(hiFrame)
		io.Copy(io.Discard, c) // until the peer closes
	}))
	t.Cleanup(srv.Close)
	return srv
}

func wsURL(s *httptest.Server) string { return "ws" + strings.TrimPrefix(s.URL, "http") + "/chat" }

// TestInterop_GorillaClient_OurServer_RFC6455_4_2_2: gorilla's Dialer
// accepts our 101 and sees the chosen subprotocol; with compression
// enabled it offers permessage-deflate, which we leave unconfirmed (§9.1).
func TestInterop_GorillaClient_OurServer_RFC6455_4_2_2(t *testing.T) {
	t.Parallel()
	srv := ourServer(t, "chat", "superchat")
	for _, compress := range []bool{false, true} {
		d := websocket.Dialer{Subprotocols: []string{"superchat", "chat"}, EnableCompression: compress}
		c, resp, err := d.Dial(wsURL(srv), http.Header{"Origin": {"http://example.com"}})
		if err != nil {
			t.Fatalf("compress=%v: %v", compress, err)
		}
		if c.Subprotocol() != "superchat" || resp.StatusCode != 101 || resp.Header.Get("Set-Cookie") != "s=1" {
			t.Fatalf("got %q %d %v", c.Subprotocol(), resp.StatusCode, resp.Header)
		}
		typ, msg, err := c.ReadMessage()
		if err != nil || typ != websocket.TextMessage || string(msg) != "hi" {
			t.Fatalf("first message %d %q %v", typ, msg, err)
		}
		c.Close()
	}
}

// TestInterop_CoderClient_OurServer_RFC6455_4_2_2: the same with
// github.com/coder/websocket's Dial, which goes through net/http's client.
func TestInterop_CoderClient_OurServer_RFC6455_4_2_2(t *testing.T) {
	t.Parallel()
	srv := ourServer(t, "chat")
	ctx := testCtx(t)
	c, resp, err := coder.Dial(ctx, wsURL(srv), &coder.DialOptions{Subprotocols: []string{"superchat", "chat"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "chat" || resp.StatusCode != 101 {
		t.Fatalf("got %q %d", c.Subprotocol(), resp.StatusCode)
	}
	typ, msg, err := c.Read(ctx)
	if err != nil || typ != coder.MessageText || string(msg) != "hi" {
		t.Fatalf("first message %v %q %v", typ, msg, err)
	}
}

// TestInterop_OurDialer_GorillaServer_RFC6455_4_1: our Dialer against
// gorilla's Upgrader; gorilla's first frame, sent right behind its 101,
// is in Upstream.Reader.
func TestInterop_OurDialer_GorillaServer_RFC6455_4_1(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{Subprotocols: []string{"chat"}}
		c, err := up.Upgrade(w, r, http.Header{"Set-Cookie": {"g=1"}})
		if err != nil {
			return // gorilla has answered
		}
		defer c.Close()
		c.WriteMessage(websocket.TextMessage, []byte("hi"))
		c.ReadMessage() // until we close
	}))
	defer srv.Close()
	u, _ := url.Parse(wsURL(srv))
	s, err := (&Dialer{}).Dial(testCtx(t), u, http.Header{"Cookie": {"c=1"}}, []string{"superchat", "chat"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Conn.Close()
	if s.Protocol != "chat" || s.Header.Get("Set-Cookie") != "g=1" {
		t.Fatalf("got %q %v", s.Protocol, s.Header)
	}
	expectFrame(t, s.Reader)

	// Offering nothing gorilla supports: no subprotocol, still a 101.
	s, err = (&Dialer{}).Dial(testCtx(t), u, nil, []string{"mqtt"})
	if err != nil || s.Protocol != "" {
		t.Fatalf("got %v %v", s, err)
	}
	s.Conn.Close()

	// A request gorilla refuses (bad Origin) comes back as a StatusError.
	_, err = (&Dialer{}).Dial(testCtx(t), u, http.Header{"Origin": {"http://evil.example"}}, nil)
	if se, ok := err.(*StatusError); !ok || se.StatusCode != http.StatusForbidden || len(se.Body) == 0 {
		t.Fatalf("got %v", err)
	}
}

// TestInterop_OurDialer_CoderServer_RFC6455_4_1: our Dialer against
// github.com/coder/websocket's Accept.
func TestInterop_OurDialer_CoderServer_RFC6455_4_1(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, &coder.AcceptOptions{Subprotocols: []string{"superchat", "chat"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		c.Write(ctx, coder.MessageText, []byte("hi"))
		c.Read(ctx) // until we close
	}))
	defer srv.Close()
	u, _ := url.Parse(wsURL(srv))
	s, err := (&Dialer{}).Dial(testCtx(t), u, nil, []string{"chat", "superchat"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Conn.Close()
	if s.Protocol != "chat" && s.Protocol != "superchat" {
		t.Fatalf("protocol %q", s.Protocol)
	}
	expectFrame(t, s.Reader)
}

func expectFrame(t *testing.T, br *bufio.Reader) {
	t.Helper()
	b := make([]byte, len(hiFrame))
	if _, err := io.ReadFull(br, b); err != nil || !bytes.Equal(b, hiFrame) {
		t.Fatalf("first frame %x %v, want %x", b, err, hiFrame)
	}
}

// TestInterop_OurDialer_OurServer: both halves together, over a real
// http.Server, the way the gateway chains them.
func TestInterop_OurDialer_OurServer(t *testing.T) {
	t.Parallel()
	srv := ourServer(t, "chat")
	u, _ := url.Parse(wsURL(srv))
	s, err := (&Dialer{NetDialContext: (&net.Dialer{}).DialContext}).Dial(context.Background(), u, nil, []string{"chat"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Conn.Close()
	if s.Protocol != "chat" || s.Header.Get("Set-Cookie") != "s=1" {
		t.Fatalf("got %q %v", s.Protocol, s.Header)
	}
	expectFrame(t, s.Reader)
}
