// Package nat is the NAT44 engine: the stage of the pipeline that decides
// what happens to every frame a worker receives, and rewrites it in place.
//
// A poll-loop goroutine owns one Worker, which owns an inside and an
// outside port (dataplane/port). Worker.Poll (worker.go) runs a burst from
// each port through the pipeline's stages, each in a file named after it:
//
//	receive.go    receive and classify: parse once (dataplane/header), build
//	              and hash the session key, prefetch the session; process
//	              sends what the fast path does not finish to its stage
//	fastpath.go   a packet of an established session, top to bottom:
//	              classify, look up, rewrite (rewrite.go), next hop, queue
//	in2out.go     packets from the inside (translateOut: the general rewrite)
//	out2in.go     packets from the outside (translateIn)
//	hairpin.go    inside to inside through a public address
//	icmperr.go    ICMP errors about forwarded packets (icmpgen.go: the ones
//	              the NAT originates)
//	newsession.go the slow path: the packets of a burst without a session get
//	              one, their misses overlapped; it draws on mapping.go
//	              (subscribers, mappings, ports, undo) and userwords.go
//	              (the tables' packed user words)
//	nexthop.go    MTU, fragmentation (frag.go), Ethernet next hop (pending.go
//	              holds frames while it resolves)
//	transmit.go   per-port transmit queues, once per burst
//
// Rewrites are in place with incremental checksum updates (checksum, RFC
// 1624). Nothing on that path allocates, locks or returns an error: a
// frame that cannot be forwarded is counted under a drop.Reason.
//
// State shared by all workers lives in the Engine: the session, binding,
// subscriber and filter tables (all flowtable instances, lock-free for
// readers), the external port sets (one compare-and-swap per port claim),
// and the configuration Snapshot, published through an atomic.Pointer and
// loaded once per burst. Swapping the snapshot never touches established
// sessions: a session carries its own translation.
//
// Behaviour follows RFC 4787 (UDP), RFC 5382 (TCP), RFC 5508 (ICMP), RFC
// 6888 (CGN) and RFC 7857; tests are named after the requirement they
// prove. docs/nat.md describes the design in prose.
package nat
