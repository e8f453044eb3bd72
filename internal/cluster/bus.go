package cluster

// The message bus between instances: the seam for the sessions API across
// the cluster (a push, close or broadcast sent to one instance's admin API
// for a session that lives on another). Each instance subscribes to its
// own channel, wsgate:bus:<id>, and to wsgate:bus:all. Messages are
// opaque bytes; what they mean (and the directory of session id ->
// instance) belongs to the sessions API. Redis pub/sub delivers at most
// once, to the subscribers connected at that moment: a sender that needs
// an answer waits for one, with a timeout.

import (
	"context"
	"errors"
)

const (
	busPrefix = prefix + "bus:"
	busAll    = busPrefix + "all"
)

// Bus carries messages between the instances of a cluster. *Cluster
// implements it.
type Bus interface {
	// ID is this instance's address on the bus (name#incarnation).
	ID() string
	// Nodes lists the instances alive now, by ID.
	Nodes(ctx context.Context) ([]string, error)
	// Publish sends msg to the instance with that ID; Broadcast to every
	// instance, this one included. Both report how many instances got it.
	Publish(ctx context.Context, id string, msg []byte) (int64, error)
	Broadcast(ctx context.Context, msg []byte) (int64, error)
	// Subscribe calls handle, on one goroutine, for each message sent to
	// this instance or to all, until stop is called.
	Subscribe(handle func(msg []byte)) (stop func(), err error)
}

var _ Bus = (*Cluster)(nil)

// Publish sends msg to the instance id.
func (c *Cluster) Publish(ctx context.Context, id string, msg []byte) (int64, error) {
	if id == "" {
		return 0, errors.New("cluster: publish to no instance")
	}
	n, err := c.rdb.Publish(ctx, busPrefix+id, msg).Result()
	if err != nil {
		c.failed(OpPublish, err)
	}
	return n, err
}

// Broadcast sends msg to every instance.
func (c *Cluster) Broadcast(ctx context.Context, msg []byte) (int64, error) {
	n, err := c.rdb.Publish(ctx, busAll, msg).Result()
	if err != nil {
		c.failed(OpPublish, err)
	}
	return n, err
}

// Subscribe delivers the messages for this instance to handle. The
// subscription survives Redis going away: go-redis subscribes again when
// it reconnects (messages sent meanwhile are lost).
func (c *Cluster) Subscribe(handle func(msg []byte)) (func(), error) {
	ctx, cancel := context.WithCancel(context.Background())
	ps := c.rdb.Subscribe(ctx, busPrefix+c.id, busAll)
	// Wait for the confirmation, so that messages published after
	// Subscribe returns are received.
	rctx, rcancel := context.WithTimeout(ctx, bgTimeout)
	_, err := ps.Receive(rctx)
	rcancel()
	if err != nil {
		cancel()
		ps.Close()
		c.failed(OpSubscribe, err)
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ps.Channel() {
			handle([]byte(m.Payload))
		}
	}()
	return func() {
		cancel()
		ps.Close()
		<-done
	}, nil
}
