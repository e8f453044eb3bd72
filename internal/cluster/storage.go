package cluster

// Certificates in Redis (README "Running several instances"): a
// certmagic.Storage, so that one instance obtains or renews a certificate
// under a lock and every instance serves it; HTTP-01 and TLS-ALPN-01
// challenge data goes through the same storage, so any instance can
// answer a challenge.
//
// A file is a hash (value, modification time) at wsgate:certs:f:<key>; a
// sorted set, wsgate:certs:index, holds every key, so that directories
// (prefixes) can be listed by range. These keys do not expire: they are
// the certificates. A lock is wsgate:locks:<name> holding a random token,
// set with a lease of LockTTL that its holder renews every LockTTL/3: a
// holder that crashed loses it within LockTTL.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
)

// LockTTL is a certificate lock's lease: a holder that crashed (or lost
// Redis) gives the lock up within it.
const LockTTL = 10 * time.Second

const (
	fileKeyPrefix = prefix + "certs:f:"
	indexKey      = prefix + "certs:index"
	lockKeyPrefix = prefix + "locks:"
	storageOp     = 5 * time.Second // one storage operation, at most
	lockPoll      = 250 * time.Millisecond
)

// Storage is a certmagic.Storage (with its Locker) in the cluster's Redis.
type Storage struct {
	c *Cluster

	mu    sync.Mutex
	locks map[string]*heldLock // locks this process holds, by name
}

type heldLock struct {
	token string
	stop  context.CancelFunc
	done  chan struct{}
}

// Storage returns the certificate storage in the cluster's Redis.
func (c *Cluster) Storage() *Storage {
	return &Storage{c: c, locks: map[string]*heldLock{}}
}

var (
	_ certmagic.Storage          = (*Storage)(nil)
	_ certmagic.TryLocker        = (*Storage)(nil)
	_ certmagic.LockLeaseRenewer = (*Storage)(nil)
)

func (s *Storage) fail(op string, err error) error {
	if err != nil && !errors.Is(err, context.Canceled) {
		s.c.failed(op, err)
	}
	return err
}

func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, storageOp)
}

// normKey trims the slashes certmagic keys never have at either end.
func normKey(key string) string { return strings.Trim(key, "/") }

var storeScript = redis.NewScript(`
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'm', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
return 1
`)

// Store puts value at key.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	key = normKey(key)
	if key == "" {
		return errors.New("cluster storage: empty key")
	}
	ctx, cancel := opCtx(ctx)
	defer cancel()
	err := storeScript.Run(ctx, s.c.rdb, []string{fileKeyPrefix + key, indexKey},
		value, time.Now().UnixMilli(), key).Err()
	return s.fail(OpStorage, err)
}

// Load returns the value at key, or fs.ErrNotExist.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	b, err := s.c.rdb.HGet(ctx, fileKeyPrefix+normKey(key), "v").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, s.fail(OpStorage, err)
	}
	return b, nil
}

// children returns the keys under dir ("" = all), from the index.
func (s *Storage) children(ctx context.Context, dir string) ([]string, error) {
	min, max := "-", "+"
	if dir != "" {
		min, max = "["+dir+"/", "("+dir+"0" // '0' follows '/'
	}
	keys, err := s.c.rdb.ZRangeByLex(ctx, indexKey, &redis.ZRangeBy{Min: min, Max: max}).Result()
	return keys, s.fail(OpStorage, err)
}

var deleteScript = redis.NewScript(`
for i, k in ipairs(ARGV) do
  redis.call('DEL', KEYS[1] .. k)
  redis.call('ZREM', KEYS[2], k)
end
return 1
`)

// Delete deletes key, and every key under it if it is a directory.
func (s *Storage) Delete(ctx context.Context, key string) error {
	key = normKey(key)
	ctx, cancel := opCtx(ctx)
	defer cancel()
	keys, err := s.children(ctx, key)
	if err != nil {
		return err
	}
	if key != "" {
		keys = append(keys, key)
	}
	for len(keys) > 0 {
		n := min(len(keys), 256)
		args := make([]any, n)
		for i, k := range keys[:n] {
			args[i] = k
		}
		if err := deleteScript.Run(ctx, s.c.rdb, []string{fileKeyPrefix, indexKey}, args...).Err(); err != nil {
			return s.fail(OpStorage, err)
		}
		keys = keys[n:]
	}
	return nil
}

