package events

import (
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt/export"
)

// Sink is an exporter fed with every drained batch of events, like the
// IPFIX and syslog exporters (export.Queue). Offer is called from Run's
// goroutine and must not block: a sink that cannot keep up counts its
// losses itself (Stats.Dropped).
type Sink interface {
	Offer(evs []nat.Event)
	Stats() export.Stats
}

func sinkStats(sinks []Sink) []export.Stats {
	if len(sinks) == 0 {
		return nil
	}
	out := make([]export.Stats, len(sinks))
	for i, s := range sinks {
		out[i] = s.Stats()
	}
	return out
}
