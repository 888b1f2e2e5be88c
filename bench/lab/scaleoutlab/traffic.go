package scaleoutlab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/xnat/xnat/bench/lab"
)

// Ports of the lab server: TCP answers every line with the address:port
// it sees the connection come from; UDP answers every datagram the same
// way. The subscriber learns which appliance's pool it left from.
const (
	tcpPort = 7000
	udpPort = 7001
)

// Flow is one flow a subscriber made.
type Flow struct {
	Start, End time.Time
	UDP        bool
	// Long: a long-lived TCP session (the drain test's).
	Long bool
	OK   bool
	// Appliance the flow left from (-1: unknown, failed).
	Appliance int
	Err       string
}

// Subscriber is one inside address and what its flows did.
type Subscriber struct {
	Addr netip.Addr
	host string

	mu    sync.Mutex
	flows []Flow
}

func (s *Subscriber) record(f Flow) {
	s.mu.Lock()
	s.flows = append(s.flows, f)
	s.mu.Unlock()
}

// Flows returns the flows that started in [from, to).
func (s *Subscriber) Flows(from, to time.Time) []Flow {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Flow
	for _, f := range s.flows {
		if !f.Start.Before(from) && f.Start.Before(to) {
			out = append(out, f)
		}
	}
	// Flows end, and are recorded, out of order.
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Traffic is the server and the subscribers' flow generators.
type Traffic struct {
	env      *Env
	Subs     []*Subscriber
	interval time.Duration
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closers  []func() error
}

// applianceOf maps an outside address to the appliance whose pool holds it.
func (e *Env) applianceOf(a netip.Addr) int {
	for i := range e.Appliances {
		if Pool(i).Contains(a) {
			return i
		}
	}
	return -1
}

// StartServer opens the server's sockets in its namespace.
func (t *Traffic) startServer() error {
	var ln net.Listener
	err := lab.Do(t.env.Server, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", tcpPort))
		return err
	})
	if err != nil {
		return err
	}
	t.closers = append(t.closers, ln.Close)
	go lab.ServeTCP(ln, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			if _, err := fmt.Fprintf(c, "%s\n", c.RemoteAddr()); err != nil {
				return
			}
		}
	})
	// One UDP socket per destination address, so that each answer comes
	// from the address the subscriber wrote to (the NAT's filtering
	// admits it whatever the filtering behaviour).
	for _, d := range t.env.Destinations {
		var uc *net.UDPConn
		err := lab.Do(t.env.Server, func() error {
			var err error
			uc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(d, udpPort)))
			return err
		})
		if err != nil {
			return err
		}
		t.closers = append(t.closers, uc.Close)
		go lab.ServeUDP(uc, func(_ []byte, from netip.AddrPort) []byte { return []byte(from.String() + "\n") })
	}
	return nil
}

