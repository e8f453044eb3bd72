package proxy

// Helpers of the sessions API's end-to-end tests (README "Sessions API and
// events"): a gorilla/websocket upstream that records each session's id and
// tags it as the test asks, a gateway with an admin listener, and admin
// requests.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// sessUpstream is an upstream served by gorilla/websocket that echoes every
// message. It records the X-Wsgate-Session header of each handshake by the
// request's "name" query parameter, answers the 101 with the "tags" query
// parameter as X-Wsgate-Tags, and records the Close each session gets.
type sessUpstream struct {
	URL    string
	srv    *http.Server
	wg     sync.WaitGroup
	mu     sync.Mutex
	ids    map[string]string       // name -> session id seen in the handshake
	closes map[string]closeRecord  // session id -> the Close (or error) that ended it
	conns  map[string]*gorillaPeer // session id -> the connection
}

// gorillaPeer is a gorilla connection whose writes may come from two
// goroutines.
type gorillaPeer struct {
	mu sync.Mutex
	c  *websocket.Conn
}

func (p *gorillaPeer) write(op int, b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.c.SetWriteDeadline(time.Now().Add(relayIO))
	return p.c.WriteMessage(op, b)
}

func newSessUpstream(t testing.TB) *sessUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &sessUpstream{URL: "ws://" + ln.Addr().String(), ids: map[string]string{},
		closes: map[string]closeRecord{}, conns: map[string]*gorillaPeer{}}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.wg.Add(1)
		defer u.wg.Done()
		var h http.Header
		if tags := r.URL.Query().Get("tags"); tags != "" {
			h = http.Header{"X-Wsgate-Tags": {tags}}
		}
		c, err := up.Upgrade(w, r, h)
		if err != nil {
			return
		}
		defer c.Close()
		id := r.Header.Get("X-Wsgate-Session")
		p := &gorillaPeer{c: c}
		u.mu.Lock()
		u.ids[r.URL.Query().Get("name")] = id
		u.conns[id] = p
		u.mu.Unlock()
		rec := func(cr closeRecord) {
			u.mu.Lock()
			u.closes[id] = cr
			u.mu.Unlock()
		}
		for {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			op, b, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					rec(closeRecord{Code: ce.Code, Text: ce.Text})
				} else {
					rec(closeRecord{Err: err})
				}
				return
			}
			if err := p.write(op, b); err != nil {
				rec(closeRecord{Err: err})
				return
			}
		}
	})}
	go func() { _ = u.srv.Serve(ln) }()
	t.Cleanup(func() {
		u.srv.Close()
		u.mu.Lock()
		for _, p := range u.conns {
			p.c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
	})
	return u
}

// id waits for the session id the upstream saw for the client named name.
func (u *sessUpstream) id(t testing.TB, name string) string {
	t.Helper()
	var id string
	eventually(t, "the upstream's handshake of "+name, func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		id = u.ids[name]
		return id != ""
	})
	return id
}

// sessID is the session id the upstream saw for the client named name,
// once gw lists that session. The upstream learns the id in its own
// handshake, before the gateway has answered the client: /sessions/{id}
// waits for such a session, but GET /sessions and /broadcast list only
// live ones.
func (gw *adminGateway) sessID(t testing.TB, u *sessUpstream, name string) string {
	t.Helper()
	id := u.id(t, name)
	if sid, ok := parseSessionID(id); ok {
		eventually(t, "the gateway's session of "+name, func() bool {
			_, ok := gw.reg.get(sid)
			return ok
		})
	}
	return id
}

// closeOf waits for the Close the upstream got on session id.
func (u *sessUpstream) closeOf(t testing.TB, id string) closeRecord {
	t.Helper()
	var cr closeRecord
	eventually(t, "the upstream's Close of "+id, func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		var ok bool
		cr, ok = u.closes[id]
		return ok
	})
	return cr
}

// sessYAML is a one-route config toward upstream with short timeouts; kv
// as relayYAML's.
func sessYAML(upstream string, kv ...string) string {
	return relayYAML(upstream, kv...)
}

// admin sends one request to gw's admin listener and returns the status
// and the body. ct, if not "", is the body's Content-Type; tok, if not "",
// goes in Authorization as a bearer token.
func admin(t testing.TB, gw *adminGateway, method, path, ct, tok string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+gw.AdminAddr+path, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, b
}

var adminClient = &http.Client{Timeout: 10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// push pushes body to session id and returns the status.
func push(t testing.TB, gw *adminGateway, id, ct string, body []byte) int {
	t.Helper()
	st, _ := admin(t, gw, "POST", "/sessions/"+id+"/messages", ct, "", body)
	return st
}

// dialGorilla opens a client session through gw, named name (the upstream
// records its id under it), with tags for the upstream to give it.
func dialGorilla(t testing.TB, gw *adminGateway, name, tags string) (*websocket.Conn, *http.Response) {
	t.Helper()
	u := fmt.Sprintf("ws://%s/s?name=%s", gw.Addr, name)
	if tags != "" {
		u += "&tags=" + tags
	}
	d := websocket.Dialer{HandshakeTimeout: relayIO}
	c, resp, err := d.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, resp
}

// decode unmarshals an admin answer.
func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("answer %q: %v", b, err)
	}
	return v
}

// startSessGateway is startAdminGatewayWith, without TLS.
func startSessGateway(t testing.TB, yamlText string, setup func(g *Gateway)) *adminGateway {
	t.Helper()
	return startAdminGatewayWith(t, yamlText, false, setup)
}

// eventReceiver is an HTTP server that records the events POSTed to it.
type eventReceiver struct {
	URL  string
	addr string
	mu   sync.Mutex
	got  []map[string]any
	srv  *http.Server
	bad  []string // requests that were not a JSON POST
	// down makes the receiver drop every connection without an answer,
	// as a receiver that is down (restarting, crashed) would.
	down atomic.Bool
}

func newEventReceiver(t testing.TB, addr string) *eventReceiver {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &eventReceiver{addr: ln.Addr().String()}
	r.URL = "http://" + r.addr + "/ws-events"
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.down.Load() {
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		b, _ := io.ReadAll(req.Body)
		var m map[string]any
		r.mu.Lock()
		defer r.mu.Unlock()
		if req.Method != "POST" || req.URL.Path != "/ws-events" || req.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &m) != nil {
			r.bad = append(r.bad, req.Method+" "+req.URL.Path+" "+string(b))
			w.WriteHeader(400)
			return
		}
		r.got = append(r.got, m)
		w.WriteHeader(204)
	})}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() { r.srv.Close() })
	return r
}

// events returns a copy of what arrived so far.
func (r *eventReceiver) events() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}
