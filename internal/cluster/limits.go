package cluster

// Shared rate limits (README "Running several instances"): handshakes and
// connections_per_ip decided in Redis at the handshake, in one round trip;
// messages_per_ip on local buckets synchronised every SyncInterval.

import (
	"context"
	"net/netip"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"wsgate/ratelimit"
)

// Rate is a limit of PerSecond tokens per second up to Burst.
type Rate struct {
	PerSecond float64
	Burst     int64
}

func (r Rate) tag() string {
	return strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/" + strconv.FormatInt(r.Burst, 10)
}

// Verdict is Admit's decision.
type Verdict uint8

const (
	Admitted           Verdict = iota
	TooManyHandshakes          // over the handshakes rate; see the retry delay
	TooManyConnections         // at connections_per_ip over the cluster
)

// PerIPSource is a route's messages_per_ip limiter, shared over the
// cluster by SyncPerIP. Its limiter must be tracked (ratelimit.Keyed.Track).
type PerIPSource struct {
	Route   string
	Rate    Rate
	Limiter *ratelimit.Keyed
}

// Sources is what the cluster reads of the gateway: its open connections
// per route and client key, for routes with connections_per_ip (to write
// them back every Reassert), and its messages_per_ip limiters.
type Sources struct {
	Conns func(yield func(route string, key netip.Addr, n int))
	PerIP func() []PerIPSource
}

// SetSources tells the cluster where its local state is. Until it is
// called, nothing is written back nor synchronised.
func (c *Cluster) SetSources(s Sources) {
	c.mu.Lock()
	c.src = s
	c.mu.Unlock()
}

func (c *Cluster) sources() Sources {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.src
}

func hsKey(route string, r Rate, key netip.Addr) string {
	return prefix + "h:" + route + ":" + r.tag() + ":" + key.String()
}

func msgKey(route string, r Rate, key netip.Addr) string {
	return prefix + "m:" + route + ":" + r.tag() + ":" + key.String()
}

func connHash(route string, key netip.Addr) string {
	return prefix + "c:" + route + ":" + key.String()
}

// admitScript: the handshakes GCRA (KEYS[1]; ARGV[1] "1" if limited,
// ARGV[2] the emission interval in ms, ARGV[3] the burst), then
// connections_per_ip (KEYS[2] the route+address hash of instance -> open
// sessions, KEYS[3] wsgate:nodes; ARGV[4] the limit, 0 = none; ARGV[5]
// this instance; ARGV[6] the hash's TTL in ms). The order is the local
// one: a handshake refused for connections has spent its handshake token.
// Returns {0} admitted, {1, retry_ms}, {2}.
var admitScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
if ARGV[1] == '1' then
  local T = tonumber(ARGV[2])
  local tau = T * (tonumber(ARGV[3]) - 1)
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  if now < tat - tau then
    return {1, math.ceil(tat - tau - now)}
  end
  local new = tat + T
  redis.call('SET', KEYS[1], tostring(new), 'PX', math.ceil(new - now) + 1)
end
local max = tonumber(ARGV[4])
if max > 0 then
  local all = redis.call('HGETALL', KEYS[2])
  local sum = 0
  for i = 1, #all, 2 do
    local f, n = all[i], tonumber(all[i+1])
    if f == ARGV[5] then
      sum = sum + n
    else
      local exp = tonumber(redis.call('HGET', KEYS[3], f) or '0')
      if exp >= now then sum = sum + n else redis.call('HDEL', KEYS[2], f) end
    end
  end
  if sum >= max then return {2} end
  redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return {0}
`)

// Admit decides a handshake of the client with limiter key key on route
// against the cluster: the handshakes rate (hs nil: none) and
// connections_per_ip (maxConns 0: none), in one round trip bounded by
// the operation timeout (Options.OpTimeout). Admitted with maxConns > 0 holds a connection slot until
// Release. An error (ErrDown without a round trip while the server is
// marked down) means no decision: the caller falls back to its local
// limiters, or refuses with fail: closed.
func (c *Cluster) Admit(ctx context.Context, route string, key netip.Addr, hs *Rate, maxConns int) (Verdict, time.Duration, error) {
	if !c.Up() {
		return 0, 0, ErrDown
	}
	ctx, cancel := context.WithTimeout(ctx, c.opTimeout)
	defer cancel()
	var limited string
	var interval float64
	var burst int64
	hk := prefix + "h:-" // unused when limited is "0"
	if hs != nil && hs.PerSecond > 0 {
		limited, interval, burst = "1", 1000/hs.PerSecond, max(hs.Burst, 1)
		hk = hsKey(route, *hs, key)
	} else {
		limited = "0"
	}
	res, err := admitScript.Run(ctx, c.rdb, []string{hk, connHash(route, key), nodesKey},
		limited, interval, burst, maxConns, c.id, ConnTTL.Milliseconds()).Int64Slice()
	if err != nil {
		c.failed(OpAdmit, err)
		return 0, 0, err
	}
	switch {
	case len(res) >= 2 && res[0] == 1:
		return TooManyHandshakes, time.Duration(res[1]) * time.Millisecond, nil
	case len(res) >= 1 && res[0] == 2:
		return TooManyConnections, 0, nil
	}
	return Admitted, 0, nil
}

// releaseQueue bounds the releases waiting for the server; past it a
// release is dropped, and the next Reassert corrects the count.
const releaseQueue = 4096

type connRef struct {
	route string
	key   netip.Addr
}

var releaseScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
`)

