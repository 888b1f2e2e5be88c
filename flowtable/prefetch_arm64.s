#include "textflag.h"

// func prefetch(p unsafe.Pointer)
//
// PRFM PLDL1KEEP is arm64's PREFETCHT0 (prefetch_amd64.s): a hint to load
// the line for reading into L1, which retires at once and never faults.
TEXT ·prefetch(SB), NOSPLIT|NOFRAME, $0-8
	MOVD p+0(FP), R0
	PRFM (R0), PLDL1KEEP
	RET

// func prefetchAt(a uintptr)
//
// prefetch of an address held as an integer (recordLine).
TEXT ·prefetchAt(SB), NOSPLIT|NOFRAME, $0-8
	MOVD a+0(FP), R0
	PRFM (R0), PLDL1KEEP
	RET

// func prefetchHomes(b *Bucket, nb uint64, ps []Probe)
//
// PrefetchBurst's first pass, as in prefetch_amd64.s.
TEXT ·prefetchHomes(SB), NOSPLIT|NOFRAME, $0-40
	MOVD b+0(FP), R0
	MOVD nb+8(FP), R1
	MOVD ps_base+16(FP), R2
	MOVD ps_len+24(FP), R3
	CBZ R3, done
loop:
	MOVWU 16(R2), R4 // uint32(h), zero-extended
	MUL R1, R4, R4
	LSR $32, R4, R4
	ADD R4<<6, R0, R5 // × BucketSize
	PRFM (R5), PLDL1KEEP
	ADD $32, R2, R2
	SUB $1, R3, R3
	CBNZ R3, loop
done:
	RET

// func prefetchSlots(b *Bucket, nb uint64, recs *record, nrec uint64, ps []Probe)
//
// PrefetchBurst's second pass, as in prefetch_amd64.s. The loads are plain
// (Go's atomic loads are load-acquires here): the reference found is only
// a hint that every reader checks against the record.
TEXT ·prefetchSlots(SB), NOSPLIT|NOFRAME, $0-56
	MOVD b+0(FP), R0
	MOVD nb+8(FP), R1
	MOVD recs+16(FP), R9
	MOVD nrec+24(FP), R10
	MOVD ps_base+32(FP), R2
	MOVD ps_len+40(FP), R3
	CBZ R3, done
loop:
	MOVD 16(R2), R4 // h
	MOVWU R4, R5 // uint32(h)
	MUL R1, R5, R5
	LSR $32, R5, R5
	ADD R5<<6, R0, R5 // the home bucket
	LSR $32, R4, R6 // the fingerprint
	MOVWU 12(R5), R7
	CMPW R7, R6
	BEQ slot0
	MOVWU 20(R5), R7
	CMPW R7, R6
	BEQ slot1
	MOVWU 28(R5), R7
	CMPW R7, R6
	BEQ slot2
	MOVWU 36(R5), R7
	CMPW R7, R6
	BEQ slot3
	MOVWU 44(R5), R7
	CMPW R7, R6
	BEQ slot4
	MOVWU 52(R5), R7
	CMPW R7, R6
	BEQ slot5
	MOVWU 60(R5), R7
	CMPW R7, R6
	BEQ slot6
	MOVD ZR, R8 // no slot: reference 0
	B store
slot0:
	MOVWU 8(R5), R8
	B store
slot1:
	MOVWU 16(R5), R8
	B store
slot2:
	MOVWU 24(R5), R8
	B store
slot3:
	MOVWU 32(R5), R8
	B store
slot4:
	MOVWU 40(R5), R8
	B store
slot5:
	MOVWU 48(R5), R8
	B store
slot6:
	MOVWU 56(R5), R8
	B store
store:
	MOVW R8, 24(R2) // p.ref
	SUBW $1, R8, R11
	LSRW $1, R11, R11
	CMP R10, R11
	BHS next
	ADD R11<<6, R9, R11
	PRFM (R11), PLDL1KEEP
next:
	ADD $32, R2, R2
	SUB $1, R3, R3
	CBNZ R3, loop
done:
	RET

// func prefetchLines(a *uintptr, n int)
//
// Lines.Flush, as in prefetch_amd64.s.
TEXT ·prefetchLines(SB), NOSPLIT|NOFRAME, $0-16
	MOVD a+0(FP), R0
	MOVD n+8(FP), R1
	CMP $0, R1
	BLE done
loop:
	MOVD (R0), R2
	PRFM (R2), PLDL1KEEP
	ADD $8, R0, R0
	SUB $1, R1, R1
	CBNZ R1, loop
done:
	RET
