//go:build race

package ratelimit

// millionAddresses is how many distinct addresses TestKeyedMillionAddresses
// pushes through the limiter. Under the race detector each call costs ten
// times as much, and a 1M run would slow every other package's tests down
// with it: the full million runs without -race.
const millionAddresses = 200_000