// StartTraffic starts the server and one flow generator per subscriber:
// each makes a new flow every interval, alternating TCP and UDP and going
// round the server's addresses.
func (e *Env) StartTraffic(interval time.Duration) (*Traffic, error) {
	t := &Traffic{env: e, interval: interval}
	if err := t.startServer(); err != nil {
		t.Stop()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	for h, addrs := range e.Subscribers {
		for _, a := range addrs {
			t.Subs = append(t.Subs, &Subscriber{Addr: a, host: e.Hosts[h]})
		}
	}
	for n, s := range t.Subs {
		t.wg.Add(1)
		go t.run(ctx, s, n)
	}
	return t, nil
}

// run is one subscriber's generator: it starts a flow every interval,
// each on its own goroutine, so that a flow hanging until its timeout
// (its appliance just died) does not delay the next: the failover
// figures then have the interval's resolution, not the timeout's. Each
// flow's goroutine opens its socket from an OS thread switched into the
// subscriber's host namespace (lab.Do).
func (t *Traffic) run(ctx context.Context, s *Subscriber, n int) {
	defer t.wg.Done()
	// Spread the subscribers' flows over the interval.
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(n) * t.interval / time.Duration(len(t.Subs))):
	}
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	var flows sync.WaitGroup
	defer flows.Wait()
	for k := n; ; k++ {
		dst := t.env.Destinations[k%len(t.env.Destinations)]
		udp := k%2 == 1
		flows.Add(1)
		go func() {
			defer flows.Done()
			lab.Do(s.host, func() error {
				if udp {
					s.record(t.env.udpFlow(s.Addr, dst))
				} else {
					s.record(t.env.tcpFlow(s.Addr, dst, 0))
				}
				return nil
			})
		}()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// flowTimeout bounds each exchange: longer than any answer takes on a
// loaded 2-core machine (natd's workers share it with the test's 300
// flow generators and whatever else runs), short enough that a flow lost
// with a killed appliance does not hide the failover the test measures.
const flowTimeout = 2 * time.Second

// tcpFlow connects from src to dst, exchanges 1+extra lines (one every
// 200 ms after the first), and closes. Call it from the subscriber's
// namespace.
func (e *Env) tcpFlow(src, dst netip.Addr, extra int) Flow {
	f := Flow{Start: time.Now(), Appliance: -1, Long: extra > 0}
	defer func() { f.End = time.Now() }()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: flowTimeout}
	c, err := d.Dial("tcp", netip.AddrPortFrom(dst, tcpPort).String())
	if err != nil {
		f.Err = err.Error()
		return f
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for i := 0; i <= extra; i++ {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		c.SetDeadline(time.Now().Add(flowTimeout))
		if _, err := c.Write([]byte("x\n")); err != nil {
			f.Err = err.Error()
			return f
		}
		line, err := r.ReadString('\n')
		if err != nil {
			f.Err = err.Error()
			return f
		}
		a := e.seenFrom(line)
		if a < 0 || (f.Appliance >= 0 && a != f.Appliance) {
			f.Err = fmt.Sprintf("answer %q: not from one appliance's pool", strings.TrimSpace(line))
			return f
		}
		f.Appliance = a
	}
	f.OK = true
	return f
}

// udpFlow sends one datagram from a new socket and waits for the answer.
func (e *Env) udpFlow(src, dst netip.Addr) Flow {
	f := Flow{Start: time.Now(), UDP: true, Appliance: -1}
	defer func() { f.End = time.Now() }()
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, udpPort)))
	if err != nil {
		f.Err = err.Error()
		return f
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(flowTimeout))
	if _, err := c.Write([]byte("u\n")); err != nil {
		f.Err = err.Error()
		return f
	}
	buf := make([]byte, 128)
	n, err := c.Read(buf)
	if err != nil {
		f.Err = err.Error()
		return f
	}
	if f.Appliance = e.seenFrom(string(buf[:n])); f.Appliance < 0 {
		f.Err = fmt.Sprintf("answer %q: not from an appliance's pool", strings.TrimSpace(string(buf[:n])))
		return f
	}
	f.OK = true
	return f
}

func (e *Env) seenFrom(line string) int {
	ap, err := netip.ParseAddrPort(strings.TrimSpace(line))
	if err != nil {
		return -1
	}
	return e.applianceOf(ap.Addr())
}

// LongSessions opens one long TCP session from each of subs (lines every
// 200 ms for about d) and returns a channel that yields their flows as
// they end.
func (t *Traffic) LongSessions(subs []*Subscriber, d time.Duration) <-chan Flow {
	ch := make(chan Flow, len(subs))
	for k, s := range subs {
		go lab.Do(s.host, func() error {
			f := t.env.tcpFlow(s.Addr, t.env.Destinations[k%len(t.env.Destinations)], int(d/(200*time.Millisecond)))
			s.record(f)
			ch <- f
			return nil
		})
	}
	return ch
}

// Stop ends the generators and closes the server.
func (t *Traffic) Stop() {
	if t.cancel != nil {
		t.cancel()
	}
	t.wg.Wait()
	for _, c := range t.closers {
		c()
	}
}
