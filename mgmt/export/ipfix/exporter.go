package ipfix

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/xnat/xnat/mgmt/export"
)

// Options configure an IPFIX exporter (natd.yaml logging.ipfix).
type Options struct {
	// Collector is host:port (IANA port 4739).
	Collector string
	Transport export.Transport
	// Source is the local address to send from; "" lets the kernel choose.
	Source string
	// ObservationDomain goes in every message header.
	ObservationDomain uint32
	// TemplateRefresh is how often templates are sent again over UDP
	// (RFC 7011 section 8.4); default 60 s. TCP sends them once per
	// connection.
	TemplateRefresh time.Duration
	// Now is the clock for export times (tests); default time.Now.
	Now func() time.Time
}

// Encoder is the IPFIX export.Encoder. Only the export.Queue's goroutine
// uses it.
type Encoder struct {
	opts          Options
	conn          *export.Conn
	seq           uint32
	lastTemplates time.Time
	sentTemplates bool
	buf           []byte
	// Counters, read by the metrics goroutine.
	templates, messages atomic.Uint64
}

// New checks the options; it connects on the first send.
func New(o Options) (*Encoder, error) {
	if o.TemplateRefresh == 0 {
		o.TemplateRefresh = 60 * time.Second
	}
	if o.TemplateRefresh < time.Second {
		return nil, fmt.Errorf("template_refresh %v is below 1s", o.TemplateRefresh)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c, err := export.NewConn(o.Transport, o.Collector, o.Source)
	if err != nil {
		return nil, err
	}
	return &Encoder{opts: o, conn: c}, nil
}

func (e *Encoder) max() int {
	if e.opts.Transport == export.TCP {
		return maxTCPMessage
	}
	return maxUDPMessage
}

// templatesDue reports whether the next message must carry the templates:
// the first one, the first on a new TCP connection (one about to be
// dialled), and over UDP every TemplateRefresh.
func (e *Encoder) templatesDue(now time.Time) bool {
	if !e.sentTemplates || e.conn.Fresh || !e.conn.Connected() {
		return true
	}
	return e.opts.Transport == export.UDP && now.Sub(e.lastTemplates) >= e.opts.TemplateRefresh
}

func (e *Encoder) write(msg []byte, withTemplates bool, now time.Time) error {
	if err := e.conn.Write(msg); err != nil {
		return err
	}
	e.conn.Fresh = false
	e.messages.Add(1)
	if withTemplates {
		e.sentTemplates, e.lastTemplates = true, now
		e.templates.Add(uint64(numTemplateRec))
	}
	return nil
}

// Send implements export.Encoder.
func (e *Encoder) Send(recs []export.Record) (int, error) {
	sent := 0
	for sent < len(recs) {
		now := e.opts.Now()
		withT := e.templatesDue(now)
		var n int
		e.buf, n = appendMessage(e.buf[:0], now, e.seq, e.opts.ObservationDomain, withT, recs[sent:], e.max())
		if err := e.write(e.buf, withT, now); err != nil {
			return sent, err
		}
		e.seq += uint32(n)
		sent += n
	}
	return sent, nil
}

// Tick sends the templates alone when a UDP refresh is due and no records
// carried them. It reads the time from Options.Now, like Send, so that
// tests drive both with one clock.
func (e *Encoder) Tick(time.Time) error {
	now := e.opts.Now()
	if !e.sentTemplates || !e.templatesDue(now) {
		return nil
	}
	e.buf, _ = appendMessage(e.buf[:0], now, e.seq, e.opts.ObservationDomain, true, nil, e.max())
	return e.write(e.buf, true, now)
}

// Templates implements export.Encoder.
func (e *Encoder) Templates() uint64 { return e.templates.Load() }

// Messages implements export.Encoder.
func (e *Encoder) Messages() uint64 { return e.messages.Load() }

// Close implements export.Encoder.
func (e *Encoder) Close() error { return e.conn.Close() }
