package main

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h), missing
// from package syscall.
const ipBindAddressNoPort = 24

// bindNoPort defers the choice of the source port from bind to connect
// when a source address is set, so the kernel picks a port free for this
// 4-tuple (and may reuse loopback TIME_WAIT ports) instead of one unused by
// any socket on that address.
func bindNoPort(network, address string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
