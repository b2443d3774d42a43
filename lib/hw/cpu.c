/* CPU identity and features: cpuid on x86, the auxiliary vector on Arm. */
#include <string.h>

#include "hw/hw_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

typedef struct feat { const char *name; unsigned bit; } feat;

static int add_bits(rz_caps *c, uint32_t reg, const feat *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((reg >> f[i].bit) & 1u)
            if (rz__strv_add(&c->features, f[i].name) != RZ_OK)
                return RZ_ENOMEM;
    return RZ_OK;
}

/* Which register states the OS saves (XCR0); AVX needs bits 1-2, AVX-512
 * also 5-7, AMX 17-18. Without OSXSAVE none of them may be used. */
static uint64_t xcr0(uint32_t ecx1)
{
    if (!((ecx1 >> 27) & 1u))
        return 0;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Each cpuid traps to the hypervisor in a VM (~15 us here): each leaf is
 * asked once, within the maximum leaf 0 and 0x80000000 gave. */
static int x86_vendor_model(rz_caps *c, unsigned *max)
{
    unsigned a, b, cx, d;
    char vendor[13] = "";
    *max = 0;
    if (__get_cpuid(0, &a, &b, &cx, &d)) {   /* false: no cpuid (i386) */
        *max = a;
        memcpy(vendor, &b, 4);
        memcpy(vendor + 4, &d, 4);
        memcpy(vendor + 8, &cx, 4);
        vendor[12] = '\0';
    }
    char brand[49] = "";
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) >= 0x80000004u) {
        for (unsigned leaf = 0; leaf < 3; leaf++) {
            unsigned r[4];
            __cpuid(0x80000002u + leaf, r[0], r[1], r[2], r[3]);
            memcpy(brand + leaf * 16, r, 16);
        }
        brand[48] = '\0';
    }
    const char *model = brand;
    while (*model == ' ')
        model++;
    int rc = RZ_OK;
    if (!*c->cpu_vendor && *vendor)
        rc = rz__set_str(&c->cpu_vendor, vendor);
    if (rc == RZ_OK && !*c->cpu_model && *model)
        rc = rz__set_str(&c->cpu_model, model);
    return rc;
}

int rz__hw_cpu_features(rz_caps *c)
{
    static const feat ecx1[] = {
        {"sse3", 0}, {"pclmulqdq", 1}, {"ssse3", 9}, {"sse4.1", 19},
        {"sse4.2", 20}, {"popcnt", 23}, {"aes", 25}, {"rdrand", 30},
    };
    static const feat ecx1_avx[] = { {"avx", 28}, {"fma", 12}, {"f16c", 29} };
    static const feat edx1[] = { {"sse2", 26} };
    static const feat ebx7[] = { {"bmi1", 3}, {"bmi2", 8}, {"sha", 29} };
    static const feat ebx7_avx[] = { {"avx2", 5} };
    static const feat ecx7_avx[] = { {"vaes", 9}, {"vpclmulqdq", 10}, {"gfni", 8} };
    static const feat ebx7_512[] = {
        {"avx512f", 16}, {"avx512dq", 17}, {"avx512cd", 28}, {"avx512bw", 30},
        {"avx512vl", 31},
    };
    static const feat ecx7_512[] = { {"avx512_vnni", 11} };
    static const feat edx7_512[] = { {"avx512_fp16", 23} };
    static const feat edx7_amx[] = { {"amx_bf16", 22}, {"amx_tile", 24}, {"amx_int8", 25} };
    static const feat eax71_avx[] = { {"avx_vnni", 4} };
    static const feat eax71_512[] = { {"avx512_bf16", 5} };

    unsigned a, b, cx, d, max = 0;
    int rc = x86_vendor_model(c, &max);
    if (rc != RZ_OK || max < 1)
        return rc;
    __cpuid(1, a, b, cx, d);
    uint64_t x = xcr0(cx);
    bool avx_os = (x & 0x6) == 0x6, avx512_os = (x & 0xe6) == 0xe6;
    bool amx_os = (x & 0x60000) == 0x60000;
    rc = add_bits(c, cx, ecx1, RZ_ARRAY_LEN(ecx1));
    if (rc == RZ_OK) rc = add_bits(c, d, edx1, RZ_ARRAY_LEN(edx1));
    if (rc == RZ_OK && avx_os) rc = add_bits(c, cx, ecx1_avx, RZ_ARRAY_LEN(ecx1_avx));
    if (rc != RZ_OK || max < 7)
        return rc;
    unsigned a7, b7, c7, d7, a71 = 0, b71, c71, d71;
    __cpuid_count(7, 0, a7, b7, c7, d7);
    if (a7 >= 1)
        __cpuid_count(7, 1, a71, b71, c71, d71);
    rc = add_bits(c, b7, ebx7, RZ_ARRAY_LEN(ebx7));
    if (rc == RZ_OK && avx_os) rc = add_bits(c, b7, ebx7_avx, RZ_ARRAY_LEN(ebx7_avx));
    if (rc == RZ_OK && avx_os) rc = add_bits(c, c7, ecx7_avx, RZ_ARRAY_LEN(ecx7_avx));
    if (rc == RZ_OK && avx_os) rc = add_bits(c, a71, eax71_avx, RZ_ARRAY_LEN(eax71_avx));
    if (rc == RZ_OK && avx512_os) {
        rc = add_bits(c, b7, ebx7_512, RZ_ARRAY_LEN(ebx7_512));
        if (rc == RZ_OK) rc = add_bits(c, c7, ecx7_512, RZ_ARRAY_LEN(ecx7_512));
        if (rc == RZ_OK) rc = add_bits(c, d7, edx7_512, RZ_ARRAY_LEN(edx7_512));
        if (rc == RZ_OK) rc = add_bits(c, a71, eax71_512, RZ_ARRAY_LEN(eax71_512));
    }
    if (rc == RZ_OK && amx_os) rc = add_bits(c, d7, edx7_amx, RZ_ARRAY_LEN(edx7_amx));
    return rc;
}

