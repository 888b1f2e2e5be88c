// Package header is the first and last stage a frame meets in the NAT
// pipeline: Parse classifies a received frame and records where its headers
// are, and the views and setters rewrite those headers in place, fixing every
// affected checksum incrementally.
//
// # Views
//
// Each header type (Ethernet, VLAN, ARP, IPv4, TCP, UDP, ICMPv4) is a named
// []byte with accessors over named offsets, in the style of gVisor's
// pkg/tcpip/header. A view does no validation of its own: Parse checks every
// length once, and the views it hands out (through the methods of Parsed) are
// cut so that every accessor is in bounds. A view built by hand over a
// shorter slice panics on a bad access, as any out-of-range slice index does;
// that is a programming error, not a packet error.
//
// Setters whose field is covered by a checksum come in two flavours: SetX
// writes the field only (for building a header whose checksum is computed
// afterwards), SetXFix also fixes the checksum by RFC 1624 incremental update.
// TCP and UDP ports have no SetXFix: the NAT changes a port only together
// with an address, and fixes both in one fold (l4.go).
// Parsed.SetSrc, SetDst, SetInnerSrc and SetInnerDst are the NAT rewrites:
// they change an address and a port (or ICMP identifier) and fix the IPv4,
// transport and, for ICMP errors, the embedded and outer ICMP checksums, in
// the order and with the UDP rules that are easy to get wrong.
//
// # Checksums on the fast path
//
// Parse verifies the IPv4 header checksum, the ICMP checksum and the
// embedded IPv4 header checksum of ICMP errors (RFC 5508 REQ-3). It does not
// verify TCP or UDP checksums: that would mean summing every payload byte
// on every packet, and a NAT need not do it, because the incremental update
// of RFC 1624 carries an error through: a segment that arrived with a wrong
// checksum leaves with a checksum that is wrong by the same amount, and the
// receiving host drops it. CalculateChecksum and IsChecksumValid on the views
// exist for the slow path and for tests.
//
// # Goroutines
//
// Parsed and the views are plain values over caller-owned memory. Whoever
// owns the frame (the worker goroutine that received it) may use them; none
// of them is safe for concurrent use on the same frame. Nothing in this
// package allocates on the per-packet path, whatever the input.
package header
