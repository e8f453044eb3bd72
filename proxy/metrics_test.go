package proxy

// Tests of what an operator watches (docs/operations.md): /metrics parsed
// with Prometheus' own text parser after a scripted workload whose every
// count is known, the Grafana dashboard against the metrics it queries, the
// access log line of a known session, and the relay's throughput with and
// without a scraped admin listener.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"wsgate/frame"
	"wsgate/internal/balance"
	"wsgate/internal/config"
	"wsgate/internal/echo"
	"wsgate/internal/metrics"
	"wsgate/internal/relay"
	"wsgate/internal/wstest"
)

// ---- scraping ----

// scrape fetches /metrics from the admin listener and parses it with the
// Prometheus text parser.
func scrape(t testing.TB, adminAddr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// seriesKey names one series: name{label="value",...}, labels sorted.
func seriesKey(name string, labels ...string) string {
	var ls []string
	for i := 0; i+1 < len(labels); i += 2 {
		ls = append(ls, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	sort.Strings(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

// wsgateSeries flattens the wsgate_* families into series → value. A
// histogram contributes its sample count as NAME_count (and is checked
// for consistency: the +Inf bucket holds every sample).
func wsgateSeries(t testing.TB, mfs map[string]*dto.MetricFamily) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "wsgate_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName(), lp.GetValue())
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[seriesKey(name, labels...)] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[seriesKey(name, labels...)] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[seriesKey(name+"_count", labels...)] = float64(h.GetSampleCount())
				var prev uint64
				for _, b := range h.GetBucket() {
					if b.GetCumulativeCount() < prev {
						t.Errorf("%s%v: buckets not cumulative", name, labels)
					}
					prev = b.GetCumulativeCount()
				}
				if prev > h.GetSampleCount() || h.GetSampleSum() < 0 {
					t.Errorf("%s%v: buckets %d, count %d, sum %v", name, labels, prev, h.GetSampleCount(), h.GetSampleSum())
				}
			default:
				t.Errorf("%s: unexpected type %v", name, mf.GetType())
			}
		}
	}
	return out
}

// diffSeries reports every series whose value differs from want, or that
// is missing or unexpected.
func diffSeries(t testing.TB, when string, got, want map[string]float64) {
	t.Helper()
	keys := slices.Sorted(maps.Keys(want))
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			t.Errorf("%s: %s missing, want %v", when, k, w)
		case !wok:
			t.Errorf("%s: unexpected %s = %v", when, k, g)
		case g != w:
			t.Errorf("%s: %s = %v, want %v", when, k, g, w)
		}
	}
}

// ---- the workload ----

// metricsModel is what /metrics must show, kept up to date by the test as
// it drives the workload.
type metricsModel map[string]float64

func (m metricsModel) add(v float64, name string, labels ...string) {
	m[seriesKey(name, labels...)] += v
}

func (m metricsModel) set(v float64, name string, labels ...string) {
	m[seriesKey(name, labels...)] = v
}

// relayed records one session's data messages and payload bytes in one
// direction.
func (m metricsModel) relayed(route, dir string, messages, bytes int) {
	m.add(float64(messages), "wsgate_messages_total", "route", route, "direction", dir)
	m.add(float64(bytes), "wsgate_bytes_total", "route", route, "direction", dir)
	// No compression in this workload (deflate_e2e_test.go counts it).
	m.add(0, "wsgate_compressed_messages_total", "route", route, "direction", dir)
	m.add(0, "wsgate_inflated_bytes_total", "route", route, "direction", dir)
}

// ended records a finished session: the Close code each leg received.
func (m metricsModel) ended(route, toClient, toUpstream string) {
	m.add(1, "wsgate_close_total", "route", route, "side", "client", "code", toClient)
	m.add(1, "wsgate_close_total", "route", route, "side", "upstream", "code", toUpstream)
}

// started records a session established after one dial attempt.
func (m metricsModel) started(route string) {
	m.add(1, "wsgate_sessions_total", "route", route)
	m.add(1, "wsgate_upstream_dial_seconds_count", "route", route)
}

// echoMessages are what a normal session sends: a text message, a binary
// one, and a text message in two fragments (one message, two frames).
var echoMessages = []struct {
	fin  bool
	op   frame.Opcode
	data string
}{
	{true, frame.OpText, "hello"},
	{true, frame.OpBinary, strings.Repeat("\x00\xff", 500)},
	{false, frame.OpText, "abc"},
	{true, frame.OpContinuation, "defg"},
}

const (
	echoMessageCount = 3
	echoMessageBytes = 5 + 1000 + 7
)

// sendEchoMessages sends echoMessages on p and checks the echo of each
// frame.
func sendEchoMessages(t testing.TB, p *wstest.Peer) {
	t.Helper()
	for _, m := range echoMessages {
		p.Send(m.fin, m.op, []byte(m.data))
	}
	for _, m := range echoMessages {
		f := p.Next()
		if f.Fin != m.fin || f.Opcode != m.op || string(f.Payload) != m.data {
			t.Fatalf("echo: got %v, want fin=%v %v %q", f, m.fin, m.op, m.data)
		}
	}
}

// closeNormally runs the client's close handshake (1000 relayed both ways)
// and waits for the gateway's FIN.
func closeNormally(t testing.TB, p *wstest.Peer) {
	t.Helper()
	p.SendClose(frame.CloseNormal, "bye")
	p.ExpectClose(1000, "bye")
	p.ExpectEOF(relayIO)
}

