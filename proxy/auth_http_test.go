package proxy

// Authentication on an http: proxy route's plain HTTP requests (README
// "Authentication"): the same checks as for its upgrades.

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"wsgate/internal/auth/authtest"
)

// TestAuthHTTPRequests: a proxied HTTP request with a valid token reaches
// the upstream with the claims header and without the token; bad or missing
// tokens get the upgrade's 401s; forward auth's answers come back as they
// are; nothing refused reaches the upstream. Counted, and the user is on
// the "http" access line.
func TestAuthHTTPRequests(t *testing.T) {
	t.Parallel()
	idp := authtest.New(t)
	up := newAppUpstream(t, "app", nil)
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, _ := r.Cookie("sid"); c != nil && c.Value == "good" && r.Header.Get("X-Forwarded-Uri") == "/f/page?x=1" &&
			r.Header.Get("X-Forwarded-Method") == "POST" {
			w.Header().Set("X-User-Id", "bob")
			return
		}
		http.Redirect(w, r, "https://login.test/", http.StatusFound)
	}))
	t.Cleanup(svc.Close)
	gw := startGateway(t, e2eHead+"routes:\n"+
		jwtRoute("app", "/j", up.URL, idp.URL, `token_from: ["header:Authorization", "query:access_token", "cookie:session"]`)+
		"    http: proxy\n"+
		"  - name: fwd\n    path: /f\n    upstreams: ["+up.URL+"]\n    http: proxy\n"+
		"    auth: {forward: {url: \""+svc.URL+"/check\", copy_headers: [X-User-Id]}}\n")
	base := "http://" + gw.Addr
	tok := idp.Sign("RS256", claims("carol", time.Hour))

	for _, c := range []struct {
		name, target string
		hdr          []string
	}{
		{"header", "/j/a", []string{"Authorization", "Bearer " + tok}},
		{"query", "/j/a?access_token=" + tok + "&q=1", nil},
		{"cookie", "/j/a", []string{"Cookie", "a=1; session=" + tok}},
	} {
		resp, body := get(t, base+c.target, append(c.hdr, "X-User-Id", "mallory")...)
		if resp.StatusCode != 200 || body != "app" {
			t.Fatalf("%s: %s %q", c.name, resp.Status, body)
		}
		r := up.last(t)
		var b strings.Builder
		_ = r.Header.Write(&b)
		if strings.Contains(r.URL.String()+b.String(), tok[:30]) {
			t.Errorf("%s: the token reached the upstream: %s\n%s", c.name, r.URL, b.String())
		}
		if got := r.Header.Values("X-User-Id"); len(got) != 1 || got[0] != "carol" {
			t.Errorf("%s: upstream X-User-Id %q", c.name, got)
		}
	}
	n := up.n.Load()
	resp, _ := get(t, base+"/j/a", "Authorization", "Bearer "+idp.Sign("RS256", authtest.Standard("https://evil.test/", testAud, "x", time.Hour)))
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
		t.Errorf("wrong issuer: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	resp, _ = get(t, base+"/j/a")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("no token: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}

	req, _ := http.NewRequest(http.MethodPost, base+"/f/page?x=1", strings.NewReader("body"))
	req.Header.Set("Cookie", "sid=good")
	r2, err := httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 200 || up.last(t).Header.Get("X-User-Id") != "bob" {
		t.Errorf("forward allow: %s, upstream X-User-Id %q", r2.Status, up.last(t).Header.Get("X-User-Id"))
	}
	req, _ = http.NewRequest(http.MethodGet, base+"/f/page", nil)
	client := httpClient()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r3, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r3.Body.Close()
	if r3.StatusCode != 302 || r3.Header.Get("Location") != "https://login.test/" {
		t.Errorf("forward deny: %s %q", r3.Status, r3.Header.Get("Location"))
	}
	if got := up.n.Load() - n; got != 1 {
		t.Errorf("%d requests reached the upstream after the first three, want 1 (the allowed POST)", got)
	}
	if got := authCount(gw.Gateway, "app", "ok"); got != 3 {
		t.Errorf("wsgate_auth_total{app,ok} = %v", got)
	}
	if got := authCount(gw.Gateway, "fwd", "denied"); got != 1 {
		t.Errorf("wsgate_auth_total{fwd,denied} = %v", got)
	}
	eventually(t, "the access lines", func() bool { return len(httpLogs(gw.Logs)) == 7 })
	users := map[string]int{}
	for _, m := range httpLogs(gw.Logs) {
		users[m["user"].(string)]++
	}
	if users["carol"] != 3 || users["bob"] != 1 || users[""] != 3 {
		t.Errorf("users on the http access lines: %v", users)
	}
}
