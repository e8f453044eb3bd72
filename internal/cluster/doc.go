// Package cluster is what several gateway instances share through one
// Redis or Valkey server (README "Running several instances"): rate limits
// summed over the instances, ACME certificates and their locks, and a
// message bus between instances for the sessions API.
//
// # The store is the user's
//
// The gateway never elects, replicates or agrees on anything itself: every
// shared decision is one Lua script run atomically by the server. The
// server may be slow or gone; the gateway must not be:
//
//   - A handshake makes at most one round trip (Admit: the handshakes
//     bucket and the connections_per_ip count in one script), bounded by
//     DefaultOpTimeout (50 ms). Nothing on the relay path calls Redis: messages_per_ip is
//     decided on local buckets that exchange their consumption every
//     SyncInterval (SyncPerIP), and connection releases are queued.
//   - A background ping every PingInterval tells whether the server is up
//     (wsgate_cluster_up). A failed operation marks it down at once. While
//     it is down no handshake waits for it: with fail: open each instance
//     falls back to its own limiters, with fail: closed handshakes get
//     503. When the ping succeeds again the instance rejoins: it writes its
//     open connections back (they may have been lost with the server's
//     memory) and the shared limits resume.
//
// # Keys
//
// Every key starts with "wsgate:" and expires:
//
//   - wsgate:h:<route>:<rate>:<ip> — a GCRA bucket's theoretical arrival
//     time, for handshakes; it expires when the bucket is full again.
//   - wsgate:m:<route>:<rate>:<ip> — a token bucket (tokens, time) for
//     messages_per_ip; it expires when it is full again.
//   - wsgate:c:<route>:<ip> — a hash of instance → open sessions, for
//     connections_per_ip. An instance counts only while its entry in
//     wsgate:nodes is fresh: a heartbeat renews it every Heartbeat, and a
//     killed instance's slots stop counting NodeTTL after its last
//     heartbeat. The hash expires ConnTTL after its last write; every
//     instance writes its own counts again every Reassert.
//   - wsgate:nodes — a hash of instance → heartbeat expiry.
//   - wsgate:certs:… and wsgate:locks:… — certmagic storage (Storage).
//   - wsgate:bus:<node> — a pub/sub channel per instance (Bus).
//
// An instance is named by cluster.node plus a random incarnation, so that
// a restarted instance of the same name does not inherit the counts of the
// one that crashed.
package cluster
