package proxy

// The sessions API across the instances of a cluster (README "Running
// several instances"). The admin API of any instance reaches a session on
// any other:
//
//   - GET, POST .../messages and DELETE on /sessions/{id} for a session this
//     instance does not hold look its owner up in the cluster's directory
//     (internal/cluster, directory.go) and send the request to it over the
//     cluster's bus; the owner answers it with its own sessions API and
//     sends the answer back.
//   - POST /broadcast and GET /sessions?scope=cluster go to every instance
//     (the bus's broadcast); the answers are summed (broadcast) or merged
//     (the listing, oldest first, cut at limit).
//
// A request that came over the bus carries X-Wsgate-Scope: local and is
// answered by the instance alone. An instance that does not answer within
// busTimeout is left out (a listing then says "partial": true).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"time"

	"wsgate/internal/cluster"
)

const (
	// busTimeout bounds how long an admin request waits for other
	// instances' answers.
	busTimeout = 2 * time.Second
	// scopeHeader marks a request that came over the bus.
	scopeHeader = "X-Wsgate-Scope"
	// busWorkers bounds the bus requests an instance answers at once.
	busWorkers = 64
)

// busMsg is a request or an answer on the bus.
type busMsg struct {
	Kind   string            `json:"k"`              // "req" or "reply"
	ID     string            `json:"id"`             // the request's
	From   string            `json:"from,omitempty"` // bus ID to answer to
	Method string            `json:"m,omitempty"`
	Target string            `json:"t,omitempty"` // path and query
	Type   string            `json:"ct,omitempty"`
	Status int               `json:"s,omitempty"`
	Header map[string]string `json:"h,omitempty"`
	Body   []byte            `json:"b,omitempty"`
}

// clusterSessions runs the bus side of the sessions API.
type clusterSessions struct {
	g     *Gateway
	c     *cluster.Cluster
	local http.Handler // the sessions API of this instance alone
	sem   chan struct{}
	stop  func()

	mu      sync.Mutex
	waiting map[string]chan busMsg
}

// startClusterSessions subscribes to the bus and keeps this instance's
// sessions in the directory; nil without a cluster.
func (g *Gateway) startClusterSessions() *clusterSessions {
	if g.cluster == nil {
		return nil
	}
	mux := http.NewServeMux()
	g.localSessionsAPI(mux)
	cs := &clusterSessions{g: g, c: g.cluster, local: mux, sem: make(chan struct{}, busWorkers),
		waiting: make(map[string]chan busMsg)}
	stop, err := g.cluster.Subscribe(cs.receive)
	if err != nil {
		// Redis is away: the API stays local until a restart. (go-redis
		// resubscribes by itself once a subscription exists.)
		g.log.Warn().Err(err).Msg("cluster: cannot subscribe to the bus; the sessions API answers for this instance only")
		stop = func() {}
	}
	cs.stop = stop
	g.cluster.StartDirectory(func() []string {
		list := g.reg.list()
		ids := make([]string, 0, len(list))
		for _, s := range list {
			ids = append(ids, sessionID(s.ID).String())
		}
		return ids
	})
	return cs
}

func (cs *clusterSessions) close() {
	if cs != nil {
		cs.stop()
	}
}

// receive handles one message from the bus (on the subscription's
// goroutine: it only dispatches).
func (cs *clusterSessions) receive(data []byte) {
	var m busMsg
	if json.Unmarshal(data, &m) != nil {
		return
	}
	switch m.Kind {
	case "reply":
		cs.mu.Lock()
		ch := cs.waiting[m.ID]
		cs.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default:
			}
		}
	case "req":
		if m.From == cs.c.ID() {
			return // our own broadcast
		}
		select {
		case cs.sem <- struct{}{}:
			go func() {
				defer func() { <-cs.sem }()
				cs.answer(m)
			}()
		default:
			cs.reply(m, http.StatusServiceUnavailable, nil, []byte(`{"error":"too many cluster requests"}`))
		}
	}
}

