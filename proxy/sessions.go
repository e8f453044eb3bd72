package proxy

// The registry of live sessions and the sessions API (README "Sessions API
// and events"): session ids and tags, the admin endpoints that list,
// inspect, push to and close sessions, and the connect/disconnect events.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"wsgate/frame"
	"wsgate/internal/config"
	"wsgate/internal/events"
	"wsgate/internal/metrics"
	"wsgate/internal/relay"
)

// sessionID is a session's id: 128 random bits, base64url (no padding)
// where it is written.
type sessionID [16]byte

func newSessionID() sessionID {
	var id sessionID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24+)
	return id
}

func (id sessionID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

func parseSessionID(s string) (sessionID, bool) {
	var id sessionID
	if base64.RawURLEncoding.DecodedLen(len(s)) != len(id) {
		return id, false
	}
	n, err := base64.RawURLEncoding.Strict().Decode(id[:], []byte(s))
	return id, err == nil && n == len(id)
}

// Tags a backend gives a session on its 101 (X-Wsgate-Tags): at most
// maxTags, each at most maxTagLen bytes of visible ASCII other than a
// comma. Others are dropped (and logged at debug level).
const (
	tagsHeader = "X-Wsgate-Tags"
	maxTags    = 32
	maxTagLen  = 128
)

// parseTags splits the X-Wsgate-Tags values ("room:42, user:7") into
// distinct tags, in order. It reports how many were dropped.
func parseTags(values []string) (tags []string, dropped int) {
	for _, v := range values {
		for rest := v; rest != ""; {
			var t string
			t, rest, _ = strings.Cut(rest, ",")
			t = strings.TrimSpace(t)
			switch {
			case t == "":
			case len(t) > maxTagLen || !isVisibleASCII(t) || len(tags) >= maxTags:
				dropped++
			case !slices.Contains(tags, t):
				tags = append(tags, t)
			}
		}
	}
	return tags, dropped
}

func isVisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// sessionEntry is a live session as the sessions API sees it: a view made
// on demand from the registry, not stored. The session's id and user are
// on the relay session itself (relay.Session.ID, User).
type sessionEntry struct {
	s    *relay.Session
	tags []string
	ev   *sessionEvents // nil: the route sends no events
}

func (e sessionEntry) id() sessionID { return sessionID(e.s.ID) }

// sessionEvents is what a session whose route sends events keeps for its
// disconnect event.
type sessionEvents struct {
	cfg     *config.Events // the route's, when the session started
	connect *events.Job    // the connect event, which the disconnect follows; nil if none was sent
}

// registry is the set of live sessions, for shutdown, reload, drain,
// metrics and the sessions API. It is indexed by id and by tag, so that
// neither a lookup nor a broadcast to a tag scans every session. Tags and
// event state are kept in maps of their own, only for the sessions that
// have them: an untagged session without events costs the registry one
// entry of byID. The lock is held only to update or copy out of the maps,
// never while a session is written to.
type registry struct {
	mu     sync.RWMutex
	byID   map[sessionID]*relay.Session
	tags   map[*relay.Session][]string
	byTag  map[string]map[*relay.Session]struct{}
	events map[*relay.Session]*sessionEvents
	// pending holds the ids of handshakes under way: the upstream learns a
	// session's id in its own handshake, before the client has its 101 and
	// the session is live, and may use it at once. A request for a pending
	// id waits (await); the value is the channel closed when the handshake
	// ends, made only once somebody waits.
	pending map[sessionID]chan struct{}
}

func (r *registry) init() {
	r.byID = make(map[sessionID]*relay.Session)
	r.tags = make(map[*relay.Session][]string)
	r.byTag = make(map[string]map[*relay.Session]struct{})
	r.events = make(map[*relay.Session]*sessionEvents)
	r.pending = make(map[sessionID]chan struct{})
}

// expect records that the handshake of session id is under way; add or
// settle ends it.
func (r *registry) expect(id sessionID) {
	r.mu.Lock()
	r.pending[id] = nil
	r.mu.Unlock()
}

// settle records that the handshake of session id ended without a session.
func (r *registry) settle(id sessionID) {
	r.mu.Lock()
	r.settleLocked(id)
	r.mu.Unlock()
}

func (r *registry) settleLocked(id sessionID) {
	if ch, ok := r.pending[id]; ok {
		delete(r.pending, id)
		if ch != nil {
			close(ch)
		}
	}
}

// here reports whether session id is live here or its handshake is under
// way here.
func (r *registry) here(id sessionID) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, pending := r.pending[id]
	return pending || r.byID[id] != nil
}

