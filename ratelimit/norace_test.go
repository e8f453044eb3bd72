//go:build !race

package ratelimit

// millionAddresses: see race_test.go.
const millionAddresses = 1_000_000
