package nat

import "github.com/xnat/xnat/flowtable"

// The user words of the engine's table records (flowtable.Entry.User), one
// small type per kind of record, so that every field is packed by one
// constructor and read by one named method. No code outside this file
// shifts or masks a user word.
//
// Every reference-counted record (bindings, subscribers, permissions,
// block slots) keeps its count in User[1] (acquireRef, releaseRef), with
// refDead set once the count reached zero and its last owner deletes it.

// sessWords are a session's user words:
//
//	User[0]: bits 0..31 binding record + 1 (endpoint-independent mapping)
//	         bits 32..63 subscriber record + 1
//	User[1]: bits 0..31 filter permission record + 1 (address-dependent filtering)
//	         bits 32..55 registry index + 1 of the address whose port the
//	         session owns itself (address-and-port-dependent mapping);
//	         24 bits hold every index below maxAddrSlots
//	         bits 56..63 worker that created the session
//
// A field of zero means none: the record numbers are stored plus one.
type sessWords [2]uint64

// ownAddrMask is the width of the own-address field of sessWords.
const ownAddrMask = 1<<24 - 1

// The own-address field holds every registry index plus one unmasked
// (sessionWords): this fails to compile if maxAddrSlots outgrows it.
var _ [ownAddrMask - maxAddrSlots]struct{}

// sessionWords packs the words of a session holding the claims in c,
// created by worker. It inlines (Go's budget, 80; a mask of the own
// address, which the array above makes needless, put it over by 2 and
// cost a call of about 36 instructions a new session, bench-instr).
func sessionWords(c *claim, worker uint8) sessWords {
	return sessWords{
		uint64(idPlus1(c.hasBinding, c.binding.ID)) | uint64(idPlus1(c.hasSub, c.sub.ID))<<32,
		uint64(idPlus1(c.hasPerm, c.perm.ID)) | uint64(idPlus1(c.hasOwn, c.ownAddr))<<32 | uint64(worker)<<56,
	}
}

// eimWords is sessionWords for a claim that holds its mapping and its
// subscriber (hasBinding, hasSub) and owns no port (not hasOwn): the
// session of an endpoint-independent mapping, which newOutbound creates
// after eimMapping took both references, and with a state of no rule,
// so that no port of its own (holdRuleAddr). Two of the four tests
// left out, about 5 instructions a new session (2,614 to 2,608,
// bench-instr; sessionWords' 29 to 13, less the flag newOutbound keeps
// for it); TestEIMWords holds it to sessionWords.
func eimWords(c *claim, worker uint8) sessWords {
	return sessWords{
		uint64(c.binding.ID+1) | uint64(c.sub.ID+1)<<32,
		uint64(idPlus1(c.hasPerm, c.perm.ID)) | uint64(worker)<<56,
	}
}

func idPlus1(ok bool, id uint32) uint32 {
	if !ok {
		return 0
	}
	return id + 1
}

func minus1(v uint32) (uint32, bool) { return v - 1, v != 0 }

// sessionOf returns the user words of session record x.
func sessionOf(x *flowtable.Entry) sessWords { return sessWords(x.User) }

// binding returns the session's endpoint-independent mapping record.
func (u sessWords) binding() (uint32, bool) { return minus1(uint32(u[0])) }

// subscriber returns the session's subscriber record.
func (u sessWords) subscriber() (uint32, bool) { return minus1(uint32(u[0] >> 32)) }

// perm returns the session's filter permission (or rule count) record.
func (u sessWords) perm() (uint32, bool) { return minus1(uint32(u[1])) }

// ownAddr returns the registry index of the address whose port the session
// owns itself.
func (u sessWords) ownAddr() (uint32, bool) { return minus1(uint32(u[1]>>32) & ownAddrMask) }

// worker returns the worker that created the session.
func (u sessWords) worker() uint8 { return uint8(u[1] >> 56) }

// bindingWord is User[0] of an endpoint-independent mapping: its
// subscriber record (bits 0..31) and the registry index of its external
// address (bits 32..63). User[1] is its reference count.
type bindingWord uint64

// bindingWords packs the words of a new mapping of subscriber record sub
// on address addr, with one reference.
func bindingWords(sub, addr uint32) [2]uint64 {
	return [2]uint64{uint64(sub) | uint64(addr)<<32, 1}
}

func bindingOf(x *flowtable.Entry) bindingWord { return bindingWord(x.User[0]) }
func (b bindingWord) subscriber() uint32       { return uint32(b) }
func (b bindingWord) addr() uint32             { return uint32(b >> 32) }

// subscriber records: User[0] is the registry index of the paired address
// (subAddr), User[1] the reference count, sessions in the low half and
// ports in the high half (subRefs, subCount).

// subAddr returns the paired address index of a subscriber's User[0].
func subAddr(v uint64) uint32 { return uint32(v) }

// subRefs packs a subscriber's sessions (low half) and ports (high half).
func subRefs(sessions, ports uint64) uint64 { return sessions | ports<<32 }

// subCount is a subscriber's User[1].
type subCount uint64

func (c subCount) sessions() uint64 { return uint64(c&^refDead) & 0xffffffff }
func (c subCount) ports() uint64    { return uint64(c&^refDead) >> 32 }

// blockSlotWord is User[0] of a subscriber's block slot (cgn_block.go):
// the address's registry index (bits 0..31) and the block number (bits
// 32..63). User[1] is its reference count.
type blockSlotWord uint64

func blockSlotWords(addr, block uint32) [2]uint64 {
	return [2]uint64{uint64(blockSlot(addr, block)), 1}
}

func blockSlot(addr, block uint32) blockSlotWord {
	return blockSlotWord(uint64(addr) | uint64(block)<<32)
}
func blockSlotOf(x *flowtable.Entry) blockSlotWord { return blockSlotWord(x.User[0]) }
func (b blockSlotWord) addr() uint32               { return uint32(b) }
func (b blockSlotWord) block() uint32              { return uint32(b >> 32) }

// blockClaimWord is User[0] of an address's block claim (cgn_block.go):
// the subscriber's address (bits 0..31) and flags (blockLive, blockHeld).
// User[1] is the allocation time (Unix ns).
type blockClaimWord uint64

func blockClaimWords(sub [4]byte, nowNano int64) [2]uint64 {
	return [2]uint64{uint64(be32(sub)) | blockLive, uint64(nowNano)}
}

func blockClaimOf(x *flowtable.Entry) blockClaimWord { return blockClaimWord(x.User[0]) }
func (b blockClaimWord) subscriber() [4]byte {
	v := uint32(b)
	return [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}
func (b blockClaimWord) held() bool               { return b&blockHeld != 0 }
func (b blockClaimWord) withHeld() blockClaimWord { return b | blockHeld }

// claimSince returns the time a block claim was made.
func claimSince(x *flowtable.Entry) int64 { return int64(x.User[1]) }
