#include "textflag.h"

// maskAsm is Mask: it rotates the key for pos, masks payloads under 64 bytes
// with general-purpose registers and jumps to avx2<> or sse2<> for longer
// ones. Those XOR the CX bytes at DI with the little-endian 4-byte key in AX
// repeated. For CX >= alignMin they first mask a head of 1, 2, 4, 8 (and 16)
// bytes so that the main loop's loads and stores are vector-aligned and never
// split a cache line; after the odd byte and the odd halfword the key rotates
// so that its low byte stays on the next payload byte. The main loop covers
// 128 (AVX2) or 64 (SSE2) bytes per iteration; the remaining CX%128 (CX%64)
// bytes go 64, 32, 16, 8, 4, 2, 1 at a time, by the bits of the count.
//
// Registers: DI = b, CX = bytes left, AX = key (32 bits), R8 = key|key<<32,
// DX = head length, X0/Y0 = key broadcast.

#define alignMin 256

// func maskAsm(b *byte, n int, key uint32, pos int) int
TEXT ·maskAsm(SB), NOSPLIT, $0-40
	MOVQ b+0(FP), DI
	MOVQ n+8(FP), CX
	MOVL key+16(FP), AX
	MOVQ pos+24(FP), DX
	LEAQ (DX)(CX*1), R8
	ANDQ $3, R8
	MOVQ R8, ret+32(FP)

	// Rotate the key right by 8*(pos%4) bits, so that its low byte is the
	// one for b[0].
	MOVQ CX, R9
	MOVQ DX, CX
	ANDL $3, CX
	SHLL $3, CX
	RORL CX, AX
	MOVQ R9, CX
	CMPQ CX, $64
	JAE  vector

	// Under 64 bytes: 32, 16, 8, 4, 2, 1 at a time by the bits of n.
	MOVQ  AX, R8
	SHLQ  $32, R8
	ORQ   AX, R8
	TESTQ $32, CX
	JZ    short16
	XORQ  R8, (DI)
	XORQ  R8, 8(DI)
	XORQ  R8, 16(DI)
	XORQ  R8, 24(DI)
	ADDQ  $32, DI

short16:
	TESTQ $16, CX
	JZ    short8
	XORQ  R8, (DI)
	XORQ  R8, 8(DI)
	ADDQ  $16, DI

short8:
	TESTQ $8, CX
	JZ    short4
	XORQ  R8, (DI)
	ADDQ  $8, DI

short4:
	TESTQ $4, CX
	JZ    short2
	XORL  AX, (DI)
	ADDQ  $4, DI

short2:
	TESTQ $2, CX
	JZ    short1
	XORW  AX, (DI)
	RORL  $16, AX
	ADDQ  $2, DI

short1:
	TESTQ $1, CX
	JZ    short0
	XORB  AL, (DI)

short0:
	RET

vector:
	CMPB ·useAVX2(SB), $0
	JEQ  use_sse2
	JMP  avx2<>(SB)

use_sse2:
	JMP sse2<>(SB)

// func maskAVX2(b *byte, n int, k uint32)
TEXT ·maskAVX2(SB), NOSPLIT, $0-20
	MOVQ b+0(FP), DI
	MOVQ n+8(FP), CX
	MOVL k+16(FP), AX
	JMP  avx2<>(SB)

// func maskSSE2(b *byte, n int, k uint32)
TEXT ·maskSSE2(SB), NOSPLIT, $0-20
	MOVQ b+0(FP), DI
	MOVQ n+8(FP), CX
	MOVL k+16(FP), AX
	JMP  sse2<>(SB)

// avx2<> and sse2<> mask the CX bytes at DI with the rotated key in AX and
// return to their caller's caller: maskAsm and the two above jump to them.
TEXT avx2<>(SB), NOSPLIT, $0
	XORQ DX, DX
	CMPQ CX, $alignMin
	JB   avx2_broadcast

	// DX = bytes up to the next 32-byte boundary.
	MOVQ DI, DX
	NEGQ DX
	ANDQ $31, DX
	SUBQ DX, CX
	TESTQ $1, DX
	JZ   avx2_head2
	XORB AL, (DI)
	RORL $8, AX
	INCQ DI

avx2_head2:
	TESTQ $2, DX
	JZ    avx2_broadcast
	XORW  AX, (DI)
	RORL  $16, AX
	ADDQ  $2, DI

avx2_broadcast:
	MOVQ         AX, R8
	SHLQ         $32, R8
	ORQ          AX, R8
	MOVQ         R8, X0
	VPBROADCASTQ X0, Y0
	TESTQ        $4, DX
	JZ           avx2_head8
	XORL         AX, (DI)
	ADDQ         $4, DI

avx2_head8:
	TESTQ $8, DX
	JZ    avx2_head16
	XORQ  R8, (DI)
	ADDQ  $8, DI

avx2_head16:
	TESTQ   $16, DX
	JZ      avx2_main
	VPXOR   (DI), X0, X1
	VMOVDQU X1, (DI)
	ADDQ    $16, DI

