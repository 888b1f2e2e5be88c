// Package ipfix exports NAT events as IPFIX (RFC 7011) records with the
// NAT information elements of RFC 8158, over UDP or TCP. The templates and
// their fields are listed in docs/cgn.md.
package ipfix

import (
	"encoding/binary"
	"time"

	"github.com/xnat/xnat/mgmt/export"
)

// TemplateID is the template of record kind k: 256 and up (RFC 7011
// section 3.4.1: IDs 0-255 are reserved for set IDs).
func TemplateID(k export.Kind) uint16 { return 255 + uint16(k) }

// Set IDs and header sizes (RFC 7011 section 3).
const (
	version        = 10
	templateSetID  = 2
	headerLen      = 16
	setHeaderLen   = 4
	maxUDPMessage  = 1400 // fits an Ethernet MTU with IP and UDP headers
	maxTCPMessage  = 65535
	numTemplateRec = int(export.NumKinds) - 1
)

func recordLen(k export.Kind) int {
	n := 0
	for _, f := range export.Fields(k) {
		n += int(f.Length)
	}
	return n
}

// appendHeader appends a message header (RFC 7011 section 3.1); the
// length is filled in by finish.
func appendHeader(b []byte, exportTime time.Time, seq, domain uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, version)
	b = binary.BigEndian.AppendUint16(b, 0) // length, set by finish
	b = binary.BigEndian.AppendUint32(b, uint32(exportTime.Unix()))
	b = binary.BigEndian.AppendUint32(b, seq)
	return binary.BigEndian.AppendUint32(b, domain)
}

// finish sets the length of the message that starts at b[0].
func finish(b []byte) { binary.BigEndian.PutUint16(b[2:], uint16(len(b))) }

// appendTemplateSet appends one template set holding every template
// (RFC 7011 section 3.4.1).
func appendTemplateSet(b []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, templateSetID)
	b = binary.BigEndian.AppendUint16(b, 0)
	for k := export.Kind(1); k < export.NumKinds; k++ {
		b = binary.BigEndian.AppendUint16(b, TemplateID(k))
		fs := export.Fields(k)
		b = binary.BigEndian.AppendUint16(b, uint16(len(fs)))
		for _, f := range fs {
			b = binary.BigEndian.AppendUint16(b, f.ID)
			b = binary.BigEndian.AppendUint16(b, f.Length)
		}
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	return b
}

// appendRecord appends r's fields in its template's order, each of its
// template's length, in network byte order (RFC 7011 section 6.1).
func appendRecord(b []byte, r *export.Record) []byte {
	for _, f := range export.Fields(r.Kind) {
		v := r.Value(f.ID)
		switch f.Length {
		case 1:
			b = append(b, uint8(v))
		case 2:
			b = binary.BigEndian.AppendUint16(b, uint16(v))
		case 4:
			b = binary.BigEndian.AppendUint32(b, uint32(v))
		default:
			b = binary.BigEndian.AppendUint64(b, v)
		}
	}
	return b
}

// appendMessage appends one message: the header, the template set if
// withTemplates, then data sets for as many of recs as fit in max bytes
// (at least one). It returns the message and how many records it holds.
// seq is the number of data records sent before it (RFC 7011 section
// 3.1: "Sequence Number ... modulo 2^32 of all IPFIX Data Records sent
// ... prior to the receipt of this IPFIX Message").
func appendMessage(b []byte, exportTime time.Time, seq, domain uint32, withTemplates bool, recs []export.Record, max int) ([]byte, int) {
	start := len(b)
	b = appendHeader(b, exportTime, seq, domain)
	if withTemplates {
		b = appendTemplateSet(b)
	}
	n := 0
	set := -1 // offset of the open data set
	kind := export.KindNone
	for n < len(recs) {
		r := &recs[n]
		need := recordLen(r.Kind)
		if r.Kind != kind {
			need += setHeaderLen
		}
		if n > 0 && len(b)-start+need > max {
			break
		}
		if r.Kind != kind {
			if set >= 0 {
				binary.BigEndian.PutUint16(b[set+2:], uint16(len(b)-set))
			}
			set, kind = len(b), r.Kind
			b = binary.BigEndian.AppendUint16(b, TemplateID(kind))
			b = binary.BigEndian.AppendUint16(b, 0)
		}
		b = appendRecord(b, r)
		n++
	}
	if set >= 0 {
		binary.BigEndian.PutUint16(b[set+2:], uint16(len(b)-set))
	}
	finish(b[start:])
	return b, n
}
