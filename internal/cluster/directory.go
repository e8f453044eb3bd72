package cluster

// The directory of sessions: which instance holds a session, so that the
// sessions API on any instance reaches a session on any other (README
// "Running several instances"). Each instance keeps the ids of its own
// sessions in a hash, wsgate:dir:<id>, that expires DirTTL after its last
// full rewrite: the sessions of an instance that died leave the directory
// with it, and a rewrite repairs whatever an outage of Redis lost.
// Additions and removals are queued and written in batches, never waited
// for: a handshake makes no Redis call for the directory.

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	dirPrefix = prefix + "dir:"
	// DirTTL is how long an instance's directory outlives its last
	// rewrite; DirRewrite how often it is rewritten whole.
	DirTTL     = 15 * time.Second
	DirRewrite = 5 * time.Second
	// dirBatch is how often queued changes are written.
	dirBatch = 50 * time.Millisecond
	// dirQueue bounds the queued changes; past it they are dropped until
	// the next rewrite.
	dirQueue = 16384
	OpDir    = "directory"
)

type dirChange struct {
	id  string
	add bool
}

// StartDirectory keeps this instance's sessions in the directory until
// Close: ids lists them all, for the rewrites. Call it once.
func (c *Cluster) StartDirectory(ids func() []string) {
	c.mu.Lock()
	if c.closed || c.dir != nil {
		c.mu.Unlock()
		return
	}
	c.dir = make(chan dirChange, dirQueue)
	ctx, cancel := context.WithCancel(context.Background())
	prev := c.stop
	c.stop = func() { cancel(); prev() }
	c.done.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.done.Done()
		c.dirLoop(ctx, ids)
	}()
}

// DirAdd and DirRemove queue a change of this instance's sessions.
func (c *Cluster) DirAdd(id string)    { c.dirQueue(dirChange{id: id, add: true}) }
func (c *Cluster) DirRemove(id string) { c.dirQueue(dirChange{id: id}) }

func (c *Cluster) dirQueue(ch dirChange) {
	if c.dir == nil {
		return
	}
	select {
	case c.dir <- ch:
	default: // the next rewrite has it right
	}
}

func (c *Cluster) dirLoop(ctx context.Context, ids func() []string) {
	key := dirPrefix + c.id
	batch := time.NewTicker(dirBatch)
	defer batch.Stop()
	rewrite := time.NewTicker(DirRewrite)
	defer rewrite.Stop()
	c.dirRewrite(ctx, key, ids())
	var pending []dirChange
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), bgTimeout)
			_ = c.rdb.Del(dctx, key).Err()
			cancel()
			return
		case ch := <-c.dir:
			pending = append(pending, ch)
		case <-batch.C:
			if len(pending) == 0 || !c.Up() {
				continue
			}
			bctx, cancel := context.WithTimeout(ctx, bgTimeout)
			_, err := c.rdb.Pipelined(bctx, func(p redis.Pipeliner) error {
				for _, ch := range pending {
					if ch.add {
						p.HSet(bctx, key, ch.id, 1)
					} else {
						p.HDel(bctx, key, ch.id)
					}
				}
				p.Expire(bctx, key, DirTTL)
				return nil
			})
			cancel()
			if err != nil && ctx.Err() == nil {
				c.failed(OpDir, err)
			}
			pending = pending[:0]
		case <-rewrite.C:
			c.dirRewrite(ctx, key, ids())
		}
	}
}

// dirRewrite replaces this instance's directory with all its sessions.
func (c *Cluster) dirRewrite(ctx context.Context, key string, all []string) {
	if !c.Up() {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, bgTimeout)
	defer cancel()
	_, err := c.rdb.TxPipelined(rctx, func(p redis.Pipeliner) error {
		p.Del(rctx, key)
		for i := 0; i < len(all); i += 1000 {
			args := make([]any, 0, 2*min(1000, len(all)-i))
			for _, id := range all[i:min(i+1000, len(all))] {
				args = append(args, id, 1)
			}
			p.HSet(rctx, key, args...)
		}
		p.Expire(rctx, key, DirTTL)
		return nil
	})
	if err != nil && ctx.Err() == nil {
		c.failed(OpDir, err)
	}
}

// Owner returns the bus ID of the live instance that holds session id
// (other than this one), or "" if none does.
func (c *Cluster) Owner(ctx context.Context, id string) (string, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return "", err
	}
	var others []string
	for _, n := range nodes {
		if n != c.id {
			others = append(others, n)
		}
	}
	if len(others) == 0 {
		return "", nil
	}
	cmds := make([]*redis.BoolCmd, len(others))
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range others {
			cmds[i] = p.HExists(ctx, dirPrefix+n, id)
		}
		return nil
	})
	if err != nil {
		c.failed(OpDir, err)
		return "", err
	}
	for i, cmd := range cmds {
		if cmd.Val() {
			return others[i], nil
		}
	}
	return "", nil
}
