// Package events delivers the gateway's session events (README "Sessions
// API and events") to the receivers the config names: one HTTP POST of a
// JSON body per event, off the relay's path.
//
// # The model
//
//  1. Send takes a Job (a URL, a timeout, a body already encoded) and
//     returns at once. It never blocks and never waits for the network.
//  2. At most Options.Max jobs are pending at a time: queued, being posted,
//     waiting for a retry, or waiting for the job before them. Past that,
//     Send drops the job and reports it (result "dropped"): a receiver that
//     is down costs bounded memory, whatever the session rate.
//  3. A fixed set of workers posts the queued jobs. An attempt that fails
//     (no connection, no answer within the job's timeout, a status other
//     than 2xx) is retried Retries times, after 1 s, 2 s and 4 s (each
//     stretched by up to a quarter at random, so that retries after an
//     outage do not all arrive at once); then the job is given up
//     (result "failed"). A waiting retry holds no goroutine, only a timer.
//  4. A job may follow another (Job.After): it is not posted before that
//     one is finished (delivered, failed or dropped), so that a session's
//     disconnect never reaches the receiver before its connect.
//
// Every job ends with exactly one result ("ok", "failed", "dropped"),
// reported to Options.Result (the gateway counts them in
// wsgate_events_total).
package events
