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
	CNT_MAX = 3,
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
	} else if (role == ROLE_INSIDE) {
		struct lpm_v4 key = {.prefixlen = 32, .addr = ip->saddr};
		if (!bpf_map_lookup_elem(&inside_prefixes, &key))
			return pass();
		// Limited broadcast and multicast (224.0.0.0/4) are link-local
		// business of the kernel, never NAT traffic.
		if (daddr == 0xffffffff || (bpf_ntohl(daddr) >> 28) == 0xe)
			return pass();
		if (bpf_map_lookup_elem(&local_addrs, &daddr))
			return pass();
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
