package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"wsgate/ratelimit"
)

// Bounds and periods (README "Running several instances" states them).
const (
	// DefaultOpTimeout bounds one operation on a handshake's path: with
	// Redis slow or gone, a handshake waits at most this long for it, once.
	DefaultOpTimeout = 50 * time.Millisecond
	// PingInterval is how often the background ping looks at the server.
	PingInterval = 500 * time.Millisecond
	// pingTimeout and bgTimeout bound background operations.
	pingTimeout = 250 * time.Millisecond
	bgTimeout   = time.Second
	// Heartbeat is how often an instance renews its entry in wsgate:nodes;
	// NodeTTL is how long the entry lives: a killed instance's sessions
	// stop counting toward connections_per_ip within NodeTTL.
	Heartbeat = time.Second
	NodeTTL   = 5 * time.Second
	// Reassert is how often an instance writes its open connections back;
	// ConnTTL is how long a connection hash lives after its last write.
	Reassert = 10 * time.Second
	ConnTTL  = 30 * time.Second
	// SyncInterval is how often local messages_per_ip buckets exchange
	// their consumption: the lag of that shared limit.
	SyncInterval = 100 * time.Millisecond
)

// Operation names: the `op` label of wsgate_cluster_errors_total.
const (
	OpPing      = "ping"
	OpHeartbeat = "heartbeat"
	OpAdmit     = "admit"
	OpRelease   = "release"
	OpReassert  = "reassert"
	OpSync      = "sync"
	OpStorage   = "storage"
	OpLock      = "lock"
	OpPublish   = "publish"
	OpSubscribe = "subscribe"
)

const (
	prefix   = "wsgate:"
	nodesKey = prefix + "nodes"
)

// ErrDown is returned, without a round trip, while the server is marked
// down.
var ErrDown = errors.New("cluster: redis is unreachable")

// Options configure a Cluster.
type Options struct {
	URL      string // redis://, rediss:// or unix://
	Password string // overrides the URL's password if set
	Node     string // this instance's name
	// OpTimeout bounds an operation on a handshake's path; 0 means
	// DefaultOpTimeout. (Tests on a loaded machine raise it.)
	OpTimeout time.Duration
	// FailClosed: handshakes are refused while the server is down (the
	// caller acts on it; see Cluster.FailClosed).
	FailClosed bool
	Log        zerolog.Logger
	// Registerer gets wsgate_cluster_up and wsgate_cluster_errors_total;
	// nil: not registered.
	Registerer prometheus.Registerer
}

// Cluster is one instance's connection to the shared store. Its methods
// are safe for concurrent use.
type Cluster struct {
	rdb        *redis.Client
	node       string // as configured
	id         string // node#incarnation: this process in Redis
	failClosed bool
	opTimeout  time.Duration
	log        zerolog.Logger

	up       atomic.Bool
	upGauge  prometheus.Gauge
	errs     *prometheus.CounterVec
	wake     chan struct{} // asks the health loop to ping now
	rejoined chan struct{} // the health loop saw the server come back

	releases chan connRef   // queued connection releases (limits.go)
	dir      chan dirChange // queued directory changes (directory.go); nil until StartDirectory

	mu      sync.Mutex
	src     Sources
	written map[string]int // connection hashes the last reassert wrote
	closed  bool
	usedBuf []ratelimit.Used // the sync loop's, reused

	stop context.CancelFunc
	done sync.WaitGroup
}

var setLogger sync.Once