avx2_main:
	SUBQ $128, CX
	JB   avx2_tail

avx2_loop:
	VPXOR   (DI), Y0, Y1
	VPXOR   32(DI), Y0, Y2
	VPXOR   64(DI), Y0, Y3
	VPXOR   96(DI), Y0, Y4
	VMOVDQU Y1, (DI)
	VMOVDQU Y2, 32(DI)
	VMOVDQU Y3, 64(DI)
	VMOVDQU Y4, 96(DI)
	ADDQ    $128, DI
	SUBQ    $128, CX
	JAE     avx2_loop

avx2_tail:
	// CX is the remainder minus 128; its low 7 bits are the remainder.
	TESTQ   $64, CX
	JZ      avx2_tail32
	VPXOR   (DI), Y0, Y1
	VPXOR   32(DI), Y0, Y2
	VMOVDQU Y1, (DI)
	VMOVDQU Y2, 32(DI)
	ADDQ    $64, DI

avx2_tail32:
	TESTQ   $32, CX
	JZ      avx2_tail16
	VPXOR   (DI), Y0, Y1
	VMOVDQU Y1, (DI)
	ADDQ    $32, DI

avx2_tail16:
	VZEROUPPER
	TESTQ   $16, CX
	JZ      avx2_tail8
	VPXOR   (DI), X0, X1
	VMOVDQU X1, (DI)
	ADDQ    $16, DI

avx2_tail8:
	TESTQ $8, CX
	JZ    avx2_tail4
	XORQ  R8, (DI)
	ADDQ  $8, DI

avx2_tail4:
	TESTQ $4, CX
	JZ    avx2_tail2
	XORL  AX, (DI)
	ADDQ  $4, DI

avx2_tail2:
	TESTQ $2, CX
	JZ    avx2_tail1
	XORW  AX, (DI)
	RORL  $16, AX
	ADDQ  $2, DI

avx2_tail1:
	TESTQ $1, CX
	JZ    avx2_done
	XORB  AL, (DI)

avx2_done:
	RET

TEXT sse2<>(SB), NOSPLIT, $0
	XORQ DX, DX
	CMPQ CX, $alignMin
	JB   sse2_broadcast

	// DX = bytes up to the next 16-byte boundary.
	MOVQ DI, DX
	NEGQ DX
	ANDQ $15, DX
	SUBQ DX, CX
	TESTQ $1, DX
	JZ   sse2_head2
	XORB AL, (DI)
	RORL $8, AX
	INCQ DI

sse2_head2:
	TESTQ $2, DX
	JZ    sse2_broadcast
	XORW  AX, (DI)
	RORL  $16, AX
	ADDQ  $2, DI

sse2_broadcast:
	MOVQ   AX, R8
	SHLQ   $32, R8
	ORQ    AX, R8
	MOVQ   R8, X0
	PSHUFD $0x44, X0, X0 // both quadwords = R8
	TESTQ  $4, DX
	JZ     sse2_head8
	XORL   AX, (DI)
	ADDQ   $4, DI

sse2_head8:
	TESTQ $8, DX
	JZ    sse2_main
	XORQ  R8, (DI)
	ADDQ  $8, DI

sse2_main:
	SUBQ $64, CX
	JB   sse2_tail

sse2_loop:
	MOVOU (DI), X1
	MOVOU 16(DI), X2
	MOVOU 32(DI), X3
	MOVOU 48(DI), X4
	PXOR  X0, X1
	PXOR  X0, X2
	PXOR  X0, X3
	PXOR  X0, X4
	MOVOU X1, (DI)
	MOVOU X2, 16(DI)
	MOVOU X3, 32(DI)
	MOVOU X4, 48(DI)
	ADDQ  $64, DI
	SUBQ  $64, CX
	JAE   sse2_loop

sse2_tail:
	// CX is the remainder minus 64; its low 6 bits are the remainder.
	TESTQ $32, CX
	JZ    sse2_tail16
	MOVOU (DI), X1
	MOVOU 16(DI), X2
	PXOR  X0, X1
	PXOR  X0, X2
	MOVOU X1, (DI)
	MOVOU X2, 16(DI)
	ADDQ  $32, DI

sse2_tail16:
	TESTQ $16, CX
	JZ    sse2_tail8
	MOVOU (DI), X1
	PXOR  X0, X1
	MOVOU X1, (DI)
	ADDQ  $16, DI

sse2_tail8:
	TESTQ $8, CX
	JZ    sse2_tail4
	XORQ  R8, (DI)
	ADDQ  $8, DI

sse2_tail4:
	TESTQ $4, CX
	JZ    sse2_tail2
	XORL  AX, (DI)
	ADDQ  $4, DI

sse2_tail2:
	TESTQ $2, CX
	JZ    sse2_tail1
	XORW  AX, (DI)
	RORL  $16, AX
	ADDQ  $2, DI

sse2_tail1:
	TESTQ $1, CX
	JZ    sse2_done
	XORB  AL, (DI)

sse2_done:
	RET
