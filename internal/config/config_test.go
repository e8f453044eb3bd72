package config

import (
	"errors"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"wsgate/internal/config/yamlwalk"
)

// The files under testdata/config/errors and testdata/config/warnings carry
// their expectations as comments on the line the problem is reported at:
//
//	path: ws    # want: routes[0].path: path "ws" must start with "/"
//
// "# want@N:" gives the line explicitly (0 = no line), for problems reported
// where no comment can go. The key "-" means none. Several annotations may
// share a line; they are expected in that order. The message part is matched
// as a substring, the file:line: key: prefix exactly.

var annotationRE = regexp.MustCompile(`# (want|warn)(?:@(\d+))?: `)

type expectation struct {
	line     int
	key, msg string
}

func (e expectation) String() string { return strconv.Itoa(e.line) + ": " + e.key + ": " + e.msg }

func readExpectations(t *testing.T, path, kind string) []expectation {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []expectation
	for i, line := range strings.Split(string(data), "\n") {
		ms := annotationRE.FindAllStringSubmatchIndex(line, -1)
		for j, m := range ms {
			if line[m[2]:m[3]] != kind {
				continue
			}
			end := len(line)
			if j+1 < len(ms) {
				end = ms[j+1][0]
			}
			e := expectation{line: i + 1}
			if m[4] >= 0 {
				e.line, _ = strconv.Atoi(line[m[4]:m[5]])
			}
			seg := strings.TrimSpace(line[m[1]:end])
			key, msg, ok := strings.Cut(seg, ": ")
			if !ok {
				t.Fatalf("%s:%d: bad annotation %q (want KEY: MESSAGE)", path, i+1, seg)
			}
			if key == "-" {
				key = ""
			}
			e.key, e.msg = key, msg
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b expectation) int { return a.line - b.line })
	return out
}

// prefix is what Error.Error starts with for an expectation.
func (e expectation) prefix(file string) string {
	s := file
	if e.line > 0 {
		s += ":" + strconv.Itoa(e.line)
	}
	s += ": "
	if e.key != "" {
		s += e.key + ": "
	}
	return s
}

func TestConfigErrorFiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/config/errors/*.yaml")
	if err != nil || len(files) < 20 {
		t.Fatalf("found %d error files (%v)", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			want := readExpectations(t, file, "want")
			if len(want) == 0 {
				t.Fatal("file has no # want: annotation")
			}
			cfg, err := Load(file)
			if err == nil {
				t.Fatalf("loaded without error; want:\n%v", want)
			}
			if cfg != nil {
				t.Error("a failed load returned a config")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors", err)
			}
			if !slices.IsSortedFunc(errs, func(a, b *Error) int { return a.Line - b.Line }) {
				t.Errorf("errors not sorted by line:\n%v", err)
			}
			ok := len(errs) == len(want)
			for i := 0; ok && i < len(errs); i++ {
				e, w := errs[i], want[i]
				ok = e.File == file && e.Line == w.line && e.Key == w.key && strings.Contains(e.Msg, w.msg) &&
					strings.HasPrefix(e.Error(), w.prefix(file))
			}
			if !ok {
				var ws []string
				for _, w := range want {
					ws = append(ws, w.String())
				}
				t.Errorf("got %d errors:\n%v\n\nwant %d:\n%s", len(errs), err, len(want), strings.Join(ws, "\n"))
			}
		})
	}
}

func TestConfigWarningFiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/config/warnings/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no warning files (%v)", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			want := readExpectations(t, file, "warn")
			cfg, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			ok := len(cfg.Warnings) == len(want)
			for i := 0; ok && i < len(want); i++ {
				w := want[i]
				ok = strings.HasPrefix(cfg.Warnings[i], w.prefix(file)) && strings.Contains(cfg.Warnings[i], w.msg)
			}
			if !ok {
				var ws []string
				for _, w := range want {
					ws = append(ws, w.String())
				}
				t.Errorf("got %d warnings:\n%s\n\nwant %d:\n%s", len(cfg.Warnings), strings.Join(cfg.Warnings, "\n"),
					len(want), strings.Join(ws, "\n"))
			}
		})
	}
}

// TestConfigValidFilesHaveNoWarnings covers the valid configs used by the
// other tests: they must load cleanly, warnings included.
func TestConfigValidFilesHaveNoWarnings(t *testing.T) {
	t.Parallel()
	for _, file := range []string{
		"../../config.example.yaml",
		"testdata/config/full.yaml",
		"testdata/config/minimal.yaml",
		"testdata/config/tls.yaml",
		"testdata/config/anchors.yaml",
	} {
		cfg, err := Load(file)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if len(cfg.Warnings) > 0 {
			t.Errorf("%s: unexpected warnings:\n%s", file, strings.Join(cfg.Warnings, "\n"))
		}
	}
}

func TestConfigExample(t *testing.T) {
	t.Parallel()
	const file = "../../config.example.yaml"
	cfg, err := Load(file)
	if err != nil {
		t.Fatalf("config.example.yaml must load with zero errors:\n%v", err)
	}
	if cfg.Server.Listen != ":8080" || cfg.Server.AdminListen != "127.0.0.1:9090" || cfg.TLSEnabled() {
		t.Errorf("server listeners = %q %q %q", cfg.Server.Listen, cfg.Server.TLSListen, cfg.Server.AdminListen)
	}
	if !reflect.DeepEqual(cfg.Server, specServerDefaults(":8080", "127.0.0.1:9090")) {
		t.Errorf("server block differs from the documented defaults (docs/operations.md):\n got %+v", cfg.Server)
	}
	demo := cfg.RouteByName("demo")
	if demo == nil || demo.Path != "/echo" || len(demo.Upstreams) != 1 || demo.Upstreams[0].Builtin != "echo" || demo.Upstreams[0].URL != nil {
		t.Fatalf("demo route = %+v", demo)
	}
	if !reflect.DeepEqual(demo.Settings, specSettingsDefaults()) {
		t.Errorf("demo settings differ from the documented defaults (docs/operations.md):\n got %+v\nwant %+v", demo.Settings, specSettingsDefaults())
	}
	app := cfg.RouteByName("app")
	if app == nil || app.Path != "/ws" || len(app.Upstreams) != 1 || app.Upstreams[0].URL.String() != "ws://127.0.0.1:9001" {
		t.Fatalf("app route = %+v", app)
	}
	if m := app.Settings.RateLimit.Messages; m == nil || m.PerSecond != 20 || m.Burst != 40 {
		t.Errorf("app messages limit = %v", m)
	}

	// Every key the loader knows appears in the example, set or commented.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, keys := range [][]string{topKeys, serverKeys, tlsKeys, acmeKeys, certKeys, logKeys, settingKeys,
		rateKeys, rateSpecKeys, routeKeys, upstreamKeys, upTLSKeys, authKeys, jwtKeys, forwardKeys} {
		for _, k := range keys {
			if !regexp.MustCompile(`(^|[\s{,#-])` + regexp.QuoteMeta(k) + `:`).MatchString(text) {
				t.Errorf("config.example.yaml does not show the key %q", k)
			}
		}
	}
}

// specServerDefaults and specSettingsDefaults spell out the documented built-in
// defaults literally, so a changed default in the code fails a test.
func specServerDefaults(listen, admin string) ServerConfig {
	return ServerConfig{
		Listen:              listen,
		AdminListen:         admin,
		HandshakeTimeout:    10 * time.Second,
		MaxHeaderBytes:      16 * 1024,
		MaxPendingPerIP:     32,
		UpstreamFailureCode: 1014,
		ShutdownGrace:       30 * time.Second,
		ShutdownCloseCode:   1001,
		CloseSpread:         5 * time.Second,
		SessionIDHeader:     "X-Wsgate-Session",
	}
}

func specSettingsDefaults() RouteSettings {
	return RouteSettings{
		UpstreamDialTimeout: 5 * time.Second,
		IdleTimeout:         5 * time.Minute,
		PingInterval:        30 * time.Second,
		PongTimeout:         15 * time.Second,
		CloseTimeout:        5 * time.Second,
		WriteTimeout:        30 * time.Second,
		MaxFrameBytes:       1 << 20,
		MaxMessageBytes:     4 << 20,
		RateLimit:           RateLimits{OnExceed: "close"},
		PermessageDeflate:   Deflate{Enabled: true},
		MaxRequestBodyBytes: 10 << 20,
		HTTPResponseTimeout: 60 * time.Second,
	}
}

func TestConfigMinimalDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Load("testdata/config/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Server, specServerDefaults(":8080", "")) {
		t.Errorf("server = %+v", cfg.Server)
	}
	if want := (TLSConfig{MinVersion: "1.2"}); !reflect.DeepEqual(cfg.TLS, want) {
		t.Errorf("tls = %+v", cfg.TLS)
	}
	if want := (LogConfig{Level: "info", Format: "json", Access: true}); cfg.Log != want {
		t.Errorf("log = %+v", cfg.Log)
	}
	if !reflect.DeepEqual(cfg.Defaults, specSettingsDefaults()) {
		t.Errorf("defaults = %+v", cfg.Defaults)
	}
	r := cfg.Routes[0]
	if r.Name != "demo" || r.Host != "" || r.Path != "/" || r.Balance != "round_robin" || r.StripPrefix || r.AllowPlain ||
		r.SetHeaders != nil || r.Subprotocols != nil || r.Line != 3 || r.Upstreams[0].Weight != 1 {
		t.Errorf("route = %+v", r)
	}
	if !reflect.DeepEqual(r.Settings, specSettingsDefaults()) {
		t.Errorf("route settings = %+v", r.Settings)
	}
}

// TestConfigFull checks every key of a full config, and the merge rules:
// a route's keys override defaults one by one, rate_limit key by key.
func TestConfigFull(t *testing.T) {
	t.Parallel()
	cfg, err := Load("testdata/config/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wantServer := ServerConfig{
		Listen:      "127.0.0.1:8080",
		AdminListen: "127.0.0.1:9090",
		TrustedProxies: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("192.0.2.7/32"),
			netip.MustParsePrefix("2001:db8::/32"),
		},
		ProxyProtocol:       true,
		MaxConnections:      10000,
		HandshakeTimeout:    5 * time.Second,
		MaxHeaderBytes:      8 * KiB,
		MaxPendingPerIP:     8,
		UpstreamFailureCode: 1011,
		ShutdownGrace:       20 * time.Second,
		ShutdownCloseCode:   1012,
		CloseSpread:         2 * time.Second,
		SessionIDHeader:     "X-Wsgate-Session",
	}
	if !reflect.DeepEqual(cfg.Server, wantServer) {
		t.Errorf("server:\n got %+v\nwant %+v", cfg.Server, wantServer)
	}
	if want := (LogConfig{Level: "debug", Format: "console", Access: false}); cfg.Log != want {
		t.Errorf("log = %+v", cfg.Log)
	}
	defaults := RouteSettings{
		UpstreamDialTimeout: 3 * time.Second,
		IdleTimeout:         2 * time.Minute,
		PingInterval:        20 * time.Second,
		PongTimeout:         10 * time.Second,
		CloseTimeout:        3 * time.Second,
		WriteTimeout:        15 * time.Second,
		MaxFrameBytes:       256 * KiB,
		MaxMessageBytes:     1 * MiB,
		// Lower-cased, default port dropped.
		Origins: []string{"https://app.example.com", "https://*.example.com:8443", "http://localhost:3000", "https://x.example.com"},
		RateLimit: RateLimits{
			Handshakes:       &Rate{PerSecond: 20, Burst: 40},
			ConnectionsPerIP: 10,
			Messages:         &Rate{PerSecond: 100, Burst: 200},
			MessagesPerIP:    &Rate{PerSecond: 500.0 / 60, Burst: 9}, // burst omitted: one second's worth, rounded up
			Bytes:            &Rate{PerSecond: 1 << 20, Burst: 4 << 20},
			Frames:           &Rate{PerSecond: 1000, Burst: 2000},
			OnExceed:         "throttle",
		},
		PermessageDeflate:   Deflate{Enabled: true, ContextTakeover: true},
		MaxRequestBodyBytes: 10 * MiB,
		HTTPResponseTimeout: time.Minute,
	}
	if !reflect.DeepEqual(cfg.Defaults, defaults) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg.Defaults, defaults)
	}
	if len(cfg.Routes) != 3 {
		t.Fatalf("%d routes", len(cfg.Routes))
	}

	chat := cfg.Routes[0]
	if chat.Name != "chat" || chat.Host != "chat.example.com" || chat.Path != "/ws" || !chat.StripPrefix ||
		chat.Balance != "least_conn" || chat.AllowPlain || chat.Line != 43 {
		t.Errorf("chat = %+v", chat)
	}
	if len(chat.Upstreams) != 2 {
		t.Fatalf("chat upstreams = %+v", chat.Upstreams)
	}
	u0, u1 := chat.Upstreams[0], chat.Upstreams[1]
	if u0.Raw != "ws://127.0.0.1:9001/ws" || u0.URL.Host != "127.0.0.1:9001" || u0.URL.Path != "/ws" || u0.Weight != 1 || u0.Builtin != "" {
		t.Errorf("upstream 0 = %+v", u0)
	}
	if u1.Raw != "wss://backend.internal:9443/chat" || u1.URL.Scheme != "wss" || u1.Weight != 3 {
		t.Errorf("upstream 1 = %+v", u1)
	}
	if want := (UpstreamTLS{CA: "testdata/config/tls/example-cert.pem", ServerName: "backend.internal"}); chat.UpstreamTLS != want {
		t.Errorf("upstream_tls = %+v", chat.UpstreamTLS)
	}
	if !slices.Equal(chat.Subprotocols, []string{"chat.v2", "chat.v1"}) {
		t.Errorf("subprotocols = %v", chat.Subprotocols)
	}
	if want := map[string]string{"X-Gateway": "wsgate", "X-Tenant-Id": "42"}; !reflect.DeepEqual(chat.SetHeaders, want) {
		t.Errorf("set_headers = %v", chat.SetHeaders)
	}
	chatWant := defaults
	chatWant.IdleTimeout = 10 * time.Minute
	chatWant.MaxFrameBytes = 64 * KiB
	chatWant.MaxMessageBytes = 64 * KiB
	chatWant.Origins = nil // origins: [] on the route: any origin again
	chatWant.RateLimit.Messages = &Rate{PerSecond: 20, Burst: 40}
	chatWant.PermessageDeflate = Deflate{Enabled: false, ContextTakeover: true} // merged key by key
	chatWant.RateLimit.Bytes = nil                                              // "unlimited" lifts the default
	if !reflect.DeepEqual(chat.Settings, chatWant) {
		t.Errorf("chat settings:\n got %+v\nwant %+v", chat.Settings, chatWant)
	}

	wild := cfg.Routes[1]
	if wild.Host != "*.example.com" || wild.Path != "/" || wild.Balance != Cookie || wild.Upstreams[0].URL.Path != "" ||
		wild.HTTP != HTTPProxy || wild.StickyCookie != "app_sticky" {
		t.Errorf("wild = %+v", wild)
	}
	// http:// names the same server as ws://; Raw keeps what was written.
	if u := wild.Upstreams[0]; u.URL.String() != "ws://127.0.0.1:9002" || u.Raw != "http://127.0.0.1:9002" {
		t.Errorf("wild upstream = %+v (URL %v)", u, u.URL)
	}
	if chat.HTTP != HTTPReject || chat.StickyCookie != DefaultStickyCookie {
		t.Errorf("chat http = %q, sticky_cookie = %q: want the defaults", chat.HTTP, chat.StickyCookie)
	}
	wildWant := defaults
	wildWant.PingInterval, wildWant.PongTimeout = 0, 0
	wildWant.RateLimit.Frames = &Rate{PerSecond: 10, Burst: 10}
	wildWant.RateLimit.OnExceed = "close"
	wildWant.RateLimit.Requests = &Rate{PerSecond: 50, Burst: 100}
	wildWant.MaxRequestBodyBytes = 2 * MiB
	wildWant.HTTPResponseTimeout = 30 * time.Second
	if !reflect.DeepEqual(wild.Settings, wildWant) {
		t.Errorf("wild settings:\n got %+v\nwant %+v", wild.Settings, wildWant)
	}

	demo := cfg.RouteByName("demo")
	if demo != cfg.Routes[2] || demo.Upstreams[0].Builtin != "echo" || demo.Upstreams[0].Raw != "builtin:echo" {
		t.Errorf("demo = %+v", demo)
	}
	if !reflect.DeepEqual(demo.Settings, defaults) {
		t.Errorf("demo settings:\n got %+v\nwant %+v", demo.Settings, defaults)
	}
	// Routes hold copies: changing one must not change another.
	demo.Settings.Origins[0] = "changed"
	if cfg.Defaults.Origins[0] != "https://app.example.com" || wild.Settings.Origins[0] != "https://app.example.com" {
		t.Error("routes share the origins slice")
	}
	if cfg.RouteByName("nope") != nil {
		t.Error("RouteByName found a route that does not exist")
	}
}

func TestConfigTLS(t *testing.T) {
	t.Parallel()
	cfg, err := Load("testdata/config/tls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.TLSEnabled() {
		t.Error("TLS off")
	}
	want := TLSConfig{
		ACME: &ACMEConfig{
			Email:      "ops@example.com",
			CA:         "http://127.0.0.1:14000/dir",
			CARoot:     "testdata/config/tls/example-cert.pem",
			AgreeTerms: true,
			Storage:    "./wsgate-data/certs",
		},
		Certificates: []CertFile{{
			Cert:     "testdata/config/tls/example-cert.pem",
			Key:      "testdata/config/tls/example-key.pem",
			DNSNames: []string{"example.com", "*.example.com", "chat.example.com"},
		}},
		MinVersion: "1.3",
	}
	if !reflect.DeepEqual(cfg.TLS, want) {
		t.Errorf("tls:\n got %+v %+v\nwant %+v %+v", cfg.TLS, cfg.TLS.ACME, want, want.ACME)
	}
	if !cfg.RouteByName("chat").AllowPlain {
		t.Error("allow_plain lost")
	}
}

func TestConfigACMEDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("mem.yaml", []byte(`
server: {tls_listen: ":8443"}
tls: {acme: {email: ops@example.com, agree_terms: true}}
routes: [{name: a, host: a.example.com, upstreams: [builtin:echo]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := ACMEConfig{Email: "ops@example.com", CA: DefaultACMECA, AgreeTerms: true, Storage: DefaultACMEStorage}
	if *cfg.TLS.ACME != want || cfg.TLS.MinVersion != "1.2" {
		t.Errorf("acme = %+v, min_version %q", *cfg.TLS.ACME, cfg.TLS.MinVersion)
	}
}

func TestConfigAnchors(t *testing.T) {
	t.Parallel()
	cfg, err := Load("testdata/config/anchors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	one, two := cfg.RouteByName("one"), cfg.RouteByName("two")
	if one == nil || two == nil || two.Path != "/two" || len(two.Upstreams) != 1 || two.Settings.IdleTimeout != time.Minute {
		t.Fatalf("routes = %+v %+v", one, two)
	}
	if f := two.Settings.RateLimit.Frames; f == nil || f.PerSecond != 10 || f.Burst != 20 {
		t.Errorf("frames = %v", f)
	}
	if m := two.Settings.RateLimit.Messages; m == nil || m.PerSecond != 10 {
		t.Errorf("messages = %v", m)
	}
}

func TestConfigLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load("testdata/config/does-not-exist.yaml")
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("err = %#v", err)
	}
	if want := "testdata/config/does-not-exist.yaml: cannot read config: no such file or directory"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
}

func TestConfigErrorFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "cfg.yaml", Line: 12, Key: "routes[0].uptreams", Msg: "unknown key"}, "cfg.yaml:12: routes[0].uptreams: unknown key"},
		{Error{File: "cfg.yaml", Line: 3, Key: "", Msg: "YAML syntax: bad"}, "cfg.yaml:3: YAML syntax: bad"},
		{Error{File: "cfg.yaml", Line: 0, Key: "routes", Msg: "required"}, "cfg.yaml: routes: required"},
		{Error{File: "cfg.yaml", Line: 0, Key: "", Msg: "cannot read"}, "cfg.yaml: cannot read"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	errs := Errors{{File: "a", Line: 1, Key: "x", Msg: "one"}, {File: "a", Line: 2, Key: "y", Msg: "two"}}
	if got := errs.Error(); got != "a:1: x: one\na:2: y: two" {
		t.Errorf("Errors.Error() = %q", got)
	}
	var one *Error
	if !errors.As(error(errs), &one) || one.Msg != "one" {
		t.Errorf("errors.As(*Error) = %v", one)
	}
}

func TestConfigYAMLErrorHasLine(t *testing.T) {
	t.Parallel()
	_, err := Parse("x.yaml", []byte("routes:\n  - name: a\n   bad: indent\n"))
	if err == nil || !regexp.MustCompile(`^x\.yaml:\d+: YAML syntax: `).MatchString(err.Error()) {
		t.Errorf("err = %v", err)
	}
}

// TestConfigAllErrorsInLineOrder spells out the many-errors case in Go as
// well: a file with problems everywhere reports each of them, sorted by line.
func TestConfigAllErrorsInLineOrder(t *testing.T) {
	t.Parallel()
	_, err := Load("testdata/config/errors/many_errors.yaml")
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v", err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, strconv.Itoa(e.Line)+" "+e.Key)
	}
	want := []string{"5 routes[0].path", "6 routes[0].upstreams[0]", "7 routes[0].balance", "8 routes[1].name",
		"10 routes[1].max_frame_bytes", "12 server.listen", "14 log.level", "16 defaults.idle_timeout",
		"17 defaults.rate_limit.messages"}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestConfigOriginAllowed(t *testing.T) {
	t.Parallel()
	s := RouteSettings{Origins: []string{"https://app.example.com", "https://*.example.org", "http://localhost:3000"}}
	for origin, want := range map[string]bool{
		"https://app.example.com":     true,
		"https://APP.example.com:443": true,
		"http://app.example.com":      false,
		"https://app.example.com:444": false,
		"https://a.example.org":       true,
		"https://a.b.example.org":     true,
		"https://example.org":         false,
		"https://evilexample.org":     false,
		"https://a.example.org:8443":  false,
		"http://localhost:3000":       true,
		"http://localhost":            false,
		"null":                        false,
		"":                            false,
	} {
		if got := s.OriginAllowed(origin); got != want {
			t.Errorf("OriginAllowed(%q) = %v, want %v", origin, got, want)
		}
	}
	if !(&RouteSettings{}).OriginAllowed("https://anything.example") {
		t.Error("empty origins must allow any origin")
	}
}

func TestConfigEffectiveMaxFrameBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ frame, message, want Size }{
		{1 * MiB, 4 * MiB, 1 * MiB},
		{1 * MiB, 64 * KiB, 64 * KiB},
		{1 * MiB, 10, 125},
		{125, 10, 125},
	} {
		s := RouteSettings{MaxFrameBytes: tc.frame, MaxMessageBytes: tc.message}
		if got := s.EffectiveMaxFrameBytes(); got != tc.want {
			t.Errorf("frame %v message %v: got %v, want %v", tc.frame, tc.message, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Size
		err  string
	}{
		{"0", 0, ""},
		{"4096", 4096, ""},
		{"512B", 512, ""},
		{"64KiB", 64 << 10, ""},
		{"1MiB", 1 << 20, ""},
		{"2GiB", 2 << 30, ""},
		{"1.5MiB", 3 << 19, ""},
		{"0.5KiB", 512, ""},
		{"1.25GiB", 5 << 28, ""},
		{"8589934591GiB", 8589934591 << 30, ""},
		{"9223372036854775807", math.MaxInt64, ""},
		{"9223372036854775808", 0, "too large"},
		{"8589934592GiB", 0, "too large"},
		{"0.1KiB", 0, "not a whole number of bytes"},
		{"1.5", 0, "not a whole number of bytes"},
		{"1.5B", 0, "not a whole number of bytes"},
		{"", 0, "empty size"},
		{"-1", 0, "must not be negative"},
		{"-1MiB", 0, "must not be negative"},
		{"64KB", 0, `unknown unit "KB"`},
		{"1mib", 0, `unknown unit "mib"`},
		{"1TiB", 0, `unknown unit "TiB"`},
		{"64 KiB", 0, "no spaces"},
		{" 64KiB", 0, "no spaces"},
		{"KiB", 0, "want a number"},
		{".5KiB", 0, "want a number"},
		{"1.KiB", 0, "want a number"},
		{"1.2.3KiB", 0, "want a number"},
		{"0x10", 0, "unknown unit"},
		{"1e3", 0, "unknown unit"},
		{"+1KiB", 0, "unknown unit"},
		{strings.Repeat("9", 41) + "B", 0, "want a number"},
	} {
		got, err := ParseSize(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseSize(%q) = %d, %v; want error containing %q", tc.in, got, err, tc.err)
		}
	}
}

func TestSizeString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   Size
		want string
	}{
		{0, "0B"},
		{125, "125B"},
		{1000, "1000B"},
		{1024, "1KiB"},
		{1536, "1.5KiB"},
		{64 << 10, "64KiB"},
		{1 << 20, "1MiB"},
		{3 << 19, "1.5MiB"},
		{5 << 28, "1.25GiB"},
		{1<<20 + 1, "1048577B"}, // not exact with two decimals in MiB or KiB
		{4 << 30, "4GiB"},
		{-5, "-5B"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
		}
		if tc.in >= 0 {
			if back, err := ParseSize(tc.in.String()); err != nil || back != tc.in {
				t.Errorf("round trip of %d: %d, %v", int64(tc.in), back, err)
			}
		}
	}
	var s Size
	if err := s.UnmarshalText([]byte("2MiB")); err != nil || s != 2*MiB {
		t.Errorf("UnmarshalText = %v, %v", s, err)
	}
	if b, _ := s.MarshalText(); string(b) != "2MiB" {
		t.Errorf("MarshalText = %s", b)
	}
	if err := s.UnmarshalText([]byte("2MB")); err == nil {
		t.Error("UnmarshalText accepted 2MB")
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want float64
		err  string
	}{
		{"20/s", 20, ""},
		{"100/m", 100.0 / 60, ""},
		{"5/h", 5.0 / 3600, ""},
		{"0.5/s", 0.5, ""},
		{"1000000/s", 1e6, ""},
		{"20/d", 0, "unit must be /s, /m or /h"},
		{"20/sec", 0, "unit must be"},
		{"20/S", 0, "unit must be"},
		{"20", 0, "want N/s"},
		{"", 0, "want N/s"},
		{"x/s", 0, "want a number"},
		{"/s", 0, "want a number"},
		{"-1/s", 0, "want a number"},
		{"1e3/s", 0, "want a number"},
		{"inf/s", 0, "want a number"},
		{"NaN/s", 0, "want a number"},
		{"0/s", 0, "greater than zero"},
		{"0.0/m", 0, "greater than zero"},
		{"20 /s", 0, "no spaces"},
		{"20/s/s", 0, "unit must be"},
		{"1MiB/s", 0, "want a number"},
	} {
		got, err := ParseRate(tc.in)
		switch {
		case tc.err == "" && (err != nil || math.Abs(got-tc.want) > 1e-12*tc.want):
			t.Errorf("ParseRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseRate(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
		}
	}
}

func TestParseByteRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want float64
		err  string
	}{
		{"1MiB/s", 1 << 20, ""},
		{"64KiB/s", 64 << 10, ""},
		{"4096/s", 4096, ""},
		{"512B/s", 512, ""},
		{"60MiB/m", 1 << 20, ""},
		{"1.5KiB/s", 1536, ""},
		{"1MB/s", 0, `unknown unit "MB"`},
		{"0B/s", 0, "greater than zero"},
		{"-1KiB/s", 0, "must not be negative"},
		{"1MiB/d", 0, "unit must be"},
		{"1MiB", 0, "want N/s"},
		{"0.1KiB/s", 0, "not a whole number of bytes"},
	} {
		got, err := ParseByteRate(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseByteRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseByteRate(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
		}
	}
}

func TestRateString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r           Rate
		want, wantB string
	}{
		{Rate{20, 40}, "20/s burst 40", "20B/s burst 40B"},
		{Rate{100.0 / 60, 2}, "100/m burst 2", "100B/m burst 2B"},
		{Rate{5.0 / 3600, 1}, "5/h burst 1", "5B/h burst 1B"},
		{Rate{0.5, 1}, "30/m burst 1", "30B/m burst 1B"},
		{Rate{1 << 20, 4 << 20}, "1048576/s burst 4194304", "1MiB/s burst 4MiB"},
		{Rate{1.0 / 7200, 1}, "0.0001388888888888889/s burst 1", "0.0001388888888888889/s burst 1B"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.r, got, tc.want)
		}
		if got := tc.r.BytesString(); got != tc.wantB {
			t.Errorf("%#v.BytesString() = %q, want %q", tc.r, got, tc.wantB)
		}
	}
	// String output parses back to the same rate.
	for _, in := range []string{"20/s", "100/m", "5/h", "7/m"} {
		r, _ := ParseRate(in)
		s := Rate{PerSecond: r, Burst: 1}.String()
		back, err := ParseRate(strings.TrimSuffix(s, " burst 1"))
		if err != nil || math.Abs(back-r) > 1e-12 {
			t.Errorf("%s -> %s -> %v, %v", in, s, back, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"0", 0, ""},
		{"0s", 0, ""},
		{"10s", 10 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"1.5h", 90 * time.Minute, ""},
		{"-0s", 0, ""},
		{"-1s", 0, "must not be negative"},
		{"10 s", 0, "want Go syntax"},
		{"30", 0, "missing unit"},
		{"1.5", 0, "missing unit"},
		{"1d", 0, "want Go syntax"},
		{"", 0, "want Go syntax"},
		{"soon", 0, "want Go syntax"},
	} {
		got, err := yamlwalk.ParseDuration(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("yamlwalk.ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("yamlwalk.ParseDuration(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob("testdata/config/*/*.yaml")
	more, _ := filepath.Glob("testdata/config/*.yaml")
	files = append(append(files, more...), "../../config.example.yaml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("routes: [{name: a, upstreams: [builtin:echo]}]"))
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("routes:\n  - <<: *x\n"))
	f.Add([]byte("\xff\xfe"))
	f.Add([]byte("server: {session_id_header: X-S}\ndefaults: {events: {url: \"http://x/e\", on: [connect], timeout: 1s}}\nroutes: [{name: a, upstreams: [builtin:echo], events: none}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned with an error")
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v is not a non-empty Errors", err, err)
			}
			for i, e := range errs {
				if e.File != "fuzz.yaml" || e.Line < 0 || i > 0 && e.Line < errs[i-1].Line {
					t.Fatalf("bad error list:\n%v", err)
				}
			}
			return
		}
		if len(cfg.Routes) == 0 {
			t.Fatal("valid config without routes")
		}
		seen := map[string]bool{}
		for _, r := range cfg.Routes {
			if r.Name == "" || seen[r.Name] || len(r.Upstreams) == 0 || !strings.HasPrefix(r.Path, "/") {
				t.Fatalf("invalid route accepted: %+v", r)
			}
			seen[r.Name] = true
			s := r.Settings
			if s.MaxFrameBytes < 125 || s.MaxMessageBytes <= 0 || s.IdleTimeout <= 0 || s.PingInterval > 0 && s.PongTimeout <= 0 {
				t.Fatalf("invalid settings accepted: %+v", s)
			}
			if e := s.Events; e != nil && (e.URL == "" || e.Timeout <= 0) {
				t.Fatalf("invalid events accepted: %+v", e)
			}
			if b := s.RateLimit.Bytes; b != nil && Size(b.Burst) < s.EffectiveMaxFrameBytes() {
				t.Fatalf("bytes burst %d below the frame cap %d", b.Burst, s.EffectiveMaxFrameBytes())
			}
			for _, u := range r.Upstreams {
				if u.Weight < 1 || (u.URL == nil) != (u.Builtin != "") {
					t.Fatalf("invalid upstream accepted: %+v", u)
				}
			}
		}
		if cfg.Server.CloseSpread >= cfg.Server.ShutdownGrace {
			t.Fatalf("close_spread %v >= shutdown_grace %v", cfg.Server.CloseSpread, cfg.Server.ShutdownGrace)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1", "512B", "64KiB", "1MiB", "1.5MiB", "2GiB", "0.1KiB", "-1", "9223372036854775807",
		"8589934592GiB", "1.00000000000000000001GiB", "", "KiB", "1..5MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, v)
		}
		back, err := ParseSize(v.String())
		if err != nil || back != v {
			t.Fatalf("ParseSize(%q) = %d; String %q parses to %d, %v", s, v, v.String(), back, err)
		}
	})
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"20/s", "100/m", "5/h", "0.5/s", "0/s", "x/s", "20/d", "1MiB/s", "1.5KiB/m",
		"99999999999999999999999999999999999999/h", "0.0000000000000000000000000000000000001/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseRate(s); err == nil && (!(r > 0) || math.IsInf(r, 0)) {
			t.Fatalf("ParseRate(%q) = %v", s, r)
		}
		if r, err := ParseByteRate(s); err == nil && (!(r > 0) || math.IsInf(r, 0)) {
			t.Fatalf("ParseByteRate(%q) = %v", s, r)
		}
	})
}