// answer runs a request from another instance against this one's API.
func (cs *clusterSessions) answer(m busMsg) {
	req, err := http.NewRequest(m.Method, "http://local"+m.Target, bytes.NewReader(m.Body))
	if err != nil {
		cs.reply(m, http.StatusBadRequest, nil, nil)
		return
	}
	if m.Type != "" {
		req.Header.Set("Content-Type", m.Type)
	}
	req.Header.Set(scopeHeader, "local")
	rec := httptest.NewRecorder()
	cs.local.ServeHTTP(rec, req)
	h := map[string]string{"X-Wsgate-Instance": cs.c.ID()}
	for _, k := range []string{"Content-Type", "Retry-After"} {
		if v := rec.Header().Get(k); v != "" {
			h[k] = v
		}
	}
	cs.reply(m, rec.Code, h, rec.Body.Bytes())
}

func (cs *clusterSessions) reply(m busMsg, status int, h map[string]string, body []byte) {
	data, _ := json.Marshal(busMsg{Kind: "reply", ID: m.ID, Status: status, Header: h, Body: body})
	ctx, cancel := context.WithTimeout(context.Background(), busTimeout)
	defer cancel()
	_, _ = cs.c.Publish(ctx, m.From, data)
}

// ask sends r (with body) to instance to, or to every other instance when
// to is "", and returns the answers that came within busTimeout, and
// whether every instance asked answered.
func (cs *clusterSessions) ask(to string, r *http.Request, body []byte) ([]busMsg, bool) {
	var rid [12]byte
	_, _ = rand.Read(rid[:])
	m := busMsg{Kind: "req", ID: base64.RawURLEncoding.EncodeToString(rid[:]), From: cs.c.ID(),
		Method: r.Method, Target: r.URL.RequestURI(), Type: r.Header.Get("Content-Type"), Body: body}
	ch := make(chan busMsg, 64)
	cs.mu.Lock()
	cs.waiting[m.ID] = ch
	cs.mu.Unlock()
	defer func() {
		cs.mu.Lock()
		delete(cs.waiting, m.ID)
		cs.mu.Unlock()
	}()
	data, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
	defer cancel()
	var n int64
	var err error
	if to == "" {
		n, err = cs.c.Broadcast(ctx, data)
		n-- // our own subscription counts
	} else {
		n, err = cs.c.Publish(ctx, to, data)
	}
	if err != nil {
		return nil, false
	}
	var out []busMsg
	for int64(len(out)) < n {
		select {
		case a := <-ch:
			out = append(out, a)
		case <-ctx.Done():
			return out, false
		}
	}
	return out, true
}

// writeAnswer passes an answer from another instance on.
func writeAnswer(w http.ResponseWriter, a busMsg) {
	for k, v := range a.Header {
		w.Header().Set(k, v) // X-Wsgate-Instance says which instance answered
	}
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.Body)
}

// fromBus reports whether r came over the bus (answer it locally).
func fromBus(r *http.Request) bool { return r.Header.Get(scopeHeader) == "local" }

// readForward reads an admin request's body to send it on: at most the
// largest max_message_bytes in force, plus one byte so that the owner
// still answers 413 for a body over its route's cap.
func (g *Gateway) readForward(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	var max int64 = 1
	for _, rs := range g.snap.Load().routes {
		max = maxOf(max, rs.session.MaxMessage)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			adminError(w, http.StatusRequestEntityTooLarge, "message larger than every route's max_message_bytes")
		} else {
			adminError(w, http.StatusBadRequest, "cannot read the body: "+err.Error())
		}
		return nil, false
	}
	return body, true
}

// routed serves a /sessions/{id} request here when the session is here,
// else sends it to the instance that holds it.
func (g *Gateway) routed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cs := g.clusterAPI
		if cs == nil || fromBus(r) {
			h(w, r)
			return
		}
		id, ok := parseSessionID(r.PathValue("id"))
		if !ok {
			h(w, r)
			return
		}
		if g.reg.here(id) {
			h(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), busTimeout)
		owner, err := cs.c.Owner(ctx, id.String())
		cancel()
		if err != nil || owner == "" {
			h(w, r) // 404 (or here after all, if it just arrived)
			return
		}
		body, ok := g.readForward(w, r)
		if !ok {
			return
		}
		answers, _ := cs.ask(owner, r, body)
		if len(answers) == 0 {
			adminError(w, http.StatusGatewayTimeout, "the instance holding the session did not answer")
			return
		}
		writeAnswer(w, answers[0])
	}
}