// Exists reports whether key is a file or a directory.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// Stat describes key, or returns fs.ErrNotExist.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	key = normKey(key)
	ctx, cancel := opCtx(ctx)
	defer cancel()
	vals, err := s.c.rdb.HMGet(ctx, fileKeyPrefix+key, "v", "m").Result()
	if err != nil {
		return certmagic.KeyInfo{}, s.fail(OpStorage, err)
	}
	if len(vals) == 2 && vals[0] != nil {
		v, _ := vals[0].(string)
		ms, _ := vals[1].(string)
		m, _ := strconv.ParseInt(ms, 10, 64)
		return certmagic.KeyInfo{Key: key, Modified: time.UnixMilli(m), Size: int64(len(v)), IsTerminal: true}, nil
	}
	under, err := s.children(ctx, key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	if len(under) == 0 {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// List returns the keys in dir: its direct children, or with recursive
// every key under it, directories included, as full keys.
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	dir = normKey(dir)
	ctx, cancel := opCtx(ctx)
	defer cancel()
	keys, err := s.children(ctx, dir)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fs.ErrNotExist
	}
	base := ""
	if dir != "" {
		base = dir + "/"
	}
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, k := range keys {
		rest := strings.TrimPrefix(k, base)
		parts := strings.Split(rest, "/")
		if !recursive {
			add(base + parts[0])
			continue
		}
		for i := range parts {
			add(base + strings.Join(parts[:i+1], "/"))
		}
	}
	return out, nil
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Lock takes the named lock, waiting while another holds it, until ctx is
// done. The lease is renewed in the background until Unlock.
func (s *Storage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if ok {
			return nil
		}
		if err != nil && ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(lockPoll):
		}
	}
}

// TryLock takes the named lock if nobody holds it.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	token := newToken()
	octx, cancel := opCtx(ctx)
	ok, err := s.c.rdb.SetNX(octx, lockKeyPrefix+name, token, LockTTL).Result()
	cancel()
	if err != nil {
		return false, s.fail(OpLock, err)
	}
	if !ok {
		return false, nil
	}
	rctx, stop := context.WithCancel(context.Background())
	h := &heldLock{token: token, stop: stop, done: make(chan struct{})}
	s.mu.Lock()
	if old := s.locks[name]; old != nil {
		// The lease of an earlier holder in this process ran out
		// and we took the lock again: that renewal is over.
		old.stop()
	}
	s.locks[name] = h
	s.mu.Unlock()
	go s.renew(rctx, name, h)
	return true, nil
}

var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// renew extends h's lease every LockTTL/3 until Unlock, or until the lock
// turns out to be someone else's (the lease ran out meanwhile).
func (s *Storage) renew(ctx context.Context, name string, h *heldLock) {
	defer close(h.done)
	t := time.NewTicker(LockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.RenewLockLease(ctx, name, LockTTL); errors.Is(err, errLockLost) {
			s.c.log.Warn().Str("lock", name).Msg("certificate lock lost: its lease ran out before it was renewed")
			return
		}
	}
}

var errLockLost = errors.New("cluster storage: lock not held")

// RenewLockLease extends the lease of a lock this process holds, by at
// most LockTTL: certmagic asks for the length of its next retry (minutes,
// hours), but the background renewal keeps the lock as long as this
// process lives, and a longer lease would outlive a crash.
func (s *Storage) RenewLockLease(ctx context.Context, name string, lease time.Duration) error {
	lease = min(lease, LockTTL)
	s.mu.Lock()
	h := s.locks[name]
	s.mu.Unlock()
	if h == nil {
		return errLockLost
	}
	octx, cancel := opCtx(ctx)
	defer cancel()
	n, err := renewScript.Run(octx, s.c.rdb, []string{lockKeyPrefix + name}, h.token, lease.Milliseconds()).Int64()
	if err != nil {
		return s.fail(OpLock, err)
	}
	if n == 0 {
		return errLockLost
	}
	return nil
}

// Unlock releases a lock this process holds.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.locks[name]
	delete(s.locks, name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("cluster storage: unlock %q: not locked here", name)
	}
	h.stop()
	<-h.done
	octx, cancel := opCtx(ctx)
	defer cancel()
	err := unlockScript.Run(octx, s.c.rdb, []string{lockKeyPrefix + name}, h.token).Err()
	return s.fail(OpLock, err)
}

// String names the storage in certmagic's logs.
func (s *Storage) String() string { return "redis:" + s.c.node }
