/* rz-true: the sandbox check's program (sandbox_helper.c, "the check's
 * program"): it exits 0 and does nothing else. No libc and no dynamic
 * loader, whose start-up (ld.so's CPU feature probing: each cpuid traps
 * to the hypervisor in a VM) cost /bin/true ~0.7 ms of CPU, in series
 * before a helper's first step. Built static, with no start files, for
 * the architectures below only (meson.build); elsewhere the check runs
 * /bin/true. */
#if defined(__x86_64__)
__attribute__((naked, noreturn)) void _start(void)
{
    __asm__ volatile("xor %edi, %edi\n\t"
                     "mov $60, %eax\n\t"   /* exit */
                     "syscall");
}
#elif defined(__aarch64__)
__attribute__((naked, noreturn)) void _start(void)
{
    __asm__ volatile("mov x0, #0\n\t"
                     "mov x8, #93\n\t"     /* exit */
                     "svc #0");
}
#else
#error "rz-true is built for x86_64 and aarch64 only (meson.build)"
#endif
