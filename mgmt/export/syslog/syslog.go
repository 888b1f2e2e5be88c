// Package syslog exports NAT events as RFC 5424 syslog messages over UDP
// (one message per datagram, RFC 5426) or TCP (octet-counting framing,
// RFC 6587 section 3.4.1). The message is one line of key=value pairs
// whose keys are the IPFIX information element names of the record
// (docs/cgn.md):
//
//	<134>1 2026-12-04T14:02:00.456Z cgn1 xnat - NAT - event=block_allocated natEvent=16 sourceIPv4Address=10.0.0.7 postNATSourceIPv4Address=198.18.0.7 portRangeStart=39936 portRangeEnd=40447 portRangeStepSize=1 portRangeNumPorts=512
package syslog

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/xnat/xnat/mgmt/export"
)

// Options configure a syslog exporter (natd.yaml logging.syslog).
type Options struct {
	// Server is host:port (514 for UDP, often 514 or 601 for TCP).
	Server    string
	Transport export.Transport
	Source    string
	// Hostname is the HOSTNAME field; default os.Hostname.
	Hostname string
	// Facility is the syslog facility number; default 16 (local0).
	Facility int
}

// Encoder is the syslog export.Encoder. Only the export.Queue's goroutine
// uses it.
type Encoder struct {
	opts     Options
	conn     *export.Conn
	buf      []byte
	pri      string
	messages atomic.Uint64
}

// New checks the options; it connects on the first send.
func New(o Options) (*Encoder, error) {
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
		if o.Hostname == "" {
			o.Hostname = "-"
		}
	}
	if o.Facility == 0 {
		o.Facility = 16
	}
	if o.Facility < 0 || o.Facility > 23 {
		return nil, fmt.Errorf("facility %d is out of range 0..23", o.Facility)
	}
	c, err := export.NewConn(o.Transport, o.Server, o.Source)
	if err != nil {
		return nil, err
	}
	// PRI = facility * 8 + severity; severity 6, informational (RFC 5424
	// section 6.2.1).
	return &Encoder{opts: o, conn: c, pri: "<" + strconv.Itoa(o.Facility*8+6) + ">"}, nil
}

// AppendMessage appends r as an RFC 5424 message (without framing).
func AppendMessage(b []byte, pri, hostname string, r *export.Record) []byte {
	b = append(b, pri...)
	b = append(b, "1 "...)
	b = time.UnixMilli(r.TimeMs).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, ' ')
	b = append(b, hostname...)
	b = append(b, " xnat - NAT - event="...)
	b = append(b, r.Name...)
	for _, f := range export.Fields(r.Kind) {
		if f.ID == export.IEObservationTimeMilliseconds {
			continue // the TIMESTAMP field
		}
		v := r.Value(f.ID)
		b = append(b, ' ')
		b = append(b, f.Name...)
		b = append(b, '=')
		if export.IsAddress(f.ID) {
			b = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).AppendTo(b)
		} else {
			b = strconv.AppendUint(b, v, 10)
		}
	}
	return b
}

// Send implements export.Encoder: one message per datagram (UDP), or
// octet-counted messages, as many per write as fit 64 KiB (TCP).
func (e *Encoder) Send(recs []export.Record) (int, error) {
	if e.opts.Transport == export.UDP {
		for i := range recs {
			e.buf = AppendMessage(e.buf[:0], e.pri, e.opts.Hostname, &recs[i])
			if err := e.conn.Write(e.buf); err != nil {
				return i, err
			}
			e.messages.Add(1)
		}
		return len(recs), nil
	}
	sent := 0
	var msg []byte
	e.buf = e.buf[:0]
	n := 0
	for i := range recs {
		msg = AppendMessage(msg[:0], e.pri, e.opts.Hostname, &recs[i])
		e.buf = strconv.AppendInt(e.buf, int64(len(msg)), 10)
		e.buf = append(e.buf, ' ')
		e.buf = append(e.buf, msg...)
		n++
		if len(e.buf) >= 64<<10 || i == len(recs)-1 {
			if err := e.conn.Write(e.buf); err != nil {
				return sent, err
			}
			e.conn.Fresh = false
			e.messages.Add(uint64(n))
			sent += n
			n, e.buf = 0, e.buf[:0]
		}
	}
	return sent, nil
}

// Tick implements export.Encoder (syslog has nothing periodic).
func (e *Encoder) Tick(time.Time) error { return nil }

// Templates implements export.Encoder: syslog has none.
func (e *Encoder) Templates() uint64 { return 0 }

// Messages implements export.Encoder.
func (e *Encoder) Messages() uint64 { return e.messages.Load() }

// Close implements export.Encoder.
func (e *Encoder) Close() error { return e.conn.Close() }
