package lab

import (
	"net"
	"net/netip"
)

// ServeTCP is the accept loop of the labs' TCP servers: it serves each
// connection ln accepts with serve in a goroutine of its own, closing the
// connection when serve returns, until ln is closed.
func ServeTCP(ln net.Listener, serve func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			serve(c)
		}()
	}
}

// ServeUDP is the loop of the labs' UDP servers (echo, tell the sender its
// address as seen after the NAT): it answers each datagram on c with
// answer(datagram, sender), sending nothing when that is nil, until c is
// closed. msg is only valid during the call.
func ServeUDP(c *net.UDPConn, answer func(msg []byte, from netip.AddrPort) []byte) {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if r := answer(buf[:n], from); r != nil {
			c.WriteToUDPAddrPort(r, from)
		}
	}
}
