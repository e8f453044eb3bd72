package auth

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"wsgate/internal/config"
)

// maxDenyBody bounds the auth service's body passed on to the client.
const maxDenyBody = 4096

// forwardCheck is a route's auth.forward: a GET to the auth service per
// request, like nginx's auth_request or Caddy's forward_auth.
type forwardCheck struct {
	cfg    *config.ForwardAuth
	client *http.Client // pooled, shared (Registry)
}

// notForwarded are the client's headers the auth service does not get:
// hop-by-hop (RFC 9110 §7.6.1) and the upgrade's own, plus forwarding
// headers the gateway writes itself.
var notForwarded = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
	"Content-Type", "Forwarded", "X-Real-Ip", "X-Forwarded-Prefix"}

// Headers of a refusal the client gets from the auth service's answer.
var passedBack = []string{"Www-Authenticate", "Location", "Set-Cookie", "Retry-After", "Content-Type"}

func (f *forwardCheck) check(ctx context.Context, r *http.Request, client, proto string, res *Result) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.cfg.URL.String(), nil)
	if err != nil {
		res.deny(http.StatusServiceUnavailable, OutcomeError, "auth service: "+err.Error())
		return
	}
	h := req.Header
	for k, vs := range r.Header {
		h[k] = vs
	}
	for _, v := range r.Header["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				h.Del(t)
			}
		}
	}
	for _, k := range notForwarded {
		h.Del(k)
	}
	for k := range h {
		if strings.HasPrefix(k, "Sec-Websocket-") {
			delete(h, k)
		}
	}
	for _, k := range f.cfg.CopyHeaders {
		h.Del(k) // the client must not answer for the auth service
	}
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	h.Set("X-Forwarded-Method", r.Method)
	h.Set("X-Forwarded-Uri", uri)
	h.Set("X-Forwarded-For", client)
	h.Set("X-Forwarded-Proto", proto)
	h.Set("X-Forwarded-Host", r.Host)

	resp, err := f.client.Do(req)
	if err != nil {
		reason := "auth service unreachable"
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			reason = "auth service did not answer within " + f.cfg.Timeout.String()
		}
		res.deny(http.StatusServiceUnavailable, OutcomeError, reason, "Retry-After", "1")
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDenyBody))
		res.Allow, res.Outcome = true, OutcomeOK
		for _, k := range f.cfg.CopyHeaders {
			for _, v := range resp.Header.Values(k) {
				res.set(k, v)
			}
		}
		if v := resp.Header.Get("X-User-Id"); v != "" && slices.Contains(f.cfg.CopyHeaders, "X-User-Id") {
			res.User = v
		}
		return
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxDenyBody))
	outcome := OutcomeDenied
	if resp.StatusCode >= 500 {
		outcome = OutcomeError
	}
	res.deny(resp.StatusCode, outcome, "auth service answered "+strconv.Itoa(resp.StatusCode))
	res.Header = make(http.Header)
	for _, k := range passedBack {
		if vs := resp.Header.Values(k); len(vs) > 0 {
			res.Header[textproto.CanonicalMIMEHeaderKey(k)] = vs
		}
	}
	res.Body = body
	if res.Body == nil {
		res.Body = []byte{}
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
