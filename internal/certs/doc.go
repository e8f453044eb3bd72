// Package certs is where the TLS listener's certificates come from
// (docs/operations.md "TLS and static certificates", "Automatic HTTPS
// (ACME)"): static certificate files looked up by SNI name (Set), and
// certmagic's ACME manager for route hosts no static certificate covers
// (ACME). It imports config for the schema and nothing else of the
// gateway.
package certs