// await is get, except that while session id's handshake is under way it
// waits for the handshake to end (or ctx).
func (r *registry) await(ctx context.Context, id sessionID) (sessionEntry, bool) {
	if e, ok := r.get(id); ok {
		return e, true
	}
	r.mu.Lock()
	ch, ok := r.pending[id]
	if ok && ch == nil {
		ch = make(chan struct{})
		r.pending[id] = ch
	}
	r.mu.Unlock()
	if !ok { // not pending: gone, or live since get
		return r.get(id)
	}
	select {
	case <-ch:
		return r.get(id)
	case <-ctx.Done():
		return sessionEntry{}, false
	}
}

func (r *registry) add(s *relay.Session, tags []string, ev *sessionEvents) {
	r.mu.Lock()
	r.byID[sessionID(s.ID)] = s
	r.settleLocked(sessionID(s.ID))
	if len(tags) > 0 {
		r.tags[s] = tags
	}
	for _, t := range tags {
		set := r.byTag[t]
		if set == nil {
			set = make(map[*relay.Session]struct{})
			r.byTag[t] = set
		}
		set[s] = struct{}{}
	}
	if ev != nil {
		r.events[s] = ev
	}
	r.mu.Unlock()
}

// remove takes s out and returns its entry.
func (r *registry) remove(s *relay.Session) sessionEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := sessionEntry{s: s, tags: r.tags[s], ev: r.events[s]}
	delete(r.byID, sessionID(s.ID))
	delete(r.tags, s)
	delete(r.events, s)
	for _, t := range e.tags {
		if set := r.byTag[t]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(r.byTag, t)
			}
		}
	}
	return e
}

func (r *registry) get(id sessionID) (sessionEntry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := r.byID[id]
	if s == nil {
		return sessionEntry{}, false
	}
	return sessionEntry{s: s, tags: r.tags[s]}, true
}

// list returns the live sessions.
func (r *registry) list() []*relay.Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*relay.Session, 0, len(r.byID))
	for _, s := range r.byID {
		out = append(out, s)
	}
	return out
}

// match returns the sessions with tag (if not "") on route (if not "")
// that keep (if not nil) keeps, through the tag index when there is a tag.
func (r *registry) match(route, tag string, keep func(s *relay.Session) bool) []sessionEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []sessionEntry
	add := func(s *relay.Session) {
		if (route == "" || s.Route == route) && (keep == nil || keep(s)) {
			out = append(out, sessionEntry{s: s, tags: r.tags[s]})
		}
	}
	if tag != "" {
		for s := range r.byTag[tag] {
			add(s)
		}
		return out
	}
	for _, s := range r.byID {
		add(s)
	}
	return out
}

// sessionTags are the tags the upstream's 101 (hdr) gives session s.
func (g *Gateway) sessionTags(s *relay.Session, hdr http.Header) []string {
	v := hdr.Values(tagsHeader)
	if len(v) == 0 {
		return nil
	}
	tags, dropped := parseTags(v)
	if dropped > 0 {
		g.log.Debug().Str("route", s.Route).Str("session", sessionID(s.ID).String()).Int("dropped", dropped).
			Msgf("%s: tags dropped (at most %d, each at most %d bytes of visible ASCII, no commas)", tagsHeader, maxTags, maxTagLen)
	}
	return tags
}

// setSessionHeader puts the session id on the upstream request, in place
// of any copy the client sent.
func setSessionHeader(h http.Header, name string, id sessionID) {
	if name == "" {
		return
	}
	h.Del(name)
	h.Set(name, id.String())
}

// ---------------------------------------------------------------------------
// Events

// sessionsState is what the gateway keeps for the sessions API.
type sessionsState struct {
	metrics *metrics.SessionsAPI
	evOnce  sync.Once
	ev      atomic.Pointer[events.Sender] // started on the first event
	// evBackoff is the events' first retry wait and evMax their bound
	// (0: the defaults); tests change them.
	evBackoff time.Duration
	evMax     int
	evLogged  atomic.Int64 // when an undelivered event was last logged (Unix ns)
}

