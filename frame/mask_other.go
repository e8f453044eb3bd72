//go:build !amd64

package frame

// maskArch is Mask's implementation: maskGeneric, where there is no assembly.
func maskArch(key [4]byte, pos int, b []byte) int { return maskGeneric(key, pos, b) }