// clusterBroadcast is POST /broadcast on every instance: the counts are
// summed.
func (g *Gateway) clusterBroadcast(w http.ResponseWriter, r *http.Request) {
	cs := g.clusterAPI
	if cs == nil || fromBus(r) {
		g.broadcast(w, r)
		return
	}
	body, ok := g.readForward(w, r)
	if !ok {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	g.broadcast(rec, r)
	if rec.Code != http.StatusOK {
		writeAnswer(w, busMsg{Status: rec.Code, Header: map[string]string{"Content-Type": rec.Header().Get("Content-Type")}, Body: rec.Body.Bytes()})
		return
	}
	total := map[string]int{}
	add := func(b []byte) {
		var m map[string]int
		if json.Unmarshal(b, &m) == nil {
			for k, v := range m {
				total[k] += v
			}
		}
	}
	add(rec.Body.Bytes())
	answers, all := cs.ask("", r, body)
	for _, a := range answers {
		if a.Status == http.StatusOK {
			add(a.Body)
		}
	}
	out := map[string]any{}
	for k, v := range total {
		out[k] = v
	}
	out["instances"] = len(answers) + 1
	out["partial"] = !all
	writeJSON(w, http.StatusOK, out)
}

// clusterList is GET /sessions: with scope=cluster, every instance's
// sessions, merged oldest first and cut at limit, each with its instance.
func (g *Gateway) clusterList(w http.ResponseWriter, r *http.Request) {
	cs := g.clusterAPI
	if r.URL.Query().Get("scope") != "cluster" || cs == nil || fromBus(r) {
		g.listSessions(w, r)
		return
	}
	rec := httptest.NewRecorder()
	g.listSessions(rec, r)
	if rec.Code != http.StatusOK {
		writeAnswer(w, busMsg{Status: rec.Code, Header: map[string]string{"Content-Type": rec.Header().Get("Content-Type")}, Body: rec.Body.Bytes()})
		return
	}
	type listing struct {
		Sessions  []map[string]any `json:"sessions"`
		Truncated bool             `json:"truncated"`
	}
	var merged listing
	add := func(b []byte, node string) {
		var l listing
		if json.Unmarshal(b, &l) != nil {
			return
		}
		merged.Truncated = merged.Truncated || l.Truncated
		for _, s := range l.Sessions {
			s["instance"] = node
			merged.Sessions = append(merged.Sessions, s)
		}
	}
	add(rec.Body.Bytes(), cs.c.ID())
	answers, all := cs.ask("", r, nil)
	for _, a := range answers {
		if a.Status == http.StatusOK {
			add(a.Body, a.Header["X-Wsgate-Instance"])
		}
	}
	start := func(s map[string]any) time.Time {
		v, _ := s["start"].(string)
		t, _ := time.Parse(time.RFC3339Nano, v)
		return t
	}
	slices.SortStableFunc(merged.Sessions, func(a, b map[string]any) int {
		if c := start(a).Compare(start(b)); c != 0 {
			return c
		}
		ai, _ := a["id"].(string)
		bi, _ := b["id"].(string)
		switch {
		case ai < bi:
			return -1
		case ai > bi:
			return 1
		}
		return 0
	})
	limit := defaultListLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		limit, _ = strconv.Atoi(v) // listSessions checked it
	}
	if len(merged.Sessions) > limit {
		merged.Sessions, merged.Truncated = merged.Sessions[:limit], true
	}
	if merged.Sessions == nil {
		merged.Sessions = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": merged.Sessions, "truncated": merged.Truncated,
		"instances": len(answers) + 1, "partial": !all})
}
