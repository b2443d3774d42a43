/* rz-true: the sandbox check's program (sandbox.c, "the helper's check";
 * written into the helper's root by write_check_program in
 * sandbox_helper.c): it exits 0 and does nothing else. No libc and no dynamic
 * loader, whose start-up (ld.so's CPU feature probing: each cpuid traps
 * to the hypervisor in a VM) cost /bin/true ~0.7 ms of CPU, in series
 * before a helper's first step. Built static, with no start files, for
 * the architectures below only (meson.build); elsewhere the check runs
 * /bin/true. */
#if defined(__x86_64__)
__asm__(".globl _start\n"
        "_start:\n\t"
        "xor %edi, %edi\n\t"
        "mov $60, %eax\n\t"   /* exit */
        "syscall\n");
#elif defined(__aarch64__)
__asm__(".globl _start\n"
        "_start:\n\t"
        "mov x0, #0\n\t"
        "mov x8, #93\n\t"     /* exit */
        "svc #0\n");
#else
#error "rz-true is built for x86_64 and aarch64 only (meson.build)"
#endif
