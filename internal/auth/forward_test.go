package auth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"wsgate/internal/auth/authtest"
	"wsgate/internal/config"
)

// authService is a real HTTP auth service on 127.0.0.1: it decides by the
// client's cookie and records what it was sent.
type authService struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newAuthService(t *testing.T) *authService {
	s := &authService{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		h := r.Header.Clone()
		h.Set("X-Test-Method", r.Method)
		s.seen = append(s.seen, h)
		s.mu.Unlock()
		c, _ := r.Cookie("sid")
		v := ""
		if c != nil {
			v = c.Value
		}
		switch v {
		case "good":
			w.Header().Set("X-User-Id", "alice")
			w.Header().Add("X-Groups", "a")
			w.Header().Add("X-Groups", "b")
			w.Header().Set("X-Not-Copied", "secret")
			w.WriteHeader(http.StatusNoContent)
		case "login":
			w.Header().Set("Location", "https://login.test/?next=/ws")
			w.Header().Set("Set-Cookie", "next=/ws; Path=/")
			w.WriteHeader(http.StatusFound)
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "big":
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(strings.Repeat("x", 100_000)))
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="app"`)
			w.Header().Set("X-Internal", "not for clients")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("log in first\n"))
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *authService) last() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[len(s.seen)-1]
}

func withCookie(v string) *http.Request {
	r := upgrade("/ws/room?x=1")
	r.Host = "app.test"
	r.Header.Set("Cookie", "sid="+v+"; theme=dark")
	r.Header.Set("Sec-WebSocket-Protocol", "chat")
	r.Header.Set("X-User-Id", "mallory")
	return r
}

// TestForward: 2xx lets the request through with copy_headers (and only
// those); any other answer goes back to the client with its status, bounded
// body, WWW-Authenticate, Location and Set-Cookie; no answer in time is 503.
// The auth service gets the client's headers minus the upgrade's, and the
// X-Forwarded-* set.
func TestForward(t *testing.T) {
	t.Parallel()
	svc := newAuthService(t)
	a := loadAuth(t, newReg(), "forward:\n  url: "+svc.URL+"/check\n  timeout: 300ms\n  copy_headers: [X-User-Id, X-Groups]\n")

	r := withCookie("good")
	res := check(a, r)
	if !res.Allow || res.Outcome != OutcomeOK || res.User != "alice" {
		t.Fatalf("allow: %+v", res)
	}
	seen := svc.last()
	for k, want := range map[string]string{
		"X-Test-Method": "GET", "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/ws/room?x=1",
		"X-Forwarded-For": "192.0.2.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.test",
		"Cookie": "sid=good; theme=dark", "Upgrade": "", "Connection": "", "Sec-Websocket-Key": "",
		"Sec-Websocket-Protocol": "", "X-User-Id": "",
	} {
		if got := seen.Get(k); got != want {
			t.Errorf("the auth service got %s %q, want %q", k, got, want)
		}
	}
	res.Apply(r)
	if got := r.Header.Values("X-User-Id"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("upstream X-User-Id %q", got)
	}
	if got := r.Header.Values("X-Groups"); strings.Join(got, ",") != "a,b" || r.Header.Get("X-Not-Copied") != "" {
		t.Errorf("upstream X-Groups %q, X-Not-Copied %q", got, r.Header.Get("X-Not-Copied"))
	}
	if r.Header.Get("Cookie") != "sid=good; theme=dark" {
		t.Errorf("forward auth must leave the cookie: %q", r.Header.Get("Cookie"))
	}

	res = check(a, withCookie("nope"))
	if res.Allow || res.Status != 401 || res.Outcome != OutcomeDenied ||
		res.Header.Get("WWW-Authenticate") != `Bearer realm="app"` || string(res.Body) != "log in first\n" || res.Header.Get("X-Internal") != "" {
		t.Errorf("deny: %+v", res)
	}
	res = check(a, withCookie("login"))
	if res.Allow || res.Status != http.StatusFound || res.Header.Get("Location") != "https://login.test/?next=/ws" ||
		res.Header.Get("Set-Cookie") != "next=/ws; Path=/" {
		t.Errorf("redirect (must not be followed): %+v", res)
	}
	res = check(a, withCookie("big"))
	if res.Status != 403 || len(res.Body) != maxDenyBody {
		t.Errorf("big body: %d, %d bytes", res.Status, len(res.Body))
	}
	t0 := time.Now()
	res = check(a, withCookie("slow"))
	if res.Allow || res.Status != http.StatusServiceUnavailable || res.Outcome != OutcomeError {
		t.Errorf("timeout: %+v", res)
	}
	if d := time.Since(t0); d > 4*time.Second {
		t.Errorf("the timeout (300ms) was not enforced: %v", d)
	}
	gone := loadAuth(t, newReg(), "forward:\n  url: http://127.0.0.1:1/check\n")
	if res := check(gone, withCookie("good")); res.Status != http.StatusServiceUnavailable || res.Outcome != OutcomeError {
		t.Errorf("unreachable: %+v", res)
	}
}

// FuzzStrip: whatever query and cookies a client sends, Check never
// panics, and after Apply no configured source still holds a credential;
// other query pairs and cookies are kept as they were.
func FuzzStrip(f *testing.F) {
	for _, s := range [][2]string{
		{"access_token=abc&x=1", "session=abc; a=b"},
		{"access%5Ftoken=abc;x", "session=; session=abc"},
		{"&&access_token&access_token=%zz", ";;a;session"},
		{"x=%20&access_token=a.b.c", "a=b;session=a.b.c;c=d"},
	} {
		f.Add(s[0], s[1], "bearer.a.b.c, chat")
	}
	a := &Auth{jwt: &jwtCheck{}}
	a.jwt.cfg = mustSources(f, "query:access_token", "cookie:session", "subprotocol:bearer.")
	f.Fuzz(func(t *testing.T, query, cookie, protocol string) {
		r := &http.Request{Method: "GET", URL: &url.URL{Path: "/", RawQuery: query}, Header: http.Header{}}
		r.Header.Set("Cookie", cookie)
		r.Header.Set("Sec-WebSocket-Protocol", protocol)
		_, _, _ = a.jwt.find(r)
		res := Result{a: a, Allow: true}
		otherPairs := 0
		for _, p := range queryPairs(query) {
			if p.key != "access_token" {
				otherPairs++
			}
		}
		res.Apply(r)
		for _, src := range a.jwt.cfg.TokenFrom {
			if tok, ok := lookup(r, src); ok {
				t.Fatalf("%s still holds %q after Apply (query %q, cookie %q)", src, tok, r.URL.RawQuery, r.Header.Get("Cookie"))
			}
		}
		if n := len(queryPairs(r.URL.RawQuery)); n != otherPairs {
			t.Fatalf("query %q -> %q: %d other pairs left, want %d", query, r.URL.RawQuery, n, otherPairs)
		}
	})
}

func mustSources(tb testing.TB, specs ...string) *config.JWTAuth {
	tb.Helper()
	j := &config.JWTAuth{}
	for _, s := range specs {
		src, err := config.ParseTokenSource(s)
		if err != nil {
			tb.Fatal(err)
		}
		j.TokenFrom = append(j.TokenFrom, src)
	}
	return j
}

// TestJWTAndForward: with both, the token is checked first (a bad one
// never reaches the auth service), then the auth service must agree; the
// request gets both sets of headers.
func TestJWTAndForward(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	svc := newAuthService(t)
	a := loadAuth(t, newReg(), jwksBlock(idp.URL, "")+"forward:\n  url: "+svc.URL+"/check\n  copy_headers: [X-Groups]\n")
	tok := idp.Sign("EdDSA", authtest.Standard(iss, aud, "dave", time.Hour))
	r := withCookie("good")
	r.Header.Set("Authorization", "Bearer "+tok)
	res := check(a, r)
	if !res.Allow || res.User != "dave" || res.Expires.IsZero() {
		t.Fatalf("both allow: %+v", res)
	}
	res.Apply(r)
	if r.Header.Get("X-User-Id") != "dave" || strings.Join(r.Header.Values("X-Groups"), ",") != "a,b" || r.Header.Get("Authorization") != "" {
		t.Errorf("headers after Apply: %v", r.Header)
	}
	r = withCookie("nope")
	r.Header.Set("Authorization", "Bearer "+tok)
	if res := check(a, r); res.Allow || res.Status != 401 || res.Outcome != OutcomeDenied {
		t.Errorf("token ok, service says no: %+v", res)
	}
	svc.mu.Lock()
	asked := len(svc.seen)
	svc.mu.Unlock()
	r = withCookie("good")
	r.Header.Set("Authorization", "Bearer garbage")
	if res := check(a, r); res.Allow || res.Outcome != OutcomeInvalid {
		t.Errorf("bad token: %+v", res)
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if len(svc.seen) != asked {
		t.Error("a request with a bad token reached the auth service")
	}
}
