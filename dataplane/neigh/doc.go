// Package neigh gives the NAT pipeline the Ethernet destination of every
// frame it sends: it is the last step of a worker's transmit path, after
// translation and before the frame is queued on the egress port.
//
// The kernel stays the control plane for L2 and L3. The routes of the NAT's
// network namespace decide the next hop (connected route: the destination
// itself; gateway route: the gateway), and the kernel's neighbour table
// supplies its MAC address. A Table copies both into immutable, pointer-free
// snapshots published through an atomic.Pointer, so a worker's Resolve is a
// lock-free, allocation-free longest-prefix match followed by one
// open-addressing hash probe.
//
// The longest-prefix match is a multibit trie (strides 16, 8, 4, 4) in flat
// uint32 arrays, which the control goroutine compiles from a side's routes
// whenever they change (fib.go): one to four reads per lookup, by the depth
// of the matching prefix, whatever the number of routes, so a full BGP table
// of 900k routes costs a worker no more instructions than ten routes (a
// dozen more, and a cache miss where the ten routes hit). Compiling a full
// table takes a second or two and 67 MiB, on the control goroutine, while
// workers keep resolving through the previous snapshot (docs/engineering.md,
// "Next hop", has the figures).
//
// Changes reach the snapshots without a restart: one control goroutine per
// Table follows the kernel over netlink subscriptions (routes, neighbours,
// links), re-lists everything when a subscription overflows (ENOBUFS) or an
// interface is re-created, and publishes a new snapshot whenever something a
// worker can observe has changed.
//
// A next hop missing from the neighbour table is resolved by the kernel on
// the control goroutine's request: Resolve only posts the address into a
// small bounded, de-duplicating array of atomic slots and returns Pending;
// the control goroutine sends an RTM_NEWNEIGH with NTF_USE for it, which
// makes the kernel create the entry and send ARP requests exactly as if it
// had a packet to forward. The answer (REACHABLE) or the give-up (FAILED)
// comes back as a neighbour notification.
//
// Because frames sent through AF_XDP never touch the kernel's neighbour
// entries, the kernel would leave an entry the dataplane uses in STALE
// forever (never re-confirming the address) and, once the table holds more
// than gc_thresh1 entries, garbage-collect it after gc_stale_time. Resolve
// therefore marks the entries it hands out, and the control goroutine
// periodically sends NTF_USE for the marked ones the kernel holds as STALE,
// which makes the kernel re-confirm them with a unicast probe (RFC 1122
// section 2.3.2.1), just as its own forwarding would.
//
// Goroutines: Resolve, Stats and Snapshot may be called from any goroutine,
// concurrently. Close may be called from any goroutine, any number of times.
// Everything else belongs to the Table's control goroutine.
package neigh
