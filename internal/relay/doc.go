// Package relay moves WebSocket frames between a client connection and an
// upstream connection once both handshakes are done: it validates every
// frame, re-masks client frames with fresh keys, enforces the size caps and
// the per-session rate limits, runs keepalive, idle and close timers, and
// turns every way a session can end into the close frames each side gets.
// The rules it implements are written down in docs/relay.md; the close
// table is closetable.go, row by row.
//
// It imports frame and ratelimit only: it knows nothing of the gateway,
// net/http or Prometheus. What the gateway needs from it goes through a
// small surface: New, Attach, SetLimits, Run; Shutdown, Drain and Cut to
// end a session from outside; Push and Disconnect for the sessions API
// (push.go); Tally, CloseSent, Outcome and Pushed to report one;
// a Counter interface for limit hits (called only on a hit); a Poller per
// gateway for parked legs; Trim for the memory trimmer.
//
// # Model
//
// A Session owns two legs, the client's and the upstream's. Each leg has a
// pump: a goroutine that reads frames from that leg and writes them to the
// other. Run starts the upstream's pump and runs the client's on the
// caller's goroutine. The first terminal event (a violation, a peer gone, a
// timer, a Close, shutdown) decides through the close table which Close
// frame each side gets; the session ends when both pumps have finished,
// and OnEnd is called once.
//
// With permessage-deflate negotiated (SetDeflate; deflate.go), compressed
// messages are relayed as they arrived and inflated on the way only to be
// checked; an inflater is held only while a compressed message is in
// flight (across a park between its fragments too), none between messages.
//
// A leg quiet for ParkAfter parks at a frame boundary (park.go): its read
// buffer goes back to the pool, the gateway's Poller watches its descriptor,
// a timer stands in for its deadlines, and its pump goroutine ends. Input,
// EOF, the timer or a wake from the rest of the session starts a new pump
// on the same state. An idle session holds no goroutine and no buffer.
//
// # Concurrency contract
//
//   - A leg's reading half (its bufio.Reader, message state, timers'
//     lastRead and pingSent, pend) is owned by the pump reading it. At most
//     one pump runs per leg at a time: parking and resuming are ordered by
//     the leg's pmu.
//   - A leg's writing half is shared (the other pump relays into it; pings,
//     close frames and shutdown closes are written to it) and serialised by
//     its wmu, always at frame boundaries: exactly one writer per
//     connection. sentClose is published before a Close is written (nothing
//     may follow it), closeOut after the write is over (the leg may then be
//     half-closed).
//   - Session.emu serialises close decisions: which Close each leg gets is
//     decided and sent under it, so two terminal events never interleave
//     half-way. It is taken before a leg's wmu, never while holding one.
//     owed/owedWhy (the client's held-back Close) are guarded by it.
//   - Session.mu guards the outcome (why, closedBy, truncated).
//   - Flags read across pumps (recvClose, sentClose, closeOut, dead, lost,
//     cut, parked, closeDeadline, gen, the tallies) are atomics; each is
//     written by the side that owns the event it records.
//   - Pushed messages (push.go) are written to the client leg by the
//     upstream leg's pump, the client's one writer of data, at the top of
//     its loop and never inside a fragmented message; the queue is guarded
//     by its own mutex, never held while writing. Push wakes that pump.
//   - wake (a read deadline in the past, or resuming a parked pump) is how
//     one pump makes the other look at the session again; gen makes sure a
//     wake that races with rearm is never lost.
//
// # Hot path
//
// Per frame the relay allocates nothing and makes no interface call of its
// own: buffers come from the pools in pools.go (taken only while a payload
// is in flight), legs hold concrete types, and limit counters are called
// only on a hit. BenchmarkRelayEcho and the alloc tests in proxy/ hold it to
// that.
package relay
