// Package nat is the NAT44 engine: the stage of the pipeline that decides
// what happens to every frame a worker receives, and rewrites it in place.
//
// A worker goroutine owns one Worker, which owns an inside and an outside
// port (dataplane/port). Worker.Poll receives a burst from each port,
// parses every frame once (dataplane/header), looks its flow up in the
// shared session table (flowtable), creates sessions and external port
// mappings on a miss, rewrites addresses, ports, identifiers and TTL with
// incremental checksum updates (checksum, RFC 1624), and transmits the
// burst. Nothing on that path allocates, locks or returns an error: a frame
// that cannot be forwarded is counted under a drop.Reason.
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
