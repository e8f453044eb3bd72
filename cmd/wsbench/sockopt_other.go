//go:build !linux

package main

import "syscall"

func bindNoPort(network, address string, rc syscall.RawConn) error { return nil }
