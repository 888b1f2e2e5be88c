// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

// xnat's XDP program: the first stage of the pipeline. It decides, per
// frame, whether the frame belongs to the NAT dataplane (redirect it into
// the AF_XDP socket bound to the frame's RX queue) or to the appliance's own
// kernel stack (XDP_PASS: ARP, IPv6, VLAN-tagged frames, SSH and ping to the
// box, anything unmatched).
//
// One object, two roles. The role is a load-time constant ("volatile const
// role"), and every interface gets its own loaded collection: the verifier
// then prunes the other role's branch, nothing is looked up per packet to
// find the role, each interface has its own XSKMAP indexed directly by
// rx_queue_index, and its own counters. The address maps are created once
// and shared by both collections (the loader passes them as map
// replacements), so a config reload updates one set of maps.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ROLE_OUTSIDE 1
#define ROLE_INSIDE 2

// Set by the loader before loading; 0 (unset) passes everything.
volatile const __u32 role = 0;

// Counter indexes, mirrored in Go (counterRedirected...).
enum {
	CNT_REDIRECTED = 0,      // handed to bpf_redirect_map and accepted
	CNT_PASSED = 1,          // not ours: given to the kernel stack
	CNT_REDIRECT_FAILED = 2, // ours, but no XSK bound to this queue: passed
	CNT_MASQ_LOCAL = 3,      // to a masquerade address, not a NAT port: passed (also counted as passed)
	CNT_MAX = 4,
};

#define MAX_QUEUES 64

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

// Destination addresses (network byte order) that the NAT owns on the
// outside: pool, static-mapping and port-forwarding addresses.
// Sized for the engine's limit of 65536 pool addresses, plus static and
// port-forwarding addresses and pool addresses still draining.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, __u32);
	__type(value, __u8);
} public_addrs SEC(".maps");

// The appliance's own interface addresses. Inside traffic to these is for
// the box itself. Pool addresses are NOT listed here, so hairpinned traffic
// to a pool address is still redirected to the NAT.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} local_addrs SEC(".maps");

// Masquerade: pool addresses that are also the box's own addresses (the
// outside interface's address). Traffic to them is the NAT's only when
// owned_ports says so; the rest is the box's own and goes to the kernel.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} masq_addrs SEC(".maps");

// The ports the NAT owns on masquerade addresses, one bit per port:
// entry 0 TCP, 1 UDP (destination ports), 2 ICMP query identifiers. natd
// sets the dynamic ranges (which it reserves from the kernel's local
// ports) and the ports of port forwards.
#define OWN_TCP 0
#define OWN_UDP 1
#define OWN_ICMP 2
struct port_bits {
	__u64 w[1024];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, struct port_bits);
} owned_ports SEC(".maps");

// First fragments of NAT traffic to a masquerade address, so that the
// later fragments (which carry no ports) follow them to natd. A later
// fragment that arrives before its first goes to the kernel.
struct frag_key {
	__u32 saddr;
	__u16 id;
	__u8 proto;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct frag_key);
	__type(value, __u8);
} masq_frags SEC(".maps");

struct lpm_v4 {
	__u32 prefixlen;
	__u32 addr; // network byte order
};

// Inside prefixes whose sources the NAT translates.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, __u8);
} inside_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1; // per-CPU slot: no atomic needed
}

static __always_inline int pass(void)
{
	count(CNT_PASSED);
	return XDP_PASS;
}

static __always_inline int owned(__u32 idx, __u16 port)
{
	struct port_bits *b = bpf_map_lookup_elem(&owned_ports, &idx);
	if (!b)
		return 0;
	return (b->w[(port >> 6) & 1023] >> (port & 63)) & 1;
}

#define IP_MF 0x2000
#define IP_OFFMASK 0x1fff

