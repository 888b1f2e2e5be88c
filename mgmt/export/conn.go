package export

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Conn is a connection to a collector that redials when a stream breaks,
// at most once per RetryInterval, so that a collector that is down costs
// one failed dial a second, not one per batch. Its owner goroutine alone
// uses it.
type Conn struct {
	transport Transport
	addr      string
	local     net.Addr
	c         net.Conn
	lastDial  time.Time
	// Fresh is set when a new connection was made since the owner last
	// cleared it (IPFIX sends its templates again on a new TCP stream).
	Fresh bool
}

// RetryInterval is the least time between two dials.
const RetryInterval = time.Second

// ErrNotConnected is returned while the collector cannot be reached.
var ErrNotConnected = errors.New("not connected to the collector")

// NewConn checks the addresses; it dials on first use.
func NewConn(t Transport, addr, source string) (*Conn, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("%q is not host:port: %v", addr, err)
	}
	c := &Conn{transport: t, addr: addr}
	if source != "" {
		ip, err := netip.ParseAddr(source)
		if err != nil {
			return nil, fmt.Errorf("source %q is not an IP address", source)
		}
		if t == TCP {
			c.local = &net.TCPAddr{IP: ip.AsSlice()}
		} else {
			c.local = &net.UDPAddr{IP: ip.AsSlice()}
		}
	}
	return c, nil
}

// Write sends one message (a datagram, or bytes on the stream).
func (c *Conn) Write(b []byte) error {
	if c.c == nil {
		if time.Since(c.lastDial) < RetryInterval {
			return ErrNotConnected
		}
		c.lastDial = time.Now()
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: c.local}
		conn, err := d.Dial(c.transport.String(), c.addr)
		if err != nil {
			return err
		}
		c.c, c.Fresh = conn, true
	}
	_ = c.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.c.Write(b); err != nil {
		if c.transport == TCP {
			c.c.Close()
			c.c = nil
		}
		return err
	}
	return nil
}

// Connected reports whether a connection is open; the next Write dials
// when it is not.
func (c *Conn) Connected() bool { return c.c != nil }

// Close closes the connection.
func (c *Conn) Close() error {
	if c.c == nil {
		return nil
	}
	err := c.c.Close()
	c.c = nil
	return err
}