// sender returns the events sender, started on first use.
func (g *Gateway) sender() *events.Sender {
	g.sess.evOnce.Do(func() {
		g.sess.ev.Store(events.New(events.Options{Backoff: g.sess.evBackoff, Max: g.sess.evMax, Result: func(j *events.Job, result string) {
			g.sess.metrics.Events.WithLabelValues(j.Route, j.Event, result).Inc()
			// At most one line a second: a receiver that is down must
			// not flood the log (the metric counts every one).
			if now := time.Now().UnixNano(); result != events.ResultOK && now-g.sess.evLogged.Load() >= int64(time.Second) {
				g.sess.evLogged.Store(now)
				g.log.Warn().Str("route", j.Route).Str("event", j.Event).Str("result", result).
					Str("url", j.URL).Msg("session event not delivered (see wsgate_events_total for the count)")
			}
		}}))
	})
	return g.sess.ev.Load()
}

// closeEvents waits up to d for the events still pending, then stops the
// sender.
func (g *Gateway) closeEvents(d time.Duration) {
	g.sess.evOnce.Do(func() {}) // none may start now
	ev := g.sess.ev.Load()
	if ev == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if lost := ev.Close(ctx); lost > 0 {
		g.log.Warn().Int("events", lost).Msg("session events still pending at exit were not delivered")
	}
}

// eventBody is the JSON of an event; the disconnect event adds the access
// line's counts and closes.
type eventBody struct {
	Event   string    `json:"event"`
	Session string    `json:"session"`
	Route   string    `json:"route"`
	Client  string    `json:"client"`
	User    string    `json:"user"`
	Tags    []string  `json:"tags"`
	Time    time.Time `json:"time"`
	*sessionEnd
}

// sessionEnd is what the access line says of a finished session.
type sessionEnd struct {
	Upstream            string  `json:"upstream"`
	Subprotocol         string  `json:"subprotocol"`
	Start               string  `json:"start"`
	Duration            float64 `json:"duration"`
	C2UFrames           int64   `json:"c2u_frames"`
	C2UMessages         int64   `json:"c2u_messages"`
	C2UBytes            int64   `json:"c2u_bytes"`
	U2CFrames           int64   `json:"u2c_frames"`
	U2CMessages         int64   `json:"u2c_messages"`
	U2CBytes            int64   `json:"u2c_bytes"`
	Pushed              int64   `json:"pushed"`
	ClientCloseCode     string  `json:"client_close_code"`
	ClientCloseReason   string  `json:"client_close_reason"`
	UpstreamCloseCode   string  `json:"upstream_close_code"`
	UpstreamCloseReason string  `json:"upstream_close_reason"`
	ClosedBy            string  `json:"closed_by"`
	Reason              string  `json:"reason"`
	Truncated           bool    `json:"truncated"`
}

func (g *Gateway) event(e sessionEntry, name string, end *sessionEnd, after *events.Job) *events.Job {
	tags := e.tags
	if tags == nil {
		tags = []string{}
	}
	s := e.s
	body, _ := json.Marshal(eventBody{Event: name, Session: e.id().String(), Route: s.Route, Client: s.Client,
		User: s.User, Tags: tags, Time: time.Now().UTC(), sessionEnd: end})
	j := &events.Job{URL: e.ev.cfg.URL, Timeout: e.ev.cfg.Timeout, Body: body, Route: s.Route, Event: name}
	j.After(after)
	if snd := g.sender(); snd != nil { // nil once Serve stopped it
		snd.Send(j)
	}
	return j
}

// sessionStarted sends the connect event, if the route asks for it, and
// returns what the disconnect event will need (nil: no events).
func (g *Gateway) sessionStarted(s *relay.Session, rs *routeState, tags []string) *sessionEvents {
	cfg := rs.cfg.Settings.Events
	if cfg == nil {
		return nil
	}
	ev := &sessionEvents{cfg: cfg}
	if cfg.Connect {
		ev.connect = g.event(sessionEntry{s: s, tags: tags, ev: ev}, "connect", nil, nil)
	}
	return ev
}

