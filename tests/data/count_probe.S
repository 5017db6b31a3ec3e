// A program whose instruction counts are known exactly, for the counting plugin's test.
// Three marks (getpriority(0x6f70746b, k)) around two identical loops of 1000 iterations; each loop
// iteration runs 7 instructions: 1 scalar add, 2 SIMD (add, sdot), 1 load, 1 store, subs, b.ne.
    .global _start
    .text
_start:
    sub sp, sp, #16
    mov x1, #0
    bl mark
    bl work
    mov x1, #1
    bl mark
    bl work
    mov x1, #2
    bl mark
    mov x8, #93          // exit(0)
    mov x0, #0
    svc #0

mark:                    // 5 instructions: getpriority(MARK_WHICH, x1)
    mov x8, #141
    movz x0, #0x746b
    movk x0, #0x6f70, lsl #16
    svc #0
    ret

work:                    // 1 + 1000 x 7 + 1 = 7002 instructions
    mov x9, #1000
1:  add x10, x10, #1
    add v0.4s, v0.4s, v1.4s
    sdot v2.4s, v3.16b, v4.16b
    ldr x11, [sp]
    str x11, [sp]
    subs x9, x9, #1
    b.ne 1b
    ret
