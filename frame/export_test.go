package frame

// MaskGeneric is the portable Mask, for benchmarks in package frame_test. A
// wrapper the compiler inlines, so that it is called as directly as Mask.
func MaskGeneric(key [4]byte, pos int, b []byte) int { return maskGeneric(key, pos, b) }
