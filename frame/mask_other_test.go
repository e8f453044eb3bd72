//go:build !amd64

package frame

func vectorImpls() []maskImpl { return nil }