// sessionEnded sends the disconnect event, if the route asks for it.
func (g *Gateway) sessionEnded(e sessionEntry) {
	if e.ev == nil || !e.ev.cfg.Disconnect {
		return
	}
	s := e.s
	end := &sessionEnd{Upstream: s.Upstream, Subprotocol: s.Protocol, Start: s.Start().UTC().Format(time.RFC3339Nano),
		Duration: time.Since(s.Start()).Seconds(), Pushed: s.Pushed()}
	end.C2UFrames, end.C2UMessages, end.C2UBytes = s.Tally(relay.SideClient)
	end.U2CFrames, end.U2CMessages, end.U2CBytes = s.Tally(relay.SideUpstream)
	end.ClientCloseCode, end.ClientCloseReason = closeSent(s, relay.SideClient)
	end.UpstreamCloseCode, end.UpstreamCloseReason = closeSent(s, relay.SideUpstream)
	end.ClosedBy, end.Reason, end.Truncated = s.Outcome()
	g.event(e, "disconnect", end, e.ev.connect)
}

// closeSent is the close code (or "none") and reason a leg got, as the
// access line has them.
func closeSent(s *relay.Session, side relay.Side) (string, string) {
	if code, reason, ok := s.CloseSent(side); ok {
		return strconv.Itoa(int(code)), reason
	}
	return "none", ""
}

// ---------------------------------------------------------------------------
// Admin endpoints

// sessionsAPI adds the sessions API to the admin mux: with a cluster, it
// reaches the sessions of every instance (sessions_cluster.go).
func (g *Gateway) sessionsAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /sessions", g.clusterList)
	mux.HandleFunc("GET /sessions/{id}", g.routed(g.getSession))
	mux.HandleFunc("POST /sessions/{id}/messages", g.routed(g.pushSession))
	mux.HandleFunc("DELETE /sessions/{id}", g.routed(g.closeSession))
	mux.HandleFunc("POST /broadcast", g.clusterBroadcast)
}

// localSessionsAPI is the sessions API of this instance alone: what
// answers the requests other instances send over the cluster's bus.
func (g *Gateway) localSessionsAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /sessions", g.listSessions)
	mux.HandleFunc("GET /sessions/{id}", g.getSession)
	mux.HandleFunc("POST /sessions/{id}/messages", g.pushSession)
	mux.HandleFunc("DELETE /sessions/{id}", g.closeSession)
	mux.HandleFunc("POST /broadcast", g.broadcast)
}

