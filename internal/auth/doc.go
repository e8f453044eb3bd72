// Package auth authenticates requests at the edge, before the gateway dials
// anything (README "Authentication"): a JWT checked against keys from a JWK
// Set URL, PEM files or an HMAC secret, and/or a subrequest to an auth
// service (like nginx's auth_request); with both, the token is checked
// first.
//
// # The model
//
// One Auth is built per route when a config snapshot is built (New), and
// has one entry point, Check, that works on any *http.Request — a WebSocket
// upgrade or a plain HTTP request — and returns a Result:
//
//  1. Allowed or not. When not: the status, headers and body the client
//     gets (401 with WWW-Authenticate from the JWT check, 503 when no key
//     or auth service could be reached, or the auth service's own non-2xx
//     answer with its bounded body, WWW-Authenticate, Location and
//     Set-Cookie), and a short reason for the log.
//  2. When allowed: Apply rewrites the request for the upstream — the
//     credential is removed from where it was found (unless forward_token),
//     client-sent copies of the headers the gateway sets are removed, and
//     the headers from claims_to_headers or copy_headers are set. Offer
//     filters the subprotocol offers (a token carried as a subprotocol is
//     never offered upstream).
//  3. User (the sub claim, or the auth service's X-User-Id when copied),
//     Expires (the token's exp, with expiry: close) for the relay's session
//     deadline, and Outcome, the wsgate_auth_total result label.
//
// Check never blocks longer than one key fetch or the auth service's
// timeout, and never panics on what a client sends.
//
// # Keys
//
// JOSE is the libraries' job: github.com/golang-jwt/jwt/v5 parses and
// verifies tokens, github.com/MicahParks/jwkset parses JWK Sets and
// github.com/MicahParks/keyfunc/v3 picks a key by kid. This package owns the
// policy around them (jwks.go): the algorithm allowlist is enforced before
// any key is looked at; a key is handed to the verifier only if its type is
// the one the token's alg names (an RSA public key is never used as an HMAC
// secret: the algorithm-confusion attack), and HMAC secrets come only from
// secret_file, never from a JWK Set. A JWK Set is fetched when the Auth is
// built, again in the background when it is older than RefreshEvery (the
// handshake that notices does not wait), and at once on a token with an
// unknown kid, at most once per UnknownKIDEvery; a failed fetch keeps the
// last good keys. Sets are shared by URL through a Registry that lives as
// long as the gateway, so a reload neither refetches nor loses them.
//
// No goroutine outlives a fetch: there is nothing to stop when a snapshot
// is replaced.
package auth
