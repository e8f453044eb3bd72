//go:build race

package frame_test

// raceEnabled is true under -race, where sync.Pool drops a quarter of its
// Puts on purpose, so allocation budgets of pooled code cannot be checked.
const raceEnabled = true