// Release gives back a connection slot Admit took (with maxConns > 0). It
// never waits: the release is queued.
func (c *Cluster) Release(route string, key netip.Addr) {
	select {
	case c.releases <- connRef{route, key}:
	default:
		c.errs.WithLabelValues(OpRelease).Inc()
	}
}

func (c *Cluster) releaseLoop(ctx context.Context) {
	defer c.done.Done()
	for {
		select {
		case <-ctx.Done():
			c.drainReleases()
			return
		case r := <-c.releases:
			if !c.Up() {
				// Lost with the server, or corrected by the reassert
				// that follows its return.
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, bgTimeout)
			err := releaseScript.Run(rctx, c.rdb, []string{connHash(r.route, r.key)}, c.id).Err()
			cancel()
			if err != nil && ctx.Err() == nil {
				c.failed(OpRelease, err)
			}
		}
	}
}

// drainReleases sends the releases still queued at Close, briefly.
func (c *Cluster) drainReleases() {
	if !c.Up() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	for {
		select {
		case r := <-c.releases:
			if releaseScript.Run(ctx, c.rdb, []string{connHash(r.route, r.key)}, c.id).Err() != nil {
				return
			}
		default:
			return
		}
	}
}

// reassert writes this instance's open connections per route and address
// back to Redis (HSET, not an increment: it is the truth), and removes its
// entry from the hashes it wrote last time and has no connection in now.
// It runs every Reassert and when the server comes back (its memory may
// have been lost with it).
func (c *Cluster) reassert(ctx context.Context) {
	src := c.sources()
	if src.Conns == nil {
		return
	}
	now := make(map[string]int)
	src.Conns(func(route string, key netip.Addr, n int) {
		if n > 0 {
			now[connHash(route, key)] += n
		}
	})
	c.mu.Lock()
	prev := c.written
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*bgTimeout)
	defer cancel()
	pipe := c.rdb.Pipeline()
	flush := func() bool {
		if pipe.Len() == 0 {
			return true
		}
		_, err := pipe.Exec(ctx)
		if err != nil {
			if ctx.Err() == nil || ctx.Err() == context.DeadlineExceeded {
				c.failed(OpReassert, err)
			}
			return false
		}
		return true
	}
	for k, n := range now {
		pipe.HSet(ctx, k, c.id, n)
		pipe.PExpire(ctx, k, ConnTTL)
		if pipe.Len() >= 512 && !flush() {
			return
		}
	}
	for k := range prev {
		if _, ok := now[k]; !ok {
			pipe.HDel(ctx, k, c.id)
			if pipe.Len() >= 512 && !flush() {
				return
			}
		}
	}
	if !flush() {
		return
	}
	c.mu.Lock()
	c.written = now
	c.mu.Unlock()
}

// syncScript: for each key (a messages_per_ip bucket), ARGV holds three
// values: the rate in tokens per ms, the burst, and the tokens this
// instance took since its last exchange. The bucket refills, pays for what
// was taken (it may go into debt), and its level is returned, as a string
// (Lua numbers would be truncated to integers).
var syncScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local out = {}
for i, k in ipairs(KEYS) do
  local r = tonumber(ARGV[3*i-2])
  local b = tonumber(ARGV[3*i-1])
  local d = tonumber(ARGV[3*i])
  local v = redis.call('HMGET', k, 't', 'l')
  local tok = b
  if v[1] then
    tok = math.min(b, tonumber(v[1]) + (now - tonumber(v[2])) * r)
  end
  tok = tok - d
  if tok < -64 * b then tok = -64 * b end
  redis.call('HSET', k, 't', tostring(tok), 'l', tostring(now))
  redis.call('PEXPIRE', k, math.ceil((b - tok) / r) + 1000)
  out[i] = tostring(tok)
end
return out
`)

// syncBatch bounds the keys of one exchange (one script run).
const syncBatch = 1024

// syncPerIP sends what every messages_per_ip limiter took since the last
// exchange and sets each of those buckets to the shared level. While the
// server is down, what was taken is forgotten: each instance limits alone.
func (c *Cluster) syncPerIP(ctx context.Context) {
	src := c.sources()
	if src.PerIP == nil {
		return
	}
	for _, s := range src.PerIP() {
		for {
			used := s.Limiter.TakeUsed(c.usedBuf[:0], syncBatch)
			c.usedBuf = used
			if len(used) == 0 || !c.Up() {
				break
			}
			c.syncBatch(ctx, s, used)
			if len(used) < syncBatch {
				break
			}
		}
	}
}

func (c *Cluster) syncBatch(ctx context.Context, s PerIPSource, used []ratelimit.Used) {
	keys := make([]string, len(used))
	args := make([]any, 0, 3*len(used))
	perMS := s.Rate.PerSecond / 1000
	for i, u := range used {
		keys[i] = msgKey(s.Route, s.Rate, u.Key)
		args = append(args, perMS, s.Rate.Burst, u.N)
	}
	sctx, cancel := context.WithTimeout(ctx, max(2*SyncInterval, c.opTimeout))
	defer cancel()
	levels, err := syncScript.Run(sctx, c.rdb, keys, args...).StringSlice()
	if err != nil {
		if ctx.Err() == nil {
			c.failed(OpSync, err)
		}
		return
	}
	now := time.Now()
	for i, l := range levels {
		if i >= len(used) {
			break
		}
		if f, err := strconv.ParseFloat(l, 64); err == nil {
			s.Limiter.SetLevel(used[i].Key, now, f)
		}
	}
}