// adminAuth asks every admin request but /healthz and /readyz for the
// bearer token of server.admin_token_file, if one is set. The comparison
// is of SHA-256 digests in constant time: neither the token's bytes nor
// its length show in the time an answer takes.
func (g *Gateway) adminAuth(h http.Handler) http.Handler {
	tok := g.Config().AdminToken
	if tok == "" {
		return h
	}
	want := sha256.Sum256([]byte(tok))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			h.ServeHTTP(w, r)
			return
		}
		got, ok := bearer(r.Header.Get("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="wsgate-admin"`)
			http.Error(w, "admin token missing or wrong", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearer is the token of an "Authorization: Bearer <token>" value.
func bearer(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// warnOpenAdmin warns when the admin listener is reachable from beyond
// this host and asks for no token: it can read and close every session.
func (g *Gateway) warnOpenAdmin(ln net.Listener) {
	if g.Config().AdminToken != "" {
		return
	}
	ap, err := netip.ParseAddrPort(ln.Addr().String())
	if err == nil && ap.Addr().IsLoopback() {
		return
	}
	g.log.Warn().Str("listen", ln.Addr().String()).
		Msg("the admin listener is not on loopback and has no token: anyone who reaches it can list, push to and close every session (set server.admin_token_file, or listen on 127.0.0.1 or a private network)")
}

// sessionJSON is a session as the admin API shows it.
type sessionJSON struct {
	ID          string    `json:"id"`
	Route       string    `json:"route"`
	Client      string    `json:"client"`
	User        string    `json:"user"`
	Upstream    string    `json:"upstream"`
	Subprotocol string    `json:"subprotocol"`
	Tags        []string  `json:"tags"`
	Start       time.Time `json:"start"`
	C2UFrames   int64     `json:"c2u_frames"`
	C2UMessages int64     `json:"c2u_messages"`
	C2UBytes    int64     `json:"c2u_bytes"`
	U2CFrames   int64     `json:"u2c_frames"`
	U2CMessages int64     `json:"u2c_messages"`
	U2CBytes    int64     `json:"u2c_bytes"`
	Pushed      int64     `json:"pushed"`
	Parked      int       `json:"parked_legs"`
	Closing     bool      `json:"closing"`
}

func (e sessionEntry) json() sessionJSON {
	s := e.s
	j := sessionJSON{ID: e.id().String(), Route: s.Route, Client: s.Client, User: s.User, Upstream: s.Upstream,
		Subprotocol: s.Protocol, Tags: e.tags, Start: s.Start().UTC(), Pushed: s.Pushed(),
		Parked: s.ParkedLegs(), Closing: s.Closing()}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	j.C2UFrames, j.C2UMessages, j.C2UBytes = s.Tally(relay.SideClient)
	j.U2CFrames, j.U2CMessages, j.U2CBytes = s.Tally(relay.SideUpstream)
	return j
}

// Listing bounds: limit defaults to defaultListLimit and may not pass
// maxListLimit.
const (
	defaultListLimit = 1000
	maxListLimit     = 100000
)

func (g *Gateway) listSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			adminError(w, http.StatusBadRequest, "limit must be a number from 1 to "+strconv.Itoa(maxListLimit))
			return
		}
		limit = n
	}
	client, user := q.Get("client"), q.Get("user")
	list := g.reg.match(q.Get("route"), q.Get("tag"), func(s *relay.Session) bool {
		return (client == "" || s.Client == client) && (user == "" || s.User == user)
	})
	// Oldest first, so that paging by start time is possible.
	slices.SortFunc(list, func(a, b sessionEntry) int {
		if c := a.s.Start().Compare(b.s.Start()); c != 0 {
			return c
		}
		return bytes.Compare(a.s.ID[:], b.s.ID[:])
	})
	truncated := len(list) > limit
	if truncated {
		list = list[:limit]
	}
	out := struct {
		Sessions  []sessionJSON `json:"sessions"`
		Truncated bool          `json:"truncated"`
	}{Sessions: make([]sessionJSON, 0, len(list)), Truncated: truncated}
	for _, e := range list {
		out.Sessions = append(out.Sessions, e.json())
	}
	writeJSON(w, http.StatusOK, out)
}

// entry finds the session named by the request's {id}, or answers 404. A
// session whose handshake is under way is waited for: its upstream knows
// its id before its client has the 101.
func (g *Gateway) entry(w http.ResponseWriter, r *http.Request) (sessionEntry, bool) {
	id, ok := parseSessionID(r.PathValue("id"))
	var e sessionEntry
	if ok {
		e, ok = g.reg.await(r.Context(), id)
	}
	if !ok {
		adminError(w, http.StatusNotFound, "no such session")
	}
	return e, ok
}

func (g *Gateway) getSession(w http.ResponseWriter, r *http.Request) {
	if e, ok := g.entry(w, r); ok {
		writeJSON(w, http.StatusOK, e.json())
	}
}

// readPush reads a push's body, at most max bytes (else 413), and makes it
// the frame to send: text for text/* and application/json (it must then
// be UTF-8), binary otherwise.
func readPush(w http.ResponseWriter, r *http.Request, max int64) ([]byte, int64, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			adminError(w, http.StatusRequestEntityTooLarge, "message larger than the route's max_message_bytes ("+strconv.FormatInt(max, 10)+")")
		} else {
			adminError(w, http.StatusBadRequest, "cannot read the body: "+err.Error())
		}
		return nil, 0, false
	}
	text := isTextType(r.Header.Get("Content-Type"))
	if text && !utf8.Valid(body) {
		adminError(w, http.StatusBadRequest, "a text message must be UTF-8 (send another Content-Type for binary)")
		return nil, 0, false
	}
	return relay.PushFrame(text, body), int64(len(body)), true
}

func isTextType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(ct))
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/json"
}