// nat_owned decides whether a packet to a masquerade address is the NAT's:
// TCP and UDP by destination port; ICMP echo replies by identifier; ICMP
// errors by the source port (or identifier) of the packet they quote, which
// the NAT sent (RFC 792: the quote holds the IP header and at least 8 bytes
// of its payload). from_outside also admits ICMP; from the inside only
// TCP and UDP hairpin through the NAT, the rest is for the box.
static __always_inline int nat_owned(struct iphdr *ip, void *data_end, int from_outside)
{
	__u16 frag = bpf_ntohs(ip->frag_off);
	struct frag_key fk = {.saddr = ip->saddr, .id = ip->id, .proto = ip->protocol};
	if (frag & IP_OFFMASK)
		return bpf_map_lookup_elem(&masq_frags, &fk) != 0;
	// Only headers without options: a variable offset from a packet
	// pointer needs CAP_PERFMON from the verifier, which natd does not
	// ask for. A packet with IP options to a masquerade address goes to
	// the kernel, its owner.
	if (ip->ihl != 5)
		return 0;
	__u8 *l4 = (__u8 *)(ip + 1);
	if ((void *)(l4 + 8) > data_end)
		return 0;
	int own = 0;
	switch (ip->protocol) {
	case IPPROTO_TCP:
		own = owned(OWN_TCP, bpf_ntohs(*(__u16 *)(l4 + 2)));
		break;
	case IPPROTO_UDP:
		own = owned(OWN_UDP, bpf_ntohs(*(__u16 *)(l4 + 2)));
		break;
	case IPPROTO_ICMP:
		if (!from_outside)
			return 0;
		if (l4[0] == 0) { // echo reply
			own = owned(OWN_ICMP, bpf_ntohs(*(__u16 *)(l4 + 4)));
			break;
		}
		// Destination unreachable, source quench, redirect, time
		// exceeded, parameter problem: errors that quote a packet.
		if (l4[0] != 3 && l4[0] != 4 && l4[0] != 5 && l4[0] != 11 && l4[0] != 12)
			return 0;
		struct iphdr *in = (void *)(l4 + 8);
		if ((void *)(in + 1) > data_end || in->ihl != 5)
			return 0;
		__u8 *q = (__u8 *)(in + 1);
		if ((void *)(q + 8) > data_end)
			return 0;
		if (in->protocol == IPPROTO_TCP)
			own = owned(OWN_TCP, bpf_ntohs(*(__u16 *)q));
		else if (in->protocol == IPPROTO_UDP)
			own = owned(OWN_UDP, bpf_ntohs(*(__u16 *)q));
		else if (in->protocol == IPPROTO_ICMP && q[0] == 8)
			own = owned(OWN_ICMP, bpf_ntohs(*(__u16 *)(q + 4)));
		break;
	default:
		return 0;
	}
	if (own && (frag & IP_MF)) {
		__u8 one = 1;
		bpf_map_update_elem(&masq_frags, &fk, &one, BPF_ANY);
	}
	return own;
}

static __always_inline int pass_local(void)
{
	count(CNT_MASQ_LOCAL);
	return pass();
}

SEC("xdp")
int xnat_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;

	if ((void *)(eth + 1) > data_end)
		return pass();
	// Only untagged IPv4. ARP and IPv6 belong to the kernel; VLAN-tagged
	// frames are passed too (the NAT ports are untagged access ports).
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return pass();
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return pass();

	__u32 daddr = ip->daddr;
	if (role == ROLE_OUTSIDE) {
		if (!bpf_map_lookup_elem(&public_addrs, &daddr))
			return pass();
		if (bpf_map_lookup_elem(&masq_addrs, &daddr) && !nat_owned(ip, data_end, 1))
			return pass_local();
	} else if (role == ROLE_INSIDE) {
		struct lpm_v4 key = {.prefixlen = 32, .addr = ip->saddr};
		if (!bpf_map_lookup_elem(&inside_prefixes, &key))
			return pass();
		// Limited broadcast and multicast (224.0.0.0/4) are link-local
		// business of the kernel, never NAT traffic.
		if (daddr == 0xffffffff || (bpf_ntohl(daddr) >> 28) == 0xe)
			return pass();
		// A masquerade address is also the box's: only hairpinned NAT
		// ports go to natd (a port forward reached from the inside).
		if (bpf_map_lookup_elem(&masq_addrs, &daddr)) {
			if (!nat_owned(ip, data_end, 0))
				return pass_local();
		} else if (bpf_map_lookup_elem(&local_addrs, &daddr)) {
			return pass();
		}
	} else {
		return pass();
	}

	// With XDP_PASS as the fallback, a queue with no socket bound hands
	// the frame to the kernel instead of dropping it.
	int act = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	count(act == XDP_REDIRECT ? CNT_REDIRECTED : CNT_REDIRECT_FAILED);
	return act;
}

char _license[] SEC("license") = "Dual BSD/GPL";
