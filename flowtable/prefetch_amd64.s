#include "textflag.h"

// func prefetch(p unsafe.Pointer)
//
// PREFETCHT0 asks for the line into every cache level and retires at
// once, whether the line is there or not (prefetch.go says why that
// matters). It never faults, so an address past a table's end would do no
// harm; callers pass only elements of their arrays.
TEXT ·prefetch(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ p+0(FP), AX
	PREFETCHT0 (AX)
	RET

// func prefetchAt(a uintptr)
//
// prefetch of an address held as an integer (recordLine).
TEXT ·prefetchAt(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ a+0(FP), AX
	PREFETCHT0 (AX)
	RET

// func prefetchHomes(b *Bucket, nb uint64, ps []Probe)
//
// The first pass of PrefetchBurst: for each probe, the home bucket of its
// hash (Index.Home: uint32(h) * nb >> 32) and a prefetch of that bucket's
// line. In Go the pass cost some twenty instructions a probe (the index's
// bounds check, the call per line); here it is eight. It reads each
// Probe's h at offset 16 and steps 32 bytes a probe, the layout
// TestProbeLayout holds Probe to. The probes are addressed back from
// their end by a word index that counts up to 0, four words a probe,
// so that one instruction steps and tests it (prefetchLines' loop).
TEXT ·prefetchHomes(SB), NOSPLIT|NOFRAME, $0-40
	MOVQ b+0(FP), SI
	MOVQ nb+8(FP), CX
	MOVQ ps_base+16(FP), DI
	MOVQ ps_len+24(FP), BX
	TESTQ BX, BX
	JEQ done
	SHLQ $2, BX // words
	LEAQ (DI)(BX*8), DI // the end of the probes
	NEGQ BX
loop:
	MOVL 16(DI)(BX*8), AX // uint32(h), zero-extended
	IMULQ CX, AX
	SHRQ $32, AX
	SHLQ $6, AX // × BucketSize
	PREFETCHT0 (SI)(AX*1)
	ADDQ $4, BX
	JNE loop
done:
	RET

// func prefetchSlots(b *Bucket, nb uint64, recs *record, nrec uint64, ps []Probe)
//
// The second pass of PrefetchBurst (prefetchSlotsGo is the same in Go,
// and its reference in TestPrefetchSlotsMatchesGo): for each probe, the
// first slot of its home bucket whose fingerprint is the probe's, its
// reference stored in the probe (0 if none), and a prefetch of the record
// it names if it names one of the nrec records at recs. A slot's
// fingerprint is compared in place, the high half of its word (offset
// 8+8s+4), and only the matching slot's reference (offset 8+8s) is
// loaded: two loads of one word that a writer may change in between, so
// the reference may belong to another key. It is only a hint: every
// reader checks the record's key before it believes the slot
// (LookupProbe, ViewProbe). Some twenty-five instructions a probe where
// the Go took fifty; its loop steps as prefetchHomes' does.
TEXT ·prefetchSlots(SB), NOSPLIT|NOFRAME, $0-56
	MOVQ b+0(FP), SI
	MOVQ nb+8(FP), CX
	MOVQ recs+16(FP), R8
	MOVQ nrec+24(FP), R9
	MOVQ ps_base+32(FP), DI
	MOVQ ps_len+40(FP), BX
	TESTQ BX, BX
	JEQ done
	SHLQ $2, BX // words, as in prefetchHomes
	LEAQ (DI)(BX*8), DI // the end of the probes
	NEGQ BX
loop:
	MOVL 16(DI)(BX*8), AX // uint32(h), zero-extended
	MOVL 20(DI)(BX*8), DX // h>>32, the fingerprint
	IMULQ CX, AX
	SHRQ $32, AX
	SHLQ $6, AX // × BucketSize
	ADDQ SI, AX // the home bucket
	CMPL 12(AX), DX
	JEQ slot0
	CMPL 20(AX), DX
	JEQ slot1
	CMPL 28(AX), DX
	JEQ slot2
	CMPL 36(AX), DX
	JEQ slot3
	CMPL 44(AX), DX
	JEQ slot4
	CMPL 52(AX), DX
	JEQ slot5
	CMPL 60(AX), DX
	JEQ slot6
	// No slot: reference 0, and no record to ask for. Straight to the
	// next probe, not through store's decode of the reference, which
	// only finds that 0 names no record: 6 instructions a miss (a new
	// flow's probe), about 6 a new session (bench-instr).
	MOVL $0, 24(DI)(BX*8) // p.ref
	ADDQ $4, BX
	JNE loop
	RET
slot0:
	MOVL 8(AX), R10
	JMP store
slot1:
	MOVL 16(AX), R10
	JMP store
slot2:
	MOVL 24(AX), R10
	JMP store
slot3:
	MOVL 32(AX), R10
	JMP store
slot4:
	MOVL 40(AX), R10
	JMP store
slot5:
	MOVL 48(AX), R10
	JMP store
slot6:
	MOVL 56(AX), R10
	JMP store
store:
	MOVL R10, 24(DI)(BX*8) // p.ref
	// The record (ref-1)>>1, if it is one: ref 0 decodes to 2^31-1,
	// beyond every table (refRecord).
	LEAL -1(R10), R11
	SHRL $1, R11
	CMPQ R11, R9
	JAE next
	SHLQ $6, R11 // × 64, a record
	PREFETCHT0 (R8)(R11*1)
next:
	ADDQ $4, BX
	JNE loop
done:
	RET

// func prefetchLines(a *uintptr, n int)
//
// Lines.Flush: a prefetch of each of the n addresses at a.
//
// The loop counts an index up from -n to 0 and addresses the n words
// back from their end, so that one instruction steps and tests it: four
// a line where a pointer and a count took five (about 4 instructions a
// new session, bench-instr). The lines are still asked for in order.
TEXT ·prefetchLines(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ a+0(FP), DI
	MOVQ n+8(FP), BX
	TESTQ BX, BX
	JLE done
	LEAQ (DI)(BX*8), DI // the end of the addresses
	NEGQ BX
loop:
	MOVQ (DI)(BX*8), AX
	PREFETCHT0 (AX)
	INCQ BX
	JNE loop
done:
	RET
