package gen

// Result is what a run measured; it encodes to the JSON the trafficgen
// command prints. Rates are over TX.Seconds, the span from the first to
// the last frame sent. Byte counts are frames as handed to the socket
// (without FCS); Gbps counts those bytes, WireGbps adds the 24 bytes per
// frame that a real Ethernet link also spends (FCS, preamble, IFG).
type Result struct {
	Config  ResultConfig `json:"config"`
	Started string       `json:"started"` // RFC 3339, UTC
	Seconds float64      `json:"duration_s"`

	TX Counts  `json:"tx"`
	RX *Counts `json:"rx,omitempty"` // at the sink or reflector

	// Lost is TX - RX (negative if the DUT duplicated frames); LossRatio
	// Lost/TX. Reordered frames arrived after a higher sequence number of
	// their stream (RFC 4737).
	Lost      int64   `json:"lost,omitempty"`
	LossRatio float64 `json:"loss_ratio,omitempty"`
	Reordered uint64  `json:"reordered,omitempty"`
	// Latency is one way, generator to sink or reflector, in ns.
	Latency *Latency `json:"latency_ns,omitempty"`

	Return   *ReturnResult  `json:"return,omitempty"`
	Mappings *MappingResult `json:"mappings,omitempty"`
	Sessions *SessionResult `json:"sessions,omitempty"`

	// Streams lists per-stream figures when there are few streams.
	Streams []StreamResult `json:"streams,omitempty"`

	Diag     Diagnostics `json:"diagnostics"`
	Warnings []string    `json:"warnings,omitempty"`
}

// ResultConfig echoes the configuration, resolved (defaults, learned MAC).
type ResultConfig struct {
	Mode       string  `json:"mode"`
	Proto      string  `json:"proto"`
	TxNetns    string  `json:"tx_netns,omitempty"`
	TxDev      string  `json:"tx_dev"`
	RxNetns    string  `json:"rx_netns,omitempty"`
	RxDev      string  `json:"rx_dev,omitempty"`
	SrcMAC     string  `json:"src_mac"`
	DstMAC     string  `json:"dst_mac"`
	Src        string  `json:"src"`
	SrcPorts   string  `json:"src_ports"`
	Dst        string  `json:"dst"`
	DstPorts   string  `json:"dst_ports"`
	Flows      uint32  `json:"flows"`
	Size       string  `json:"size"`
	FrameLens  []int   `json:"frame_lens"` // per size slot, without FCS
	Rate       float64 `json:"rate_pps"`   // 0: maximum
	Duration   float64 `json:"duration_s"`
	TxQueues   int     `json:"tx_queues"`
	RxQueues   int     `json:"rx_queues,omitempty"`
	TxCPUs     []int   `json:"tx_cpus,omitempty"`
	RxCPUs     []int   `json:"rx_cpus,omitempty"`
	Batch      int     `json:"batch"`
	Streams    int     `json:"streams"`
	BusyPoll   bool    `json:"busy_poll"`
	RTPriority int     `json:"rt_priority,omitempty"`
	Backend    string  `json:"afxdp_backend"`
	ZeroCopy   bool    `json:"zero_copy"`
}

// Counts are packets and bytes over the run and their rates.
type Counts struct {
	Packets  uint64  `json:"packets"`
	Bytes    uint64  `json:"bytes"`
	PPS      float64 `json:"pps"`
	Gbps     float64 `json:"gbps"`
	WireGbps float64 `json:"wire_gbps"`
}

// ReturnResult is the reply direction of a reflecting mode, measured by
// the generator: replies received, round-trip loss (frames sent minus
// replies), round-trip latency, and replies whose addresses did not map
// back to the flow named in their Mark (a NAT that reversed the wrong
// mapping).
type ReturnResult struct {
	RX         Counts  `json:"rx"`
	Lost       int64   `json:"lost"`
	LossRatio  float64 `json:"loss_ratio"`
	Reordered  uint64  `json:"reordered"`
	Latency    Latency `json:"rtt_ns"`
	Mismatched uint64  `json:"mismatched"`
	// Reflected is what the reflector sent back; ReflectDrops what it
	// could not (TX ring full).
	Reflected    uint64 `json:"reflected"`
	ReflectDrops uint64 `json:"reflect_drops"`
	// SynAcks is how many of the reflected frames answered a SYN.
	SynAcks uint64 `json:"syn_acks,omitempty"`
}