// TestMetricsWorkload drives a scripted workload — sessions closed
// normally, a client protocol error, an upstream that vanishes, sessions
// left open, handshakes rejected for four reasons, an unreachable upstream
// — and checks that /metrics shows exactly those counts, series by series,
// while sessions are open and after they ended.
func TestMetricsWorkload(t *testing.T) {
	t.Parallel()
	// An upstream that echoes one message, adds one of its own, and then
	// drops its connection without a Close frame.
	vanishing := newRawUpstream(t, func(p *wstest.Peer) {
		f, err := p.Read()
		if err != nil {
			return
		}
		out := frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: f.Opcode}, f.Payload)
		out = frame.AppendFrame(out, frame.Header{Fin: true, Opcode: frame.OpText}, []byte("bye!"))
		_ = p.WriteErr(out)
	})
	greeter := newUpstream(t, "greeter", accept101(&opts101{greet: true}))
	dead, dead2, dead3 := deadURL(t), deadURL(t), deadURL(t)
	gw := startAdminGateway(t, fmt.Sprintf(`server:
  shutdown_grace: 3s
  close_spread: 0s
defaults:
  close_timeout: 300ms
  ping_interval: 0s
routes:
  - {name: echo, path: /echo, upstreams: ["builtin:echo"]}
  - {name: strict, path: /strict, origins: ["https://ok.example"], upstreams: ["builtin:echo"]}
  - {name: gone, path: /gone, upstreams: [%q]}
  - {name: dead, path: /dead, upstreams: [%q]}
  - {name: greet, path: /greet, upstreams: [%q]}
  - {name: dead2, path: /dead2, upstreams: [%q, %q]}
`, vanishing.URL, dead, greeter.URL, dead2, dead3), false)

	want := metricsModel{}
	// Every configured route is reported from the start, with zeros; every
	// upstream is up until a dial to it fails.
	for route, upstream := range map[string]string{"echo": "builtin:echo", "strict": "builtin:echo", "gone": vanishing.URL, "dead": dead, "greet": greeter.URL} {
		want.set(0, "wsgate_sessions_total", "route", route)
		want.set(0, "wsgate_sessions_active", "route", route)
		want.relayed(route, metrics.DirClientToUpstream, 0, 0)
		want.relayed(route, metrics.DirUpstreamToClient, 0, 0)
		want.set(1, "wsgate_upstream_up", "route", route, "upstream", upstream)
	}
	want.set(0, "wsgate_sessions_total", "route", "dead2")
	want.set(0, "wsgate_sessions_active", "route", "dead2")
	want.relayed("dead2", metrics.DirClientToUpstream, 0, 0)
	want.relayed("dead2", metrics.DirUpstreamToClient, 0, 0)
	want.set(1, "wsgate_upstream_up", "route", "dead2", "upstream", dead2)
	want.set(1, "wsgate_upstream_up", "route", "dead2", "upstream", dead3)
	diffSeries(t, "before any traffic", wsgateSeries(t, scrape(t, gw.AdminAddr)), want)

	// Three sessions closed normally: 1000 relayed both ways.
	const normal = 3
	for range normal {
		p := wstest.DialRaw(t, gw.Addr, "/echo")
		sendEchoMessages(t, p)
		closeNormally(t, p)
		want.started("echo")
		want.relayed("echo", metrics.DirClientToUpstream, echoMessageCount, echoMessageBytes)
		want.relayed("echo", metrics.DirUpstreamToClient, echoMessageCount, echoMessageBytes)
		want.ended("echo", "1000", "1000")
	}

	// A client protocol error (an unmasked frame) after one good message:
	// the client gets 1002, the upstream 1001.
	{
		p := wstest.DialRaw(t, gw.Addr, "/echo")
		p.Send(true, frame.OpText, []byte("hello"))
		if f := p.Next(); string(f.Payload) != "hello" {
			t.Fatalf("echo: %v", f)
		}
		p.Write(frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpText}, []byte("unmasked")))
		if code, _, _ := p.ReadClose(); code != 1002 {
			t.Errorf("client protocol error: client got %d, want 1002", code)
		}
		p.Conn.Close()
		want.started("echo")
		want.relayed("echo", metrics.DirClientToUpstream, 1, 5)
		want.relayed("echo", metrics.DirUpstreamToClient, 1, 5)
		want.ended("echo", "1002", "1001")
	}

	// The upstream vanishes after two messages: the client gets
	// upstream_failure_code (1014), the upstream no Close at all.
	{
		p := wstest.DialRaw(t, gw.Addr, "/gone")
		p.Send(true, frame.OpBinary, []byte("1234567"))
		if f := p.Next(); string(f.Payload) != "1234567" {
			t.Fatalf("echo: %v", f)
		}
		if f := p.Next(); string(f.Payload) != "bye!" {
			t.Fatalf("upstream's own message: %v", f)
		}
		if code, _, _ := p.ReadClose(); code != 1014 {
			t.Errorf("upstream gone: client got %d, want 1014", code)
		}
		p.Conn.Close()
		want.started("gone")
		want.relayed("gone", metrics.DirClientToUpstream, 1, 7)
		want.relayed("gone", metrics.DirUpstreamToClient, 2, 7+4)
		want.ended("gone", "1014", "none")
	}
	waitFor(t, "the sessions to end", func() bool { return gw.Sessions() == 0 })
	diffSeries(t, "after the finished sessions", wsgateSeries(t, scrape(t, gw.AdminAddr)), want)

	// Two sessions left open, each after one message echoed (and one
	// greeting from the greeter): they are active, and what they relayed so
	// far is counted already.
	var open []*wstest.Peer
	for _, route := range []string{"echo", "greet"} {
		p := wstest.DialRaw(t, gw.Addr, "/"+route)
		if route == "greet" {
			if f := p.Next(); string(f.Payload) != "greeter" {
				t.Fatalf("greeting: %v", f)
			}
			want.relayed(route, metrics.DirUpstreamToClient, 1, len("greeter"))
		}
		p.Send(true, frame.OpText, []byte("live"))
		if f := p.Next(); string(f.Payload) != "live" {
			t.Fatalf("echo: %v", f)
		}
		open = append(open, p)
		want.started(route)
		want.relayed(route, metrics.DirClientToUpstream, 1, 4)
		want.relayed(route, metrics.DirUpstreamToClient, 1, 4)
		want.set(1, "wsgate_sessions_active", "route", route)
	}
	diffSeries(t, "with two sessions open", wsgateSeries(t, scrape(t, gw.AdminAddr)), want)
	for i, p := range open {
		closeNormally(t, p)
		route := []string{"echo", "greet"}[i]
		want.ended(route, "1000", "1000")
		want.set(0, "wsgate_sessions_active", "route", route)
	}

	// Rejected handshakes, none of which dials.
	reject := func(req string, status int, route string) {
		t.Helper()
		rc := exchange(t, gw.Addr, req)
		if rc.resp.StatusCode != status {
			t.Fatalf("%q: %s %q, want %d", firstLine(req), rc.resp.Status, rc.body, status)
		}
		want.add(1, "wsgate_handshake_rejected_total", "route", route, "status", fmt.Sprint(status))
	}
	reject(upgradeRequest(gw.Addr, "/nowhere"), 404, "")
	reject(upgradeRequest(gw.Addr, "/elsewhere/x"), 404, "")
	reject("GET /echo HTTP/1.1\r\nHost: "+gw.Addr+"\r\n\r\n", 426, "echo")
	reject(upgradeRequest(gw.Addr, "/strict", "Origin: https://evil.example"), 403, "strict")

	// The unreachable upstream, last: it stays down for the first back-off
	// (balance.BackoffMin) from its first failed dial, and the scrape below must
	// fall inside it. Each handshake makes one attempt (the route has one
	// upstream), and each attempt is timed.
	firstFail := time.Now()
	for range 2 {
		reject(upgradeRequest(gw.Addr, "/dead"), 502, "dead")
		want.add(1, "wsgate_upstream_dial_seconds_count", "route", "dead")
	}
	want.set(0, "wsgate_upstream_up", "route", "dead", "upstream", dead)
	// A route with two unreachable upstreams: one handshake, two attempts.
	reject(upgradeRequest(gw.Addr, "/dead2"), 502, "dead2")
	want.add(2, "wsgate_upstream_dial_seconds_count", "route", "dead2")
	want.set(0, "wsgate_upstream_up", "route", "dead2", "upstream", dead2)
	want.set(0, "wsgate_upstream_up", "route", "dead2", "upstream", dead3)

	waitFor(t, "the sessions to end", func() bool { return gw.Sessions() == 0 })
	got := wsgateSeries(t, scrape(t, gw.AdminAddr))
	if elapsed := time.Since(firstFail); elapsed >= balance.BackoffMin {
		// Too slow a machine to see the back-off: the upstream may be
		// back in rotation already. Everything else is still exact.
		t.Logf("scrape %v after the failed dial, past the %v back-off: upstream_up not checked", elapsed, balance.BackoffMin)
		for k := range want {
			if strings.HasPrefix(k, "wsgate_upstream_up{") && strings.Contains(k, `route="dead`) {
				delete(got, k)
				delete(want, k)
			}
		}
	}
	diffSeries(t, "at the end", got, want)

	// The access log agrees with the close counts.
	lines := gw.Logs.Lines(`"event":"session"`)
	if len(lines) != normal+4 {
		t.Errorf("%d access log lines, want %d", len(lines), normal+4)
	}
	for _, l := range gw.Logs.Lines(`"event":"session"`, `"route":"gone"`) {
		for _, kv := range []string{`"client_close_code":"1014"`, `"upstream_close_code":"none"`, `"closed_by":"upstream"`, `"reason":"upstream_gone"`} {
			if !strings.Contains(l, kv) {
				t.Errorf("access log of the gone session lacks %s: %s", kv, l)
			}
		}
	}
}

