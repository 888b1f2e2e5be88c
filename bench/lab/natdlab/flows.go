package natdlab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/xnat/xnat/bench/lab"
)

// TCPHelloVia is TCPHello for a server that is reached through a different
// address than the one it listens on (a port forward): the server listens
// on listen in serverNS, the client in clientNS dials dial.
func TCPHelloVia(clientNS, serverNS string, listen, dial netip.AddrPort) (greeting string, seen netip.AddrPort, err error) {
	ln, err := ListenTCP(serverNS, listen)
	if err != nil {
		return "", seen, err
	}
	defer ln.Close()
	seenCh := make(chan netip.AddrPort, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(seenCh)
			return
		}
		defer c.Close()
		ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		fmt.Fprintf(c, "hello world! you are %s\n", ap)
		seenCh <- ap
	}()
	c, err := DialTCP(clientNS, dial, 3*time.Second)
	if err != nil {
		return "", seen, fmt.Errorf("connect %s: %w", dial, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", seen, fmt.Errorf("read greeting: %w", err)
	}
	select {
	case s, ok := <-seenCh:
		if !ok {
			return line, seen, errors.New("server accept failed")
		}
		seen = s
	case <-time.After(3 * time.Second):
		return line, seen, errors.New("server never accepted")
	}
	return strings.TrimSpace(line), seen, nil
}

// Echo answers every datagram on c with itself until c is closed.
func Echo(c *net.UDPConn) {
	lab.ServeUDP(c, func(msg []byte, _ netip.AddrPort) []byte { return msg })
}

// Senders is the set of sources an echo server answered; its methods may
// be called from any goroutine.
type Senders struct {
	mu   sync.Mutex
	seen map[netip.AddrPort]bool
}

// Echo answers as the function Echo does, recording each sender, until c
// is closed.
func (s *Senders) Echo(c *net.UDPConn) {
	lab.ServeUDP(c, func(msg []byte, from netip.AddrPort) []byte {
		s.mu.Lock()
		if s.seen == nil {
			s.seen = map[netip.AddrPort]bool{}
		}
		s.seen[from] = true
		s.mu.Unlock()
		return msg
	})
}

// Seen returns a copy of the senders answered so far.
func (s *Senders) Seen() map[netip.AddrPort]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.AddrPort]bool, len(s.seen))
	maps.Copy(out, s.seen)
	return out
}

// UDPFlow is one UDP socket of an inside host talking to one server: one
// NAT mapping.
type UDPFlow struct {
	c      *net.UDPConn
	server netip.AddrPort
}

// NewUDPFlow opens a socket in ns bound to local (port 0: any).
func NewUDPFlow(ns string, local netip.Addr, server netip.AddrPort) (*UDPFlow, error) {
	c, err := ListenUDP(ns, netip.AddrPortFrom(local, 0))
	if err != nil {
		return nil, err
	}
	return &UDPFlow{c: c, server: server}, nil
}

// RoundTrip sends msg and reports whether the echo came back within a
// second.
func (f *UDPFlow) RoundTrip(msg string) bool {
	if _, err := f.c.WriteToUDPAddrPort([]byte(msg), f.server); err != nil {
		return false
	}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(time.Second)
	for {
		f.c.SetReadDeadline(deadline)
		n, _, err := f.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return false
		}
		if string(buf[:n]) == msg {
			return true
		}
	}
}

// Close closes the socket.
func (f *UDPFlow) Close() error { return f.c.Close() }

// OpenEcho starts a TCP echo server in serverNS on addr and connects to it
// from clientNS; it returns the client's connection and the source the
// server saw. The server goroutine ends when the connection closes.
func OpenEcho(clientNS, serverNS string, addr netip.AddrPort) (net.Conn, netip.AddrPort, error) {
	ln, err := ListenTCP(serverNS, addr)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	seenCh := make(chan netip.AddrPort, 1)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			close(seenCh)
			return
		}
		seenCh <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
		io.Copy(c, c)
		c.Close()
	}()
	c, err := DialTCP(clientNS, addr, 3*time.Second)
	if err != nil {
		ln.Close()
		return nil, netip.AddrPort{}, err
	}
	select {
	case s, ok := <-seenCh:
		if !ok {
			c.Close()
			return nil, s, errors.New("echo server accept failed")
		}
		return c, s, nil
	case <-time.After(3 * time.Second):
		c.Close()
		return nil, netip.AddrPort{}, errors.New("echo server never accepted")
	}
}