// MappingResult is what the reflector learned of the DUT's mappings: the
// translated source address and port of each flow (up to Config.LearnMax
// flows).
type MappingResult struct {
	Tracked    int    `json:"tracked_flows"`
	Learned    uint64 `json:"learned"`
	Changed    uint64 `json:"changed"`
	Translated uint64 `json:"translated"`     // mapping differs from the flow's own source
	PortKept   uint64 `json:"port_preserved"` // mapped port equals the flow's source port
	// ExternalAddrs counts distinct mapped source addresses; Examples
	// shows the first few flows' mappings.
	ExternalAddrs int      `json:"external_addrs"`
	Examples      []string `json:"examples,omitempty"`
}

// SessionResult is the connection-rate outcome: new flows sent, new flows
// that reached the far side (each frame there is a distinct new flow),
// and, through a reflector, sessions whose reply came back (established).
type SessionResult struct {
	NewFlows         uint64  `json:"new_flows_sent"`
	Through          uint64  `json:"new_flows_through"`
	ThroughPerSecond float64 `json:"through_per_s"`
	Established      uint64  `json:"established,omitempty"`
	EstablishedPerS  float64 `json:"established_per_s,omitempty"`
	// HandshakeAcks is the third packets sent (TCP); HandshakesDone those
	// the reflector received.
	HandshakeAcks  uint64 `json:"handshake_acks,omitempty"`
	HandshakesDone uint64 `json:"handshakes_done,omitempty"`
	// HandshakeAckDrops: ACKs the generator could not send (TX ring full).
	HandshakeAckDrops uint64 `json:"handshake_ack_drops,omitempty"`
	// Exhausted says every configured flow was used before Duration.
	Exhausted bool `json:"flows_exhausted"`
}

// StreamResult is one stream's figures.
type StreamResult struct {
	ID        int    `json:"id"`
	TX        uint64 `json:"tx"`
	RX        uint64 `json:"rx"`
	Lost      int64  `json:"lost"`
	Reordered uint64 `json:"reordered"`
	Returned  uint64 `json:"returned,omitempty"`
}

// Diagnostics explain a shortfall: where frames waited or were dropped
// outside the DUT (our own sockets), and what the XDP programs did.
type Diagnostics struct {
	TxRingFull    uint64 `json:"tx_ring_full"`    // TX bursts the ring could not take whole
	TxKicks       uint64 `json:"tx_kicks"`        // sendto calls
	AllocShort    uint64 `json:"alloc_short"`     // bursts that found fewer free UMEM frames than wanted
	RxKernelDrops uint64 `json:"rx_kernel_drops"` // XDP_STATISTICS rx_dropped + rx_ring_full, all our sockets
	RxFillEmpty   uint64 `json:"rx_fill_empty"`   // XDP_STATISTICS rx_fill_ring_empty_descs
	Foreign       uint64 `json:"foreign_frames"`  // received frames that are not generator frames
	BadStream     uint64 `json:"bad_stream"`      // Marks with an out-of-range stream id
	ClockSkew     uint64 `json:"clock_skew"`      // frames stamped after they were received
	XDPRedirected uint64 `json:"xdp_redirected"`  // RX-side XDP program
	XDPPassed     uint64 `json:"xdp_passed"`      // not ours, given to the kernel
	XDPNoSocket   uint64 `json:"xdp_no_socket"`   // ours but no socket on that queue
	LinkErrors    uint64 `json:"link_errors"`
	TxUnsent      uint64 `json:"tx_unsent"` // built but still waiting for the ring at the end (not counted as sent)
}