// TestMetricsMonotonic scrapes without pause while sessions start and end:
// a session's tallies move from the live set to the finished totals in one
// step, so no counter ever goes backwards (Prometheus would read that as a
// reset and report a burst of traffic).
func TestMetricsMonotonic(t *testing.T) {
	t.Parallel()
	gw := startAdminGateway(t, e2eHead+"  ping_interval: 0s\nroutes:\n  - {name: echo, path: /echo, upstreams: [\"builtin:echo\"]}\n", false)
	const clients, perClient = 4, 15
	stop := make(chan struct{})
	scraped := make(chan error, 1)
	go func() {
		prev := map[string]float64{}
		for n := 0; ; n++ {
			select {
			case <-stop:
				scraped <- nil
				return
			default:
			}
			mfs, err := gw.metrics.Registry.Gather()
			if err != nil {
				scraped <- err
				return
			}
			for _, mf := range mfs {
				if !strings.HasSuffix(mf.GetName(), "_total") || !strings.HasPrefix(mf.GetName(), "wsgate_") {
					continue
				}
				for _, m := range mf.GetMetric() {
					k := mf.GetName() + fmt.Sprint(m.GetLabel())
					v := m.GetCounter().GetValue()
					if v < prev[k] {
						scraped <- fmt.Errorf("scrape %d: %s went from %v to %v", n, k, prev[k], v)
						return
					}
					prev[k] = v
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perClient {
				p, err := wstest.DialRawErr(gw.Addr, "/echo")
				if err != nil {
					t.Error(err)
					return
				}
				p.T = t
				p.Send(true, frame.OpBinary, []byte("12345678"))
				p.Next()
				// An empty Close: relayed as one, and counted as 1005
				// (RFC 6455 §7.1.5: "no status code was present").
				p.Send(true, frame.OpClose, nil)
				p.ReadClose()
				p.Conn.Close()
			}
		}()
	}
	wg.Wait()
	waitFor(t, "the sessions to end", func() bool { return gw.Sessions() == 0 })
	close(stop)
	if err := <-scraped; err != nil {
		t.Fatal(err)
	}
	got := wsgateSeries(t, scrape(t, gw.AdminAddr))
	const n = clients * perClient
	for k, v := range map[string]float64{
		seriesKey("wsgate_sessions_total", "route", "echo"):                                           n,
		seriesKey("wsgate_messages_total", "route", "echo", "direction", metrics.DirClientToUpstream): n,
		seriesKey("wsgate_bytes_total", "route", "echo", "direction", metrics.DirUpstreamToClient):    8 * n,
		seriesKey("wsgate_close_total", "route", "echo", "side", "client", "code", "1005"):            n,
		seriesKey("wsgate_close_total", "route", "echo", "side", "upstream", "code", "1005"):          n,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// TestMetricsNamesAndLabels: every metric docs/operations.md names is exposed with
// exactly the documented labels and type, with help text.
func TestMetricsNamesAndLabels(t *testing.T) {
	t.Parallel()
	gw := startAdminGateway(t, e2eHead+"routes:\n  - {name: echo, path: /echo, upstreams: [\"builtin:echo\"]}\n", false)
	// Touch the vectors that appear only once used.
	p := wstest.DialRaw(t, gw.Addr, "/echo")
	closeNormally(t, p)
	exchange(t, gw.Addr, upgradeRequest(gw.Addr, "/nowhere"))
	waitFor(t, "the session to end", func() bool { return gw.Sessions() == 0 })
	gw.metrics.RateLimited.WithLabelValues("echo", "messages").Add(0)
	gw.sess.metrics.Pushed.WithLabelValues("echo").Add(0)
	gw.sess.metrics.Events.WithLabelValues("echo", "connect", "ok").Add(0)
	gw.metrics.HTTPRequests.WithLabelValues("echo", "200").Add(0)
	gw.metrics.HTTPSeconds.WithLabelValues("echo")
	mfs := scrape(t, gw.AdminAddr)
	for name, spec := range specMetrics {
		mf := mfs[name]
		if mf == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if mf.GetType() != spec.typ {
			t.Errorf("%s: type %v, want %v", name, mf.GetType(), spec.typ)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help text", name)
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, lp := range m.GetLabel() {
				got = append(got, lp.GetName())
			}
			if !slices.Equal(got, spec.labels) {
				t.Errorf("%s: labels %v, want %v", name, got, spec.labels)
			}
		}
	}
	for name := range mfs {
		if _, ok := specMetrics[name]; strings.HasPrefix(name, "wsgate_") && !ok {
			t.Errorf("%s is not in docs/operations.md (nor in README's metrics list)", name)
		}
	}
}

// specMetrics are the metrics of docs/operations.md "Metrics", labels sorted.
var specMetrics = map[string]struct {
	typ    dto.MetricType
	labels []string
}{
	"wsgate_sessions_active":          {dto.MetricType_GAUGE, []string{"route"}},
	"wsgate_sessions_total":           {dto.MetricType_COUNTER, []string{"route"}},
	"wsgate_handshake_rejected_total": {dto.MetricType_COUNTER, []string{"route", "status"}},
	"wsgate_upstream_dial_seconds":    {dto.MetricType_HISTOGRAM, []string{"route"}},
	"wsgate_messages_total":           {dto.MetricType_COUNTER, []string{"direction", "route"}},
	"wsgate_bytes_total":              {dto.MetricType_COUNTER, []string{"direction", "route"}},
	"wsgate_close_total":              {dto.MetricType_COUNTER, []string{"code", "route", "side"}},
	"wsgate_rate_limited_total":       {dto.MetricType_COUNTER, []string{"kind", "route"}},
	"wsgate_upstream_up":              {dto.MetricType_GAUGE, []string{"route", "upstream"}},
	"wsgate_pushed_messages_total":    {dto.MetricType_COUNTER, []string{"route"}},
	"wsgate_events_total":             {dto.MetricType_COUNTER, []string{"event", "result", "route"}},
	// README "Compression".
	"wsgate_compressed_messages_total": {dto.MetricType_COUNTER, []string{"direction", "route"}},
	"wsgate_inflated_bytes_total":      {dto.MetricType_COUNTER, []string{"direction", "route"}},
	"wsgate_http_requests_total":       {dto.MetricType_COUNTER, []string{"code", "route"}},
	"wsgate_http_request_seconds":      {dto.MetricType_HISTOGRAM, []string{"route"}},
}

// TestMetricsDashboard checks the Grafana dashboard against the metrics:
// every query names an exposed metric (histograms through _bucket, _count
// or _sum) and only labels it has, and the panels the issue asks for are
// there.
func TestMetricsDashboard(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../deploy/grafana/wsgate-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Errorf("dashboard needs a title and a uid (title %q, uid %q)", dash.Title, dash.UID)
	}
	metricRe := regexp.MustCompile(`\bwsgate_[a-z_]+`)
	// Label names in matchers {a="x", b=~"y"} and in by (...) / without (...).
	matcherRe := regexp.MustCompile(`(wsgate_[a-z_]+)\{([^}]*)\}`)
	labelRe := regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)`)
	byRe := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	family := func(name string) (string, bool) {
		for _, suffix := range []string{"", "_bucket", "_count", "_sum"} {
			base := strings.TrimSuffix(name, suffix)
			if spec, ok := specMetrics[base]; ok && (suffix == "" || spec.typ == dto.MetricType_HISTOGRAM) {
				return base, true
			}
		}
		return "", false
	}
	ids := map[int]bool{}
	var exprs []string
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			names := metricRe.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: %q queries no wsgate metric", p.Title, tg.Expr)
			}
			allowed := map[string]bool{"le": false}
			for _, n := range names {
				base, ok := family(n)
				if !ok {
					t.Errorf("panel %q: %s is not a wsgate metric", p.Title, n)
					continue
				}
				for _, l := range specMetrics[base].labels {
					allowed[l] = true
				}
				if strings.HasSuffix(n, "_bucket") {
					allowed["le"] = true
				}
			}
			for _, m := range matcherRe.FindAllStringSubmatch(tg.Expr, -1) {
				base, _ := family(m[1])
				for _, l := range labelRe.FindAllStringSubmatch(m[2], -1) {
					if !slices.Contains(specMetrics[base].labels, l[1]) {
						t.Errorf("panel %q: %s has no label %q", p.Title, m[1], l[1])
					}
				}
			}
			for _, m := range byRe.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					if l = strings.TrimSpace(l); l != "" && !allowed[l] {
						t.Errorf("panel %q: grouping by %q, which %v do not have", p.Title, l, names)
					}
				}
			}
		}
	}
	for _, v := range dash.Templating.List {
		b, _ := json.Marshal(v.Query)
		for _, n := range metricRe.FindAllString(string(b), -1) {
			if _, ok := family(n); !ok {
				t.Errorf("variable %q: %s is not a wsgate metric", v.Name, n)
			}
		}
	}
	// What the issue asks the dashboard to show.
	all := strings.Join(exprs, "\n")
	for _, need := range []string{
		"wsgate_sessions_active", "wsgate_sessions_total", "wsgate_handshake_rejected_total",
		"wsgate_messages_total", "wsgate_bytes_total", `side="client"`, `side="upstream"`,
		"wsgate_upstream_up", "wsgate_upstream_dial_seconds_bucket", "wsgate_rate_limited_total",
		"wsgate_http_requests_total", "wsgate_http_request_seconds_bucket",
	} {
		if !strings.Contains(all, need) {
			t.Errorf("no panel queries %s", need)
		}
	}
}

// ---- the access log ----

// TestAccessLogFields checks every field of one access log line for a
// session whose every frame is known (docs/operations.md: route, client
// address, upstream, subprotocol, start, duration, frames/messages/bytes in
// each direction, the close code and reason each side received, who closed
// first, and why).
func TestAccessLogFields(t *testing.T) {
	t.Parallel()
	// The upstream greets with its name first, then echoes; it picks the
	// second subprotocol offered.
	up := newUpstream(t, "greeter", accept101(&opts101{
		greet:    true,
		protocol: func(offers []string) string { return offers[len(offers)-1] },
	}))
	gw := startAdminGateway(t, e2eHead+"  ping_interval: 0s\nroutes:\n  - {name: chat, path: /chat, upstreams: [\""+up.URL+"/ws\"]}\n", false)
	before := time.Now()
	rc := dialWS(t, gw.Addr, upgradeRequest(gw.Addr, "/chat", "Sec-WebSocket-Protocol: chat.v2, chat.v1"))
	if got := rc.resp.Header.Get("Sec-WebSocket-Protocol"); got != "chat.v1" {
		t.Fatalf("subprotocol %q, want chat.v1", got)
	}
	_ = rc.SetDeadline(time.Time{})
	p := &wstest.Peer{T: t, Conn: rc.Conn, BR: rc.br, Client: true, Key: frame.NewKey()}
	if f := p.Next(); string(f.Payload) != "greeter" {
		t.Fatalf("want the greeting, got %v", f)
	}
	// Client → upstream: 3 messages in 4 data frames, a ping (a frame, not
	// a message) and the Close: 6 frames. Upstream → client: the greeting
	// (7 bytes), the same 4 data frames echoed, the pong and the Close
	// reply: 7 frames, 4 messages.
	sendEchoMessages(t, p)
	p.Send(true, frame.OpPing, []byte("are you there"))
	if f := p.Next(); f.Opcode != frame.OpPong || string(f.Payload) != "are you there" {
		t.Fatalf("want the pong, got %v", f)
	}
	time.Sleep(20 * time.Millisecond) // a duration the line must show
	closeNormally(t, p)
	m := sessionLogOf(t, gw.Logs)
	after := time.Now() // the line is written after the client saw the end
	want := map[string]any{
		"level":                 "info",
		"event":                 "session",
		"message":               "session closed",
		"route":                 "chat",
		"client":                "127.0.0.1",
		"upstream":              up.URL + "/ws",
		"subprotocol":           "chat.v1",
		"compression":           "",
		"user":                  "", // no auth on the route
		"c2u_frames":            6.0,
		"c2u_messages":          float64(echoMessageCount),
		"c2u_bytes":             float64(echoMessageBytes),
		"u2c_frames":            7.0,
		"u2c_messages":          float64(echoMessageCount + 1),
		"u2c_bytes":             float64(echoMessageBytes + len("greeter")),
		"client_close_code":     "1000",
		"client_close_reason":   "bye",
		"upstream_close_code":   "1000",
		"upstream_close_reason": "bye",
		"closed_by":             "client",
		"reason":                "normal",
		"truncated":             false,
		"pushed":                0.0,
	}
	if id, _ := m["session"].(string); !func() bool { _, ok := parseSessionID(id); return ok }() {
		t.Errorf("access log session = %#v, want a session id", m["session"])
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("access log %s = %#v, want %#v", k, m[k], v)
		}
	}
	start, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["start"]))
	if err != nil {
		t.Errorf("access log start %v: %v", m["start"], err)
	} else if start.Before(before.Truncate(time.Second)) || start.After(after) {
		t.Errorf("access log start %v, want between %v and %v", start, before, after)
	}
	d, ok := m["duration"].(float64)
	if !ok || d < 0.02 || d > after.Sub(before).Seconds() {
		t.Errorf("access log duration %v, want between 0.02 and %v", m["duration"], after.Sub(before).Seconds())
	}
	for k := range m {
		if _, ok := want[k]; !ok && k != "start" && k != "duration" && k != "session" {
			t.Errorf("access log has an unexpected field %s = %v", k, m[k])
		}
	}
}

// sessionLogOf waits for the first access log line in logs and decodes it.
func sessionLogOf(t testing.TB, logs *syncBuffer) map[string]any {
	t.Helper()
	var lines []string
	waitFor(t, "the access log line", func() bool {
		lines = logs.Lines(`"event":"session"`)
		return len(lines) > 0
	})
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("access log %q: %v", lines[0], err)
	}
	return m
}

// ---- the relay's cost of being watched ----

// Relay throughput with metrics on and off (issue 8: within 3%). The
// relay's per-frame accounting is the same atomic tallies either way — no
// label lookup per frame — so what "on" adds is the admin listener and a
// scrape every 100 ms (the collector walking live sessions, the Go and
// process collectors, encoding). The clients, the echo upstream and the
// scraper run in a helper process (the test binary again, see
// TestBenchLoadHelper), so besides the wall-clock ns/op the benchmark
// reports gw-cpu-ns/op: the gateway process's own CPU time per message,
// which other load on the machine disturbs far less. Compare interleaved
// runs:
//
//	go test -c -o /tmp/proxy.test ./proxy/
//	for i in 1 2 3 4 5 6; do for m in Off On; do
//	  /tmp/proxy.test -test.run '^$' -test.bench "RelayMetrics$m\$" -test.benchtime 3s
//	done; done | tee bench.txt; benchstat -col .name bench.txt
//
// On a machine whose other load drifts, BenchmarkRelayMetricsPaired
// compares on and off within one run.
func BenchmarkRelayMetricsOff(b *testing.B) { benchRelay(b, false) }
func BenchmarkRelayMetricsOn(b *testing.B)  { benchRelay(b, true) }

const (
	benchMessage  = 64 // payload bytes per message
	benchSessions = 4
	benchBatch    = 16 // messages a client writes at once
	benchScrape   = 100 * time.Millisecond
	benchLoadEnv  = "WSGATE_BENCH_LOAD"
)

// benchGateway is a gateway toward the load helper's echo upstream, and the
// helper's command line.
type benchGateway struct {
	g         *Gateway
	plain     string // the gateway's ws:// address
	admin     string // its admin address, "" without an admin listener
	send      func(format string, args ...any)
	expect    func(word string) []string
	stop      func()
	stopFuncs []func()
}

// startBenchGateway starts the load helper process and a gateway toward its
// upstream, with an admin listener if admin. Call stop when done (not
// b.Cleanup: a benchmark function runs several times per benchmark).
func startBenchGateway(b *testing.B, admin bool) *benchGateway {
	bg := &benchGateway{}
	bg.stop = func() {
		for i := len(bg.stopFuncs) - 1; i >= 0; i-- {
			bg.stopFuncs[i]()
		}
	}
	fail := func(err error) {
		bg.stop()
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchLoadHelper$")
	cmd.Env = append(os.Environ(), benchLoadEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	bg.stopFuncs = append(bg.stopFuncs, func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	bg.send = func(format string, args ...any) { fmt.Fprintf(stdin, format+"\n", args...) }
	lines := bufio.NewReader(stdout)
	bg.expect = func(word string) []string {
		line, err := lines.ReadString('\n')
		f := strings.Fields(line)
		if err != nil || len(f) == 0 || f[0] != word {
			fail(fmt.Errorf("load helper said %q (%v), want %s", line, err, word))
		}
		return f
	}
	upstream := bg.expect("up")[1]
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`server:
  shutdown_grace: 2s
  close_spread: 0s
defaults:
  ping_interval: 0s
  close_timeout: 200ms
routes:
  - {name: bench, path: /, upstreams: ["ws://%s/"]}
`, upstream)))
	if err != nil {
		fail(err)
	}
	if bg.g, err = New(cfg, zerolog.Nop()); err != nil {
		fail(err)
	}
	ls := &Listeners{}
	if ls.Plain, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		fail(err)
	}
	bg.plain = ls.Plain.Addr().String()
	if admin {
		if ls.Admin, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			ls.Close()
			fail(err)
		}
		bg.admin = ls.Admin.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { _ = bg.g.Serve(ctx, ls); close(served) }()
	bg.stopFuncs = append(bg.stopFuncs, func() { cancel(); <-served })
	return bg
}

// benchRelay has the helper process echo b.N small binary messages through
// benchSessions sessions, scraping /metrics every benchScrape when metricsOn
// (and only then is there an admin listener).
func benchRelay(b *testing.B, metricsOn bool) {
	bg := startBenchGateway(b, metricsOn)
	defer bg.stop()
	admin := bg.admin
	if admin == "" {
		admin = "-"
	}
	bg.send("dial %s %s %d", bg.plain, admin, benchSessions)
	bg.expect("ready")
	b.SetBytes(benchMessage)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, t0 := processCPU(), time.Now()
	bg.send("run %d", b.N)
	done := bg.expect("done")
	cpu, elapsed := processCPU()-cpu0, time.Since(t0)
	b.StopTimer()
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "gw-cpu-ns/op")
	}
	if metricsOn {
		n, _ := strconv.Atoi(done[1])
		b.ReportMetric(float64(n)/elapsed.Seconds(), "scrapes/s")
	}
}

// BenchmarkRelayMetricsPaired measures the same cost within one run, for a
// machine whose other load drifts faster than separate runs can cancel: the
// relay runs without pause while the gateway alternates 300 ms windows
// without scrapes and with a scrape every benchScrape (by this process, so
// the scraping client's own CPU is charged to "on" too). Each "on" window is
// compared with the "off" window just before it; the medians of those ratios
// are reported as tput-on/off (messages per second) and cpu-on/off (gateway
// CPU per message). The admin listener is up in both: idle, it costs
// nothing.
func BenchmarkRelayMetricsPaired(b *testing.B) {
	bg := startBenchGateway(b, true)
	defer bg.stop()
	bg.send("dial %s - %d", bg.plain, benchSessions)
	bg.expect("ready")
	relayed := func() int64 { // echoes delivered so far, off the gateway's own tallies
		var n int64
		bg.g.metrics.EachLive(func(s *relay.Session) {
			_, m, _ := s.Tally(relay.SideUpstream)
			n += m
		})
		return n
	}
	scrape := func() {
		resp, err := http.Get("http://" + bg.admin + "/metrics")
		if err != nil {
			b.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	type window struct {
		on   bool
		msgs int64
		cpu  time.Duration
		wall time.Duration
	}
	const windowLen = 3 * benchScrape
	var windows []window
	b.SetBytes(benchMessage)
	b.ResetTimer()
	done := make(chan struct{})
	bg.send("run %d", b.N)
	go func() { bg.expect("done"); close(done) }()
	for on := false; ; on = !on {
		m0, c0, t0 := relayed(), processCPU(), time.Now()
		stopScrapes := make(chan struct{})
		scraped := make(chan struct{})
		go func() {
			defer close(scraped)
			if !on {
				return
			}
			tick := time.NewTicker(benchScrape)
			defer tick.Stop()
			for {
				scrape()
				select {
				case <-stopScrapes:
					return
				case <-tick.C:
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(windowLen):
		}
		close(stopScrapes)
		<-scraped
		select {
		case <-done:
		default:
			windows = append(windows, window{on, relayed() - m0, processCPU() - c0, time.Since(t0)})
			continue
		}
		break
	}
	b.StopTimer()
	var tput, cpu []float64
	for i := 1; i < len(windows); i += 2 {
		off, on := windows[i-1], windows[i]
		if off.on || !on.on || off.msgs == 0 || on.msgs == 0 {
			continue
		}
		tput = append(tput, (float64(on.msgs)/on.wall.Seconds())/(float64(off.msgs)/off.wall.Seconds()))
		cpu = append(cpu, (float64(on.cpu)/float64(on.msgs))/(float64(off.cpu)/float64(off.msgs)))
	}
	if len(tput) < 3 {
		return // a calibration round: too short to compare
	}
	median := func(v []float64) float64 {
		slices.Sort(v)
		return (v[(len(v)-1)/2] + v[len(v)/2]) / 2
	}
	b.ReportMetric(median(tput), "tput-on/off")
	if windows[0].cpu > 0 {
		b.ReportMetric(median(cpu), "cpu-on/off")
	}
	b.ReportMetric(float64(len(tput)), "pairs")
}

// BenchmarkMetricsScrape is the cost of one /metrics answer, server side,
// with that many sessions live: what "on" costs a gateway per scrape,
// whatever the traffic. At Prometheus' usual 15 s interval, or even the
// relay benchmark's 100 ms, it is a small fraction of one CPU.
func BenchmarkMetricsScrape(b *testing.B) {
	for _, n := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			cfg, err := config.Parse("bench.yaml", []byte("routes:\n  - {name: a, path: /a, upstreams: [\"builtin:echo\"]}\n  - {name: b, path: /b, upstreams: [\"builtin:echo\"]}\n"))
			if err != nil {
				b.Fatal(err)
			}
			g, err := New(cfg, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			for i := range n {
				s := relay.New(&relay.Config{})
				s.Route = [2]string{"a", "b"}[i%2]
				g.metrics.SessionStarted(s)
			}
			h := g.adminHandler()
			req := httptest.NewRequest("GET", "/metrics", nil)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0, n := processCPU(), 0
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
				n++
			}
			if cpu := processCPU() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
			}
		})
	}
}

// TestBenchLoadHelper is the load generator of benchRelay when the test
// binary runs as its helper process; otherwise it skips. It serves an echo
// upstream and drives sessions through the gateway as told on stdin:
//
//	(it says)  up UPSTREAM_ADDR
//	dial GATEWAY_ADDR ADMIN_ADDR|- SESSIONS   → ready
//	run N   (N messages over the sessions; scraping ADMIN_ADDR) → done SCRAPES
func TestBenchLoadHelper(t *testing.T) {
	if os.Getenv(benchLoadEnv) == "" {
		t.Skip("the load generator of BenchmarkRelayMetrics*, run as a helper process")
	}
	if err := benchLoad(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "load helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func benchLoad(in io.Reader, out io.Writer) error {
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer upLn.Close()
	go func() {
		for {
			c, err := upLn.Accept()
			if err != nil {
				return
			}
			go echo.Serve(c)
		}
	}()
	fmt.Fprintf(out, "up %s\n", upLn.Addr())
	// A batch of masked frames, written as is over and over: the gateway
	// unmasks and re-masks every one.
	payload := make([]byte, benchMessage)
	var batch []byte
	for range benchBatch {
		batch = frame.AppendFrame(batch, frame.Header{Fin: true, Opcode: frame.OpBinary, Masked: true, Key: frame.NewKey()}, payload)
	}
	frameLen := len(batch) / benchBatch
	var peers []*wstest.Peer
	defer func() {
		for _, p := range peers {
			p.Conn.Close()
		}
	}()
	admin := "-"
	cmds := bufio.NewScanner(in)
	for cmds.Scan() {
		f := strings.Fields(cmds.Text())
		switch {
		case len(f) == 4 && f[0] == "dial":
			admin = f[2]
			n, _ := strconv.Atoi(f[3])
			for range n {
				p, err := wstest.DialRawErr(f[1], "/bench")
				if err != nil {
					return err
				}
				peers = append(peers, p)
			}
			fmt.Fprintln(out, "ready")
		case len(f) == 2 && f[0] == "run":
			n, _ := strconv.Atoi(f[1])
			stop := make(chan struct{})
			scrapes := make(chan int)
			go func() { scrapes <- benchScraper(admin, stop) }()
			err := benchEcho(peers, n, batch, frameLen)
			close(stop)
			s := <-scrapes
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "done %d\n", s)
		default:
			return fmt.Errorf("unknown command %q", cmds.Text())
		}
	}
	return cmds.Err()
}

// benchScraper fetches http://admin/metrics every benchScrape until stop,
// like a Prometheus server would, and returns how many scrapes it made.
func benchScraper(admin string, stop <-chan struct{}) int {
	if admin == "-" {
		<-stop
		return 0
	}
	tick := time.NewTicker(benchScrape)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-stop:
			return n
		case <-tick.C:
		}
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		n++
	}
}

// benchEcho sends n messages spread over peers, each peer writing batches
// while it reads the echoes, and returns when every echo arrived.
func benchEcho(peers []*wstest.Peer, n int, batch []byte, frameLen int) error {
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(peers))
	for i, p := range peers {
		k := n / len(peers)
		if i == 0 {
			k += n % len(peers)
		}
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			for sent := 0; sent < k; {
				m := min(benchBatch, k-sent)
				if _, err := p.Conn.Write(batch[:m*frameLen]); err != nil {
					errs <- err
					return
				}
				sent += m
			}
		}()
		go func() { // reader of the echoes
			defer wg.Done()
			_ = p.Conn.SetReadDeadline(time.Now().Add(10 * time.Minute))
			for range k {
				h, err := frame.ReadHeader(p.BR, frame.Rules{})
				if err == nil {
					_, err = p.BR.Discard(int(h.Length))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// TestMetricsAppCloseCodesBounded: application close codes (RFC 6455
// §7.4.2, 3000-4999) are the peers' choice, so the series they make are
// bounded: the first metrics.MaxAppCloseCodes distinct codes relayed get a label of
// their own, later ones are counted as code="other"; protocol codes keep
// theirs.
func TestMetricsAppCloseCodesBounded(t *testing.T) {
	t.Parallel()
	gw := startAdminGateway(t, e2eHead+"  ping_interval: 0s\nroutes:\n  - {name: echo, path: /echo, upstreams: [\"builtin:echo\"]}\n", false)
	const extra = 6
	closeWith := func(code frame.CloseCode) {
		t.Helper()
		p := wstest.DialRaw(t, gw.Addr, "/echo")
		p.SendClose(code, "x")
		p.ExpectClose(int(code), "x")
		p.Conn.Close()
		// One session at a time: the bound keeps the first codes the
		// gateway counts, and sessions opened in turn may end out of
		// order unless each has ended before the next opens.
		waitFor(t, "the session to end", func() bool { return gw.Sessions() == 0 })
	}
	for i := range metrics.MaxAppCloseCodes + extra {
		closeWith(frame.CloseCode(4000 + i))
	}
	closeWith(4000)              // seen already: its own series
	closeWith(frame.CloseNormal) // protocol codes are never folded
	closeWith(3999)              // a new one past the bound
	waitFor(t, "the sessions to end", func() bool { return gw.Sessions() == 0 })

	got := wsgateSeries(t, scrape(t, gw.AdminAddr))
	codes := map[string]float64{}
	clientClose := regexp.MustCompile(`^wsgate_close_total\{code="([^"]*)",route="echo",side="client"\}$`)
	for k, v := range got {
		if m := clientClose.FindStringSubmatch(k); m != nil {
			codes[m[1]] = v
		}
	}
	if len(codes) != metrics.MaxAppCloseCodes+2 {
		t.Errorf("%d client close_total series, want %d (the bound, 1000 and other): %v", len(codes), metrics.MaxAppCloseCodes+2, codes)
	}
	for code, want := range map[string]float64{
		"4000": 2, "4001": 1, strconv.Itoa(4000 + metrics.MaxAppCloseCodes - 1): 1, "1000": 1, "other": extra + 1,
	} {
		if codes[code] != want {
			t.Errorf("client close_total{code=%q} = %v, want %v", code, codes[code], want)
		}
	}
	if _, ok := codes[strconv.Itoa(4000+metrics.MaxAppCloseCodes)]; ok {
		t.Errorf("code %d has a series of its own past the bound", 4000+metrics.MaxAppCloseCodes)
	}
}
