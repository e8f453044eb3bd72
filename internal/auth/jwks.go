package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/rs/zerolog"
)

// Fetch policy of a JWK Set (package doc, "Keys"): a Registry's defaults.
const (
	// RefreshEvery: keys older than this are fetched again in the
	// background by the next check that uses them (while that fails, at
	// most every UnknownKIDEvery).
	RefreshEvery = 5 * time.Minute
	// UnknownKIDEvery: a token whose kid is not in the set fetches it again
	// at once, at most this often; in between it is refused (401).
	UnknownKIDEvery = 10 * time.Second
	// RetryEvery: while a set was never fetched, a check tries again at
	// most this often; in between it is answered 503 at once.
	RetryEvery = time.Second
	// FetchTimeout bounds one fetch.
	FetchTimeout = 5 * time.Second
)

// maxJWKSBytes bounds a JWK Set document.
const maxJWKSBytes = 1 << 20

// errKeysUnavailable: the JWK Set was never fetched (the IdP is down since
// start): no token can be checked.
var errKeysUnavailable = errors.New("JWK Set unavailable: never fetched")

// Registry shares JWK Sets by URL across routes and reloads, and holds the
// pooled HTTP clients. One per gateway.
type Registry struct {
	Log zerolog.Logger
	// The fetch policy (the constants of the same names); tests shorten
	// them before the first New.
	RefreshEvery, UnknownKIDEvery, RetryEvery time.Duration

	client *http.Client // JWK Sets
	fwd    *http.Client // forward auth
	mu     sync.Mutex
	sets   map[string]*jwks
}

// NewRegistry returns an empty registry logging to log.
func NewRegistry(log zerolog.Logger) *Registry {
	return &Registry{
		Log:          log,
		RefreshEvery: RefreshEvery, UnknownKIDEvery: UnknownKIDEvery, RetryEvery: RetryEvery,
		client: &http.Client{Transport: newTransport(), Timeout: FetchTimeout},
		fwd: &http.Client{
			Transport: newTransport(),
			// The auth service's redirect is the client's to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		sets: make(map[string]*jwks),
	}
}

func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil // the IdP and the auth service are reached directly
	t.MaxIdleConnsPerHost = 64
	return t
}

// set returns the JWK Set for url, created (and its first fetch started)
// on first use.
func (r *Registry) set(url string) *jwks {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k := r.sets[url]; k != nil {
		return k
	}
	k := &jwks{url: url, reg: r}
	r.sets[url] = k
	go k.fetch() // the snapshot is built with its keys on their way
	return k
}

// jwks is one JWK Set URL's keys: the last good set and the fetch state.
type jwks struct {
	url string
	reg *Registry

	mu        sync.Mutex
	kf        keyfunc.Keyfunc // last good set; nil: never fetched
	fetchedAt time.Time       // of kf
	attemptAt time.Time       // last fetch started
	unknownAt time.Time       // last fetch for an unknown kid
	inflight  chan struct{}   // closed when the running fetch ends; nil: none
	lastErr   error
}

// keys returns the current set, fetching it first if it never was (waiting
// for a fetch under way, or starting one at most every RetryEvery); nil
// and errKeysUnavailable if there is none. A set older than RefreshEvery
// is refreshed in the background.
func (k *jwks) keys(ctx context.Context) (keyfunc.Keyfunc, error) {
	k.mu.Lock()
	kf, now := k.kf, time.Now()
	if kf != nil {
		if now.Sub(k.fetchedAt) >= k.reg.RefreshEvery && k.inflight == nil && now.Sub(k.attemptAt) >= k.reg.UnknownKIDEvery {
			k.startLocked()
		}
		k.mu.Unlock()
		return kf, nil
	}
	wait := k.inflight
	if wait == nil && now.Sub(k.attemptAt) >= k.reg.RetryEvery {
		wait = k.startLocked()
	}
	k.mu.Unlock()
	if wait == nil {
		return nil, errKeysUnavailable
	}
	return k.await(ctx, wait)
}

// refetchUnknown fetches the set again for a kid it did not have, at most
// once per UnknownKIDEvery, and returns the set then in force.
func (k *jwks) refetchUnknown(ctx context.Context) (keyfunc.Keyfunc, error) {
	k.mu.Lock()
	now := time.Now()
	wait := k.inflight
	if wait == nil {
		if now.Sub(k.unknownAt) < k.reg.UnknownKIDEvery {
			kf := k.kf
			k.mu.Unlock()
			return kf, nil
		}
		k.unknownAt = now
		wait = k.startLocked()
	}
	k.mu.Unlock()
	return k.await(ctx, wait)
}

func (k *jwks) await(ctx context.Context, wait chan struct{}) (keyfunc.Keyfunc, error) {
	select {
	case <-wait:
	case <-ctx.Done():
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kf == nil {
		return nil, errKeysUnavailable
	}
	return k.kf, nil
}

// startLocked starts a fetch; k.mu is held.
func (k *jwks) startLocked() chan struct{} {
	c := make(chan struct{})
	k.inflight = c
	k.attemptAt = time.Now()
	go k.run(c)
	return c
}

// fetch runs a fetch unless one is under way (the first one, from set).
func (k *jwks) fetch() {
	k.mu.Lock()
	if k.inflight != nil {
		k.mu.Unlock()
		return
	}
	c := k.startLocked()
	k.mu.Unlock()
	<-c
}

func (k *jwks) run(done chan struct{}) {
	kf, n, err := k.get()
	k.mu.Lock()
	if err == nil {
		k.kf, k.fetchedAt = kf, time.Now()
	}
	first := k.lastErr == nil && err != nil || k.lastErr != nil && err == nil
	k.lastErr = err
	k.inflight = nil
	have := k.kf != nil
	k.mu.Unlock()
	close(done)
	log := k.reg.Log
	switch {
	case err != nil:
		e := log.Debug()
		if first {
			e = log.Warn()
		}
		e.Err(err).Str("jwks_url", k.url).Bool("keys_cached", have).Msg("JWK Set fetch failed")
	case first:
		log.Info().Str("jwks_url", k.url).Int("keys", n).Msg("JWK Set fetched again")
	default:
		log.Debug().Str("jwks_url", k.url).Int("keys", n).Msg("JWK Set fetched")
	}
}

// get fetches and parses the set. Keys it cannot use are skipped:
// symmetric ones (a secret published in a JWK Set is no secret), and those
// marked for encryption.
func (k *jwks) get() (keyfunc.Keyfunc, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := k.reg.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, 0, fmt.Errorf("%s answered %s", k.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, 0, err
	}
	if len(body) > maxJWKSBytes {
		return nil, 0, fmt.Errorf("%s: JWK Set larger than %d bytes", k.url, maxJWKSBytes)
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, 0, fmt.Errorf("%s: not a JWK Set: %v", k.url, err)
	}
	store := jwkset.NewMemoryStorage()
	n := 0
	for _, m := range set.Keys {
		if m.KTY == jwkset.KtyOct || m.USE == jwkset.UseEnc {
			continue
		}
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			k.reg.Log.Debug().Err(err).Str("jwks_url", k.url).Str("kid", m.KID).Msg("JWK skipped")
			continue
		}
		if err := store.KeyWrite(ctx, j); err != nil {
			continue
		}
		n++
	}
	if n == 0 && len(set.Keys) > 0 {
		return nil, 0, fmt.Errorf("%s: no usable signature key in the JWK Set", k.url)
	}
	kf, err := keyfunc.New(keyfunc.Options{Storage: store, Ctx: context.Background()})
	if err != nil {
		return nil, 0, err
	}
	return kf, n, nil
}