#elif defined(__aarch64__) || defined(__arm__)
#include <sys/auxv.h>
#include <asm/hwcap.h>

typedef struct feat { const char *name; unsigned long bit; } feat;

static int add_caps(rz_caps *c, unsigned long have, const feat *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (have & f[i].bit)
            if (rz__strv_add(&c->features, f[i].name) != RZ_OK)
                return RZ_ENOMEM;
    return RZ_OK;
}

int rz__hw_cpu_features(rz_caps *c)
{
    /* Each bit only where the kernel headers know it. */
    static const feat hw1[] = {
#ifdef HWCAP_ASIMD
        {"neon", HWCAP_ASIMD}, {"asimd", HWCAP_ASIMD},
#endif
#ifdef HWCAP_NEON
        {"neon", HWCAP_NEON},
#endif
#ifdef HWCAP_AES
        {"aes", HWCAP_AES},
#endif
#ifdef HWCAP_PMULL
        {"pmull", HWCAP_PMULL},
#endif
#ifdef HWCAP_SHA2
        {"sha2", HWCAP_SHA2},
#endif
#ifdef HWCAP_CRC32
        {"crc32", HWCAP_CRC32},
#endif
#ifdef HWCAP_ATOMICS
        {"atomics", HWCAP_ATOMICS},
#endif
#ifdef HWCAP_FPHP
        {"fphp", HWCAP_FPHP}, {"fp16", HWCAP_FPHP},
#endif
#ifdef HWCAP_ASIMDHP
        {"asimdhp", HWCAP_ASIMDHP},
#endif
#ifdef HWCAP_SHA3
        {"sha3", HWCAP_SHA3},
#endif
#ifdef HWCAP_SM4
        {"sm4", HWCAP_SM4},
#endif
#ifdef HWCAP_ASIMDDP
        {"dotprod", HWCAP_ASIMDDP},
#endif
#ifdef HWCAP_SVE
        {"sve", HWCAP_SVE},
#endif
        {NULL, 0},
    };
    static const feat hw2[] = {
#ifdef HWCAP2_SVE2
        {"sve2", HWCAP2_SVE2},
#endif
#ifdef HWCAP2_I8MM
        {"i8mm", HWCAP2_I8MM},
#endif
#ifdef HWCAP2_BF16
        {"bf16", HWCAP2_BF16},
#endif
#ifdef HWCAP2_RNG
        {"rng", HWCAP2_RNG},
#endif
        {NULL, 0},
    };
    int rc = RZ_OK;
    if (!*c->cpu_vendor)
        rc = rz__set_str(&c->cpu_vendor, "ARM");
    if (rc == RZ_OK)
        rc = add_caps(c, getauxval(AT_HWCAP), hw1, RZ_ARRAY_LEN(hw1) - 1);
#ifdef AT_HWCAP2
    if (rc == RZ_OK)
        rc = add_caps(c, getauxval(AT_HWCAP2), hw2, RZ_ARRAY_LEN(hw2) - 1);
#else
    (void)hw2;
#endif
    return rc;
}

#else

/* Other architectures: the topology is still known, features are not. */
int rz__hw_cpu_features(rz_caps *c)
{
    (void)c;
    return RZ_OK;
}

#endif
