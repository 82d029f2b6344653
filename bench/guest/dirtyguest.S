/*
 * migrelay benchmark guest (bench/b1-migration.py): a 512-byte x86 boot
 * sector derived from tests/guest/bootblock.S, with a working set smaller
 * than its RAM, so that precopy converges with QEMU's default 300 ms
 * downtime limit and max-bandwidth caps matter.
 *
 * Built by tests/lib/qemu.py build_guest(source=...), which patches the top
 * of RAM at image offset 0x1f8 (TOP_OFFSET); the harness then patches the top
 * of the hot window at 0x1f4 (HOT_OFFSET; default 32 MiB).
 *
 *  1. real mode: interrupts off, A20 on, flat GDT, 32-bit protected mode;
 *  2. set byte 0 of every 4 KiB page of [MEM_START, top) to 1: every page of
 *     RAM is non-zero, so QEMU's first pass sends all of it in full;
 *  3. print 'A' on COM1;
 *  4. forever: increment byte 0 of every page of [MEM_START, hot), and print
 *     'B' on COM1 after the first pass and then every 256th: the hot window is
 *     dirty again at every iteration.
 */

	.equ	MEM_START, 0x00100000
	.equ	PAGE_SIZE, 4096
	.equ	COM1, 0x3f8
	.equ	COM1_LSR, (COM1 + 5)
	.equ	LSR_THRE, 0x20
	.equ	HOT_OFFSET, 0x1f4
	.equ	HOT_DEFAULT, 0x02100000
	.equ	TOP_OFFSET, 0x1f8
	.equ	TOP_DEFAULT, 0x08000000

	.code16
	.text
	.globl	_start
_start:
	cli
	cld
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$0x7c00, %sp
	ljmp	$0, $real		/* normalise CS:IP to 0000:7cxx */
real:
	/* A20 through the system control port A (supported by QEMU's pc and q35). */
	inb	$0x92, %al
	orb	$0x02, %al
	andb	$0xfe, %al		/* never write the reset bit */
	outb	%al, $0x92

	lgdtl	gdt_desc
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	$0x08, $pmode

	.code32
pmode:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %fs
	movw	%ax, %gs
	movw	%ax, %ss
	movl	$0x7c00, %esp

	/* Byte 0 of every page of [MEM_START, top) = 1. */
	movl	$MEM_START, %eax
	movl	top_of_ram, %edx
0:
	movb	$1, (%eax)
	addl	$PAGE_SIZE, %eax
	cmpl	%edx, %eax
	jb	0b

	movb	$'A', %bl
	call	putc
	movl	$1, %esi		/* first 'B' after the first pass */

pass:
	movl	$MEM_START, %eax
	movl	hot_top, %edx
1:
	incb	(%eax)
	addl	$PAGE_SIZE, %eax
	cmpl	%edx, %eax
	jb	1b

	decl	%esi			/* 'B' every 256 passes only: fewer */
	jnz	pass			/* I/O exits, less BQL traffic */
	movl	$256, %esi
	movb	$'B', %bl
	call	putc
	jmp	pass

/* Write %bl to COM1 once the transmit holding register is empty. */
putc:
	movw	$COM1_LSR, %dx
2:
	inb	%dx, %al
	testb	$LSR_THRE, %al
	jz	2b
	movw	$COM1, %dx
	movb	%bl, %al
	outb	%al, %dx
	ret

	.p2align 3
gdt:
	.quad	0			/* null */
	.quad	0x00cf9a000000ffff	/* 0x08: code, base 0, limit 4 GiB, 32-bit */
	.quad	0x00cf92000000ffff	/* 0x10: data, base 0, limit 4 GiB */
gdt_end:

gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt

	/* Patched by the harness: top of the hot window, top of RAM (exclusive). */
	.org	HOT_OFFSET
hot_top:
	.long	HOT_DEFAULT
	.org	TOP_OFFSET
top_of_ram:
	.long	TOP_DEFAULT
	.org	0x1fe
	.byte	0x55, 0xaa
