//go:build !race

#include "textflag.h"

// func casUser1(u *atomic.Uint64, old, gen, new uint64) (swapped, live bool)
//
// LOCK CMPXCHG16B compares DX:AX with the 16 bytes at (DI), which must be
// 16-byte aligned, and stores CX:BX there if they are equal (ZF set);
// otherwise it loads the 16 bytes into DX:AX (ZF clear). Here AX and BX
// are the user word, old and new, and DX and CX the generation word,
// stored back unchanged. In Go the loop around it, with the call's
// spills on both sides, took about 20 instructions more (bench-instr).
TEXT ·casUser1(SB), NOSPLIT|NOFRAME, $0-34
	MOVQ u+0(FP), DI
	MOVQ old+8(FP), R11
	MOVQ gen+16(FP), R8
	MOVQ new+24(FP), BX
	MOVQ $0xffffffffffff, R9 // genMask
	MOVQ R11, AX
	MOVQ R8, DX
again:
	MOVQ DX, CX
	LOCK
	CMPXCHG16B (DI)
	JEQ swapped
	// DX:AX is what the pair held.
	MOVQ DX, R10
	ANDQ R9, R10
	CMPQ R10, R8
	JNE gone     // another generation
	CMPQ AX, R11
	JNE differs  // the word is not old
	JMP again    // only a pin's count moved; AX is old, DX the word read
swapped:
	MOVB $1, swapped+32(FP)
	MOVB $1, live+33(FP)
	RET
differs:
	MOVB $0, swapped+32(FP)
	MOVB $1, live+33(FP)
	RET
gone:
	MOVB $0, swapped+32(FP)
	MOVB $0, live+33(FP)
	RET