// New connects to the server (lazily: New does not wait for it) and starts
// the health, heartbeat, reassert and sync loops. Close stops them.
func New(o Options) (*Cluster, error) {
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("cluster.redis: %w", err)
	}
	if o.Password != "" {
		opt.Password = o.Password
	}
	opt.Protocol = 2
	opt.DisableIdentity = true
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1 // a retry would double the bound a handshake waits
	if o.OpTimeout <= 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	opt.DialTimeout = max(4*o.OpTimeout, pingTimeout)
	opt.ReadTimeout = bgTimeout
	opt.WriteTimeout = bgTimeout
	opt.PoolTimeout = o.OpTimeout
	opt.MinIdleConns = 2
	var inc [6]byte
	_, _ = rand.Read(inc[:])
	c := &Cluster{
		rdb:        redis.NewClient(opt),
		node:       o.Node,
		id:         o.Node + "#" + hex.EncodeToString(inc[:]),
		failClosed: o.FailClosed,
		opTimeout:  o.OpTimeout,
		log:        o.Log.With().Str("component", "cluster").Logger(),
		upGauge:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "wsgate_cluster_up", Help: "1 while the cluster's Redis answers, else 0."}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wsgate_cluster_errors_total",
			Help: "Failed operations on the cluster's Redis, by operation."}, []string{"op"}),
		wake:     make(chan struct{}, 1),
		rejoined: make(chan struct{}, 1),
		releases: make(chan connRef, releaseQueue),
	}
	setLogger.Do(func() { redis.SetLogger(redisLogger{c.log}) })
	for _, op := range []string{OpPing, OpAdmit, OpSync} {
		c.errs.WithLabelValues(op) // exported at 0 from the start
	}
	if o.Registerer != nil {
		for _, m := range []prometheus.Collector{c.upGauge, c.errs} {
			if err := o.Registerer.Register(m); err != nil {
				c.rdb.Close()
				return nil, err
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	// The first ping decides the initial state, so that a gateway started
	// while Redis is away does not make its first handshakes wait.
	c.ping(ctx)
	if !c.Up() {
		c.log.Warn().Str("node", c.id).Bool("fail_closed", c.failClosed).
			Msg("cluster redis is unreachable at start: " + c.whileDown())
	}
	c.done.Add(3)
	go c.healthLoop(ctx)
	go c.heartbeatLoop(ctx)
	go c.releaseLoop(ctx)
	return c, nil
}

// Close stops the loops and closes the connections. This instance's
// connections stop counting when its heartbeat entry expires (NodeTTL), or
// at once for those released before Close.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	stop := c.stop // StartDirectory may have wrapped it
	c.mu.Unlock()
	stop()
	c.done.Wait()
	// Leave at once: no instance needs to wait NodeTTL for our slots.
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	_ = c.rdb.HDel(ctx, nodesKey, c.id).Err()
	cancel()
	return c.rdb.Close()
}

// Node returns this instance's configured name; ID returns its name in
// Redis (name#incarnation).
func (c *Cluster) Node() string { return c.node }
func (c *Cluster) ID() string   { return c.id }

// Up reports whether the server answered the last operation.
func (c *Cluster) Up() bool { return c.up.Load() }

// FailClosed reports whether handshakes are refused while the server is
// down.
func (c *Cluster) FailClosed() bool { return c.failClosed }

// Client returns the go-redis client (for the certificate storage and
// tests).
func (c *Cluster) Client() *redis.Client { return c.rdb }

// failed counts a failed operation and, for errors that say the server is
// unreachable or slow, marks it down until the next successful ping.
func (c *Cluster) failed(op string, err error) {
	c.errs.WithLabelValues(op).Inc()
	if errors.Is(err, ErrDown) {
		return
	}
	var re redis.Error
	if errors.As(err, &re) && !errors.Is(err, context.DeadlineExceeded) {
		// The server answered (a script error, a wrong type): it is up.
		c.log.Warn().Err(err).Str("op", op).Msg("cluster operation failed")
		return
	}
	c.setUp(false, op, err)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Cluster) setUp(up bool, op string, err error) {
	if c.up.Swap(up) == up {
		return
	}
	if up {
		c.upGauge.Set(1)
		c.log.Info().Str("node", c.id).Msg("cluster redis is reachable: shared limits in force")
		select {
		case c.rejoined <- struct{}{}:
		default:
		}
		return
	}
	c.upGauge.Set(0)
	c.log.Warn().Err(err).Str("op", op).Bool("fail_closed", c.failClosed).
		Msg("cluster redis is unreachable: " + c.whileDown())
}

// whileDown says what happens while Redis is away.
func (c *Cluster) whileDown() string {
	if c.failClosed {
		return "handshakes get 503 until it is back (cluster.fail: closed)"
	}
	return "limiting on this instance alone until it is back (cluster.fail: open)"
}

func (c *Cluster) ping(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	err := c.rdb.Ping(pctx).Err()
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		c.errs.WithLabelValues(OpPing).Inc()
		c.setUp(false, OpPing, err)
		return
	}
	if !c.up.Load() {
		// Be alive in wsgate:nodes before counting as up, or our own
		// Admits would not see our older sessions.
		c.heartbeat(ctx)
	}
	c.setUp(true, OpPing, nil)
}

func (c *Cluster) healthLoop(ctx context.Context) {
	defer c.done.Done()
	t := time.NewTicker(PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.wake:
			// Not at once: a burst of failures must not become a burst of
			// pings. The ticker's next tick comes soon enough.
			continue
		}
		c.ping(ctx)
	}
}

// heartbeatLoop renews this instance's entry in wsgate:nodes, writes its
// connections back every Reassert and when the server comes back, and
// exchanges messages_per_ip consumption every SyncInterval.
func (c *Cluster) heartbeatLoop(ctx context.Context) {
	defer c.done.Done()
	sync := time.NewTicker(SyncInterval)
	defer sync.Stop()
	hb := time.NewTicker(Heartbeat)
	defer hb.Stop()
	re := time.NewTicker(Reassert)
	defer re.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sync.C:
			c.syncPerIP(ctx)
		case <-hb.C:
			if c.Up() {
				c.heartbeat(ctx)
			}
		case <-re.C:
			if c.Up() {
				c.reassert(ctx)
			}
		case <-c.rejoined:
			c.reassert(ctx)
		}
	}
}

var heartbeatScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i+1]) < now then redis.call('HDEL', KEYS[1], all[i]) end
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)
return 1
`)

// heartbeat renews this instance's entry in wsgate:nodes and drops the
// entries that expired.
func (c *Cluster) heartbeat(ctx context.Context) {
	hctx, cancel := context.WithTimeout(ctx, bgTimeout)
	defer cancel()
	err := heartbeatScript.Run(hctx, c.rdb, []string{nodesKey}, c.id, NodeTTL.Milliseconds()).Err()
	if err != nil && ctx.Err() == nil {
		c.failed(OpHeartbeat, err)
	}
}

// Nodes returns the instances alive now (name#incarnation).
func (c *Cluster) Nodes(ctx context.Context) ([]string, error) {
	if !c.Up() {
		return nil, ErrDown
	}
	m, err := c.rdb.HGetAll(ctx, nodesKey).Result()
	if err != nil {
		return nil, err
	}
	t, err := c.rdb.Time(ctx).Result()
	if err != nil {
		return nil, err
	}
	now := t.UnixMilli()
	var out []string
	for id, exp := range m {
		if e, err := strconv.ParseInt(exp, 10, 64); err == nil && e >= now {
			out = append(out, id)
		}
	}
	return out, nil
}

type redisLogger struct{ log zerolog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug().Msgf(format, v...)
}
