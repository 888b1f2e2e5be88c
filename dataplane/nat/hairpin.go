package nat

import (
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
)

// Stage hairpin: an inside host talking to another inside host through
// one of the NAT's public addresses.

// hairpin sends an outbound-translated packet whose destination is one of
// our own public addresses back inside, translated again as if it had
// arrived from outside: the receiver sees the sender's external address
// and port (RFC 4787 REQ-9/9a, RFC 5382 REQ-8, RFC 5508 REQ-7).
func (w *Worker) hairpin(b *port.Buf, p *header.Parsed) {
	w.c[Hairpinned]++
	if p.L4 == header.L4ICMPError {
		w.inboundError(Inside, b, p)
		return
	}
	w.inbound(Inside, b, p, nil)
}
