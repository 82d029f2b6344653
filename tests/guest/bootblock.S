/*
 * migrelay test guest: a 512-byte x86 boot sector that dirties memory.
 *
 * Plain GNU as, no C preprocessor.  Build (done by tests/lib/qemu.py, see
 * tests/guest/README):
 *	as --32 -o bootblock.o bootblock.S
 *	ld -m elf_i386 -Ttext 0x7c00 --oformat binary -e _start -o bootblock.img bootblock.o
 *
 * What it does:
 *  1. real mode: interrupts off, A20 on (port 0x92 "fast A20"), load a flat GDT,
 *     enter 32-bit protected mode (no paging);
 *  2. zero every byte from MEM_START (1 MiB) up to the top of RAM (exclusive);
 *     the top is the 32-bit little-endian value at image offset TOP_OFFSET (0x1f8),
 *     patched by the harness; the built-in default is 128 MiB;
 *  3. print 'A' on COM1;
 *  4. forever: increment byte 0 of every 4 KiB page from MEM_START to the top,
 *     in ascending order, then print 'B' on COM1.
 *
 * So at any moment where the vCPU is stopped, the pages hold byte 0 == v+1 below
 * some page and v from that page on (mod 256), and bytes 1..4095 of every page are 0.
 */

	.equ	MEM_START, 0x00100000
	.equ	PAGE_SIZE, 4096
	.equ	COM1, 0x3f8
	.equ	COM1_LSR, (COM1 + 5)
	.equ	LSR_THRE, 0x20
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

	/* Zero [MEM_START, top). */
	movl	top_of_ram, %ecx
	movl	$MEM_START, %edi
	subl	%edi, %ecx
	shrl	$2, %ecx
	xorl	%eax, %eax
	rep stosl

	movb	$'A', %bl
	call	putc

pass:
	movl	$MEM_START, %eax
	movl	top_of_ram, %edx
1:
	incb	(%eax)
	addl	$PAGE_SIZE, %eax
	cmpl	%edx, %eax
	jb	1b

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

	/* The harness patches this word: top of the memory window (exclusive). */
	.org	TOP_OFFSET
top_of_ram:
	.long	TOP_DEFAULT
	.org	0x1fe
	.byte	0x55, 0xaa