func (g *Gateway) pushSession(w http.ResponseWriter, r *http.Request) {
	e, ok := g.entry(w, r)
	if !ok {
		return
	}
	if e.s.Closing() {
		adminError(w, http.StatusConflict, "session is closing")
		return
	}
	f, _, ok := readPush(w, r, e.s.MaxMessage())
	if !ok {
		return
	}
	switch err := e.s.Push(f, g.sess.metrics.Pushed.WithLabelValues(e.s.Route)); {
	case errors.Is(err, relay.ErrQueueFull):
		w.Header().Set("Retry-After", "1")
		adminError(w, http.StatusTooManyRequests, "the session's push queue is full ("+
			strconv.Itoa(relay.PushQueueMessages)+" messages or "+strconv.Itoa(relay.PushQueueBytes)+" bytes): its client is not reading fast enough")
	case err != nil:
		adminError(w, http.StatusConflict, "session is closing")
	default:
		writeJSON(w, http.StatusAccepted, map[string]string{"session": e.id().String(), "status": "queued"})
	}
}

// adminCloseCode reports whether an admin may close a session with c:
// 1000, 1001, 1008, 1011-1013, or an application code 3000-4999.
func adminCloseCode(c int) bool {
	switch {
	case c == 1000, c == 1001, c == 1008, c >= 1011 && c <= 1013, c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// maxCloseReason is the most a close reason may take (RFC 6455 §5.5: a
// control frame's payload is at most 125 bytes, 2 of them the code).
const maxCloseReason = frame.MaxControlPayload - 2

func (g *Gateway) closeSession(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	code := int(frame.CloseNormal)
	if v := q.Get("code"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || !adminCloseCode(n) {
			adminError(w, http.StatusBadRequest, "code must be 1000, 1001, 1008, 1011-1013 or 3000-4999")
			return
		}
		code = n
	}
	reason := q.Get("reason")
	if len(reason) > maxCloseReason || !utf8.ValidString(reason) {
		adminError(w, http.StatusBadRequest, "reason must be UTF-8 of at most "+strconv.Itoa(maxCloseReason)+" bytes")
		return
	}
	e, ok := g.entry(w, r)
	if !ok {
		return
	}
	e.s.Disconnect(frame.CloseCode(code), reason)
	writeJSON(w, http.StatusAccepted, map[string]string{"session": e.id().String(), "status": "closing"})
}

func (g *Gateway) broadcast(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	route, tag := q.Get("route"), q.Get("tag")
	if route == "" && tag == "" {
		adminError(w, http.StatusBadRequest, "name at least one of route= and tag=")
		return
	}
	// The body may be as large as the largest cap among the routes in
	// force (or the route named); each session gets it only if its own
	// route's cap allows.
	var max int64
	for _, rs := range g.snap.Load().routes {
		if route == "" || rs.cfg.Name == route {
			max = maxOf(max, rs.session.MaxMessage)
		}
	}
	if max == 0 {
		max = 1 // a route no longer configured: its sessions still get what fits
		for _, e := range g.reg.match(route, "", nil) {
			max = maxOf(max, e.s.MaxMessage())
		}
	}
	f, size, ok := readPush(w, r, max)
	if !ok {
		return
	}
	// The index is only read under its lock; the pushes happen after,
	// each waking one session's pump: the relay and the other admin
	// requests go on meanwhile.
	list := g.reg.match(route, tag, nil)
	var queued, full, closing, tooBig int
	counters := map[string]relay.Counter{}
	for i, e := range list {
		if i%broadcastBatch == broadcastBatch-1 {
			// Each push makes a pump runnable: let them (and every other
			// session's) run between batches, rather than queue
			// thousands of goroutines ahead of the relay's traffic.
			runtime.Gosched()
		}
		if size > e.s.MaxMessage() {
			tooBig++
			continue
		}
		c := counters[e.s.Route]
		if c == nil {
			c = g.sess.metrics.Pushed.WithLabelValues(e.s.Route)
			counters[e.s.Route] = c
		}
		switch err := e.s.Push(f, c); {
		case err == nil:
			queued++
		case errors.Is(err, relay.ErrQueueFull):
			full++
		default:
			closing++
		}
	}
	writeJSON(w, http.StatusOK, map[string]int{"sessions": queued, "queue_full": full, "closing": closing, "too_big": tooBig})
}

// broadcastBatch is how many sessions a broadcast queues to before it
// yields the processor.
const broadcastBatch = 64

func maxOf(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
