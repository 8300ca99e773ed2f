/* Silicon vectors for exitlab-x86's SSE floating-point semantics.
 *
 * Runs each SSE/SSE2/SSE3/SSE4.1 floating-point instruction on this host
 * with a random MXCSR (rounding, DAZ, FTZ, masks) over special and random
 * operands, and prints one line per case:
 *
 *   <op> <imm8> <mxcsr in> <a> <b> <result> <mxcsr out> <fault>
 *
 * (hex; a, b and result are the low 64 bits of the XMM operands for
 * scalar forms, all 128 bits for packed ones; fault is 1 when the
 * instruction raised #XM, seen as SIGFPE, in which case result is the
 * destination as the fault left it and mxcsr out the MXCSR it saved).
 *
 * Build and run (x86-64 Linux, gcc):
 *   gcc -O1 -msse4.1 -fno-strict-aliasing -o gen_sse gen_sse.c && ./gen_sse 100 > sse.txt
 * The committed sse.txt names the CPU it came from in its first line;
 * rcp.txt is `./gen_sse tables` on the same CPU.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <immintrin.h>

typedef unsigned __int128 u128;
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}

static sigjmp_buf jb;
static volatile uint32_t fault_mxcsr;
static void on_fpe(int sig, siginfo_t *si, void *ctx) {
    ucontext_t *uc = ctx;
    (void)sig; (void)si;
    fault_mxcsr = uc->uc_mcontext.fpregs->mxcsr;
    siglongjmp(jb, 1);
}

static uint32_t f32_special(void) {
    static const uint32_t sp[] = {
        0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007fffff, 0x807fffff,
        0x00800000, 0x80800000, 0x3f800000, 0xbf800000, 0x7f7fffff, 0xff7fffff,
        0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001,
        0x7fa00000, 0x7fc12345, 0x4f000000, 0xcf000000, 0x5f000000, 0x3f000000,
        0x3fc00000, 0x40200000, 0x00400000, 0x0ff00000, 0x1a800000, 0x65000000,
    };
    uint64_t r = rnd();
    switch (r % 5) {
    case 0: case 1: return sp[(r >> 8) % (sizeof sp / sizeof sp[0])];
    case 2: return (uint32_t)(r >> 16) & 0x807fffff; /* denormal or zero */
    case 3: return ((uint32_t)(r >> 16) & 0x80ffffff) | ((uint32_t)(((r >> 40) % 60) + 97) << 23);
    default: return (uint32_t)(r >> 16);
    }
}

static uint64_t f64_special(void) {
    static const uint64_t sp[] = {
        0, 0x8000000000000000ull, 1, 0x8000000000000001ull, 0x000fffffffffffffull,
        0x0010000000000000ull, 0x8010000000000000ull, 0x3ff0000000000000ull,
        0xbff0000000000000ull, 0x7fefffffffffffffull, 0xffefffffffffffffull,
        0x7ff0000000000000ull, 0xfff0000000000000ull, 0x7ff8000000000000ull,
        0xfff8000000000000ull, 0x7ff0000000000001ull, 0xfff0000000000001ull,
        0x7ff4000000000000ull, 0x41e0000000000000ull, 0xc1e0000000000000ull,
        0x43e0000000000000ull, 0xc3e0000000000000ull, 0x3fe0000000000000ull,
        0x3ff8000000000000ull, 0x47efffffe0000000ull, 0x36a0000000000000ull,
        0x380fffffe0000000ull, 0x3810000000000000ull, 0x0000000000000000ull,
    };
    uint64_t r = rnd();
    switch (r % 5) {
    case 0: case 1: return sp[(r >> 8) % (sizeof sp / sizeof sp[0])];
    case 2: return rnd() & 0x800fffffffffffffull;
    case 3: return (rnd() & 0x800fffffffffffffull) | ((((r >> 40) % 400) + 823) << 52);
    default: return rnd();
    }
}

static uint32_t rand_mxcsr(void) {
    uint64_t r = rnd();
    uint32_t m = (uint32_t)(r & 0x6040) | 0x8000 * ((r >> 20) & 1);
    if (r % 4 == 0)
        m |= (uint32_t)((r >> 24) & 0x3f) << 7; /* some masks clear */
    else
        m |= 0x1f80;
    return m;
}

static u128 lanes32(void) {
    u128 v = 0;
    for (int i = 0; i < 4; i++) v |= (u128)f32_special() << (32 * i);
    return v;
}
static u128 lanes64(void) {
    return (u128)f64_special() | ((u128)f64_special() << 64);
}

static void hex128(u128 v) { printf(" %016llx%016llx", (unsigned long long)(v >> 64), (unsigned long long)v); }

/* One case: dst (in/out), src, through asm with ldmxcsr/stmxcsr around. */
#define CASE(NAME, INSN, IMM, GEN)                                                  \
    static void case_##NAME(void) {                                                 \
        u128 a = GEN(), b = GEN(), r;                                               \
        uint32_t cin = rand_mxcsr(), cout;                                          \
        int fault = 0;                                                              \
        if (sigsetjmp(jb, 1) == 0) {                                                \
            __asm__ volatile("movdqu %[a], %%xmm0\n\tmovdqu %[b], %%xmm1\n\t"       \
                             "ldmxcsr %[ci]\n\t" INSN "\n\tstmxcsr %[co]\n\t"      \
                             "ldmxcsr %[def]\n\tmovdqu %%xmm0, %[r]"                \
                             : [r] "=m"(r), [co] "=m"(cout)                         \
                             : [a] "m"(a), [b] "m"(b), [ci] "m"(cin),               \
                               [def] "m"(def_mxcsr)                                 \
                             : "xmm0", "xmm1", "rax", "memory", "cc");              \
        } else {                                                                    \
            fault = 1; r = a; cout = fault_mxcsr;                                   \
            __asm__ volatile("ldmxcsr %0" ::"m"(def_mxcsr));                        \
        }                                                                           \
        printf("%s %02x %08x", #NAME, IMM, cin); hex128(a); hex128(b); hex128(r);  \
        printf(" %08x %d\n", cout, fault);                                          \
    }

static const uint32_t def_mxcsr = 0x1f80;

CASE(addss, "addss %%xmm1, %%xmm0", 0, lanes32)
CASE(subss, "subss %%xmm1, %%xmm0", 0, lanes32)
CASE(mulss, "mulss %%xmm1, %%xmm0", 0, lanes32)
CASE(divss, "divss %%xmm1, %%xmm0", 0, lanes32)
CASE(sqrtss, "sqrtss %%xmm1, %%xmm0", 0, lanes32)
CASE(minss, "minss %%xmm1, %%xmm0", 0, lanes32)
CASE(maxss, "maxss %%xmm1, %%xmm0", 0, lanes32)
CASE(addps, "addps %%xmm1, %%xmm0", 0, lanes32)
CASE(mulps, "mulps %%xmm1, %%xmm0", 0, lanes32)
CASE(divps, "divps %%xmm1, %%xmm0", 0, lanes32)
CASE(addsd, "addsd %%xmm1, %%xmm0", 0, lanes64)
CASE(subsd, "subsd %%xmm1, %%xmm0", 0, lanes64)
CASE(mulsd, "mulsd %%xmm1, %%xmm0", 0, lanes64)
CASE(divsd, "divsd %%xmm1, %%xmm0", 0, lanes64)
CASE(sqrtsd, "sqrtsd %%xmm1, %%xmm0", 0, lanes64)
CASE(minsd, "minsd %%xmm1, %%xmm0", 0, lanes64)
CASE(maxsd, "maxsd %%xmm1, %%xmm0", 0, lanes64)
CASE(addpd, "addpd %%xmm1, %%xmm0", 0, lanes64)
CASE(sqrtps, "sqrtps %%xmm1, %%xmm0", 0, lanes32)
CASE(sqrtpd, "sqrtpd %%xmm1, %%xmm0", 0, lanes64)
CASE(cmpss0, "cmpss $0, %%xmm1, %%xmm0", 0, lanes32)
CASE(cmpss1, "cmpss $1, %%xmm1, %%xmm0", 1, lanes32)
CASE(cmpss2, "cmpss $2, %%xmm1, %%xmm0", 2, lanes32)
CASE(cmpss3, "cmpss $3, %%xmm1, %%xmm0", 3, lanes32)
CASE(cmpss4, "cmpss $4, %%xmm1, %%xmm0", 4, lanes32)
CASE(cmpss5, "cmpss $5, %%xmm1, %%xmm0", 5, lanes32)
CASE(cmpss6, "cmpss $6, %%xmm1, %%xmm0", 6, lanes32)
CASE(cmpss7, "cmpss $7, %%xmm1, %%xmm0", 7, lanes32)
CASE(cmppd1, "cmppd $1, %%xmm1, %%xmm0", 1, lanes64)
CASE(cmppd4, "cmppd $4, %%xmm1, %%xmm0", 4, lanes64)
CASE(comiss, "comiss %%xmm1, %%xmm0\n\tpushfq\n\tpopq %%rax\n\tmovq %%rax, %%xmm0", 0, lanes32)
CASE(ucomiss, "ucomiss %%xmm1, %%xmm0\n\tpushfq\n\tpopq %%rax\n\tmovq %%rax, %%xmm0", 0, lanes32)
CASE(comisd, "comisd %%xmm1, %%xmm0\n\tpushfq\n\tpopq %%rax\n\tmovq %%rax, %%xmm0", 0, lanes64)
CASE(ucomisd, "ucomisd %%xmm1, %%xmm0\n\tpushfq\n\tpopq %%rax\n\tmovq %%rax, %%xmm0", 0, lanes64)
CASE(cvtss2sd, "cvtss2sd %%xmm1, %%xmm0", 0, lanes32)
CASE(cvtsd2ss, "cvtsd2ss %%xmm1, %%xmm0", 0, lanes64)
CASE(cvtps2pd, "cvtps2pd %%xmm1, %%xmm0", 0, lanes32)
CASE(cvtpd2ps, "cvtpd2ps %%xmm1, %%xmm0", 0, lanes64)
CASE(cvtss2si32, "cvtss2si %%xmm1, %%eax\n\tmovq %%rax, %%xmm0", 0, lanes32)
CASE(cvtss2si64, "cvtss2si %%xmm1, %%rax\n\tmovq %%rax, %%xmm0", 0, lanes32)
CASE(cvttss2si32, "cvttss2si %%xmm1, %%eax\n\tmovq %%rax, %%xmm0", 0, lanes32)
CASE(cvtsd2si64, "cvtsd2si %%xmm1, %%rax\n\tmovq %%rax, %%xmm0", 0, lanes64)
CASE(cvttsd2si32, "cvttsd2si %%xmm1, %%eax\n\tmovq %%rax, %%xmm0", 0, lanes64)
CASE(cvtps2dq, "cvtps2dq %%xmm1, %%xmm0", 0, lanes32)
CASE(cvttps2dq, "cvttps2dq %%xmm1, %%xmm0", 0, lanes32)
CASE(cvtpd2dq, "cvtpd2dq %%xmm1, %%xmm0", 0, lanes64)
CASE(cvttpd2dq, "cvttpd2dq %%xmm1, %%xmm0", 0, lanes64)
CASE(cvtdq2ps, "cvtdq2ps %%xmm1, %%xmm0", 0, lanes32)
CASE(cvtdq2pd, "cvtdq2pd %%xmm1, %%xmm0", 0, lanes32)
CASE(cvtsi2ss64, "movq %%xmm1, %%rax\n\tcvtsi2ss %%rax, %%xmm0", 0, lanes64)
CASE(cvtsi2sd64, "movq %%xmm1, %%rax\n\tcvtsi2sd %%rax, %%xmm0", 0, lanes64)
CASE(roundss0, "roundss $0, %%xmm1, %%xmm0", 0, lanes32)
CASE(roundss1, "roundss $1, %%xmm1, %%xmm0", 1, lanes32)
CASE(roundss2, "roundss $2, %%xmm1, %%xmm0", 2, lanes32)
CASE(roundss3, "roundss $3, %%xmm1, %%xmm0", 3, lanes32)
CASE(roundss4, "roundss $4, %%xmm1, %%xmm0", 4, lanes32)
CASE(roundss9, "roundss $9, %%xmm1, %%xmm0", 9, lanes32)
CASE(roundpd0, "roundpd $0, %%xmm1, %%xmm0", 0, lanes64)
CASE(roundsd12, "roundsd $12, %%xmm1, %%xmm0", 12, lanes64)
CASE(dppsf1, "dpps $0xf1, %%xmm1, %%xmm0", 0xf1, lanes32)
CASE(dpps7e, "dpps $0x7e, %%xmm1, %%xmm0", 0x7e, lanes32)
CASE(dppd31, "dppd $0x31, %%xmm1, %%xmm0", 0x31, lanes64)
CASE(haddps, "haddps %%xmm1, %%xmm0", 0, lanes32)
CASE(hsubpd, "hsubpd %%xmm1, %%xmm0", 0, lanes64)
CASE(addsubps, "addsubps %%xmm1, %%xmm0", 0, lanes32)
CASE(rcpss, "rcpss %%xmm1, %%xmm0", 0, lanes32)
CASE(rsqrtss, "rsqrtss %%xmm1, %%xmm0", 0, lanes32)

CASE(minps, "minps %%xmm1, %%xmm0", 0, lanes32)
CASE(maxpd, "maxpd %%xmm1, %%xmm0", 0, lanes64)
CASE(subpd, "subpd %%xmm1, %%xmm0", 0, lanes64)
CASE(mulpd, "mulpd %%xmm1, %%xmm0", 0, lanes64)
CASE(divpd, "divpd %%xmm1, %%xmm0", 0, lanes64)
CASE(cmpps2, "cmpps $2, %%xmm1, %%xmm0", 2, lanes32)
CASE(cmpps5, "cmpps $5, %%xmm1, %%xmm0", 5, lanes32)
CASE(cmpsd0, "cmpsd $0, %%xmm1, %%xmm0", 0, lanes64)
CASE(cmpsd3, "cmpsd $3, %%xmm1, %%xmm0", 3, lanes64)
CASE(cmpsd6, "cmpsd $6, %%xmm1, %%xmm0", 6, lanes64)
CASE(cmpsd7, "cmpsd $7, %%xmm1, %%xmm0", 7, lanes64)
CASE(cvtpi2ps, "movdq2q %%xmm1, %%mm0\n\tcvtpi2ps %%mm0, %%xmm0\n\temms", 0, lanes32)
CASE(cvtps2pi, "cvtps2pi %%xmm1, %%mm0\n\tmovq2dq %%mm0, %%xmm0\n\temms", 0, lanes32)
CASE(cvttps2pi, "cvttps2pi %%xmm1, %%mm0\n\tmovq2dq %%mm0, %%xmm0\n\temms", 0, lanes32)
CASE(cvtpi2pd, "movdq2q %%xmm1, %%mm0\n\tcvtpi2pd %%mm0, %%xmm0\n\temms", 0, lanes32)
CASE(cvtpd2pi, "cvtpd2pi %%xmm1, %%mm0\n\tmovq2dq %%mm0, %%xmm0\n\temms", 0, lanes64)
CASE(cvttpd2pi, "cvttpd2pi %%xmm1, %%mm0\n\tmovq2dq %%mm0, %%xmm0\n\temms", 0, lanes64)
CASE(cvtsi2ss32, "movd %%xmm1, %%eax\n\tcvtsi2ss %%eax, %%xmm0", 0, lanes32)
CASE(cvtsi2sd32, "movd %%xmm1, %%eax\n\tcvtsi2sd %%eax, %%xmm0", 0, lanes32)
CASE(cvtss2si32b, "cvtss2si %%xmm1, %%eax\n\tmovq %%rax, %%xmm0", 0, lanes32)
CASE(cvttsd2si64, "cvttsd2si %%xmm1, %%rax\n\tmovq %%rax, %%xmm0", 0, lanes64)
CASE(cvttss2si64, "cvttss2si %%xmm1, %%rax\n\tmovq %%rax, %%xmm0", 0, lanes32)
CASE(cvtsd2si32, "cvtsd2si %%xmm1, %%eax\n\tmovq %%rax, %%xmm0", 0, lanes64)
CASE(roundps5, "roundps $5, %%xmm1, %%xmm0", 5, lanes32)
CASE(roundps10, "roundps $10, %%xmm1, %%xmm0", 10, lanes32)
CASE(roundps15, "roundps $15, %%xmm1, %%xmm0", 15, lanes32)
CASE(roundpd3, "roundpd $3, %%xmm1, %%xmm0", 3, lanes64)
CASE(roundsd1, "roundsd $1, %%xmm1, %%xmm0", 1, lanes64)
CASE(rcpps, "rcpps %%xmm1, %%xmm0", 0, lanes32)
CASE(rsqrtps, "rsqrtps %%xmm1, %%xmm0", 0, lanes32)
CASE(addsubpd, "addsubpd %%xmm1, %%xmm0", 0, lanes64)
CASE(haddpd, "haddpd %%xmm1, %%xmm0", 0, lanes64)
CASE(hsubps, "hsubps %%xmm1, %%xmm0", 0, lanes32)
CASE(dppsff, "dpps $0xff, %%xmm1, %%xmm0", 0xff, lanes32)
CASE(dpps31, "dpps $0x31, %%xmm1, %%xmm0", 0x31, lanes32)
CASE(dppdff, "dppd $0xff, %%xmm1, %%xmm0", 0xff, lanes64)

typedef void (*case_fn)(void);
#define E(n) case_##n
static const case_fn cases[] = {
    E(addss), E(subss), E(mulss), E(divss), E(sqrtss), E(minss), E(maxss), E(addps), E(mulps), E(divps), E(addsd), E(subsd), E(mulsd), E(divsd), E(sqrtsd), E(minsd), E(maxsd), E(addpd), E(sqrtps), E(sqrtpd), E(cmpss0), E(cmpss1), E(cmpss2), E(cmpss3), E(cmpss4), E(cmpss5), E(cmpss6), E(cmpss7), E(cmppd1), E(cmppd4), E(comiss), E(ucomiss), E(comisd), E(ucomisd), E(cvtss2sd), E(cvtsd2ss), E(cvtps2pd), E(cvtpd2ps), E(cvtss2si32), E(cvtss2si64), E(cvttss2si32), E(cvtsd2si64), E(cvttsd2si32), E(cvtps2dq), E(cvttps2dq), E(cvtpd2dq), E(cvttpd2dq), E(cvtdq2ps), E(cvtdq2pd), E(cvtsi2ss64), E(cvtsi2sd64), E(roundss0), E(roundss1), E(roundss2), E(roundss3), E(roundss4), E(roundss9), E(roundpd0), E(roundsd12), E(dppsf1), E(dpps7e), E(dppd31), E(haddps), E(hsubpd), E(addsubps), E(rcpss), E(rsqrtss), E(minps), E(maxpd), E(subpd), E(mulpd), E(divpd), E(cmpps2), E(cmpps5), E(cmpsd0), E(cmpsd3), E(cmpsd6), E(cmpsd7), E(cvtpi2ps), E(cvtps2pi), E(cvttps2pi), E(cvtpi2pd), E(cvtpd2pi), E(cvttpd2pi), E(cvtsi2ss32), E(cvtsi2sd32), E(cvtss2si32b), E(cvttsd2si64), E(cvttss2si64), E(cvtsd2si32), E(roundps5), E(roundps10), E(roundps15), E(roundpd3), E(roundsd1), E(rcpps), E(rsqrtps), E(addsubpd), E(haddpd), E(hsubps), E(dppsff), E(dpps31), E(dppdff),
};

/* `gen_sse tables`: RCPSS over every 11-bit fraction prefix and RSQRTSS
 * over every 10-bit prefix of both exponent parities, with the other
 * fraction bits random: "<op> <input> <result>" per line. */
static void tables(void) {
    for (uint32_t i = 0; i < 2048 * 3; i++) {
        uint32_t e = (uint32_t[]){127, 1, 253}[i / 2048];
        uint32_t x = (e << 23) | ((i % 2048) << 12) | ((uint32_t)rnd() & 0xfff) | (i & 1) << 31;
        float r = _mm_cvtss_f32(_mm_rcp_ss(_mm_set_ss(*(float *)&x)));
        printf("rcpss %08x %08x\n", x, *(uint32_t *)&r);
    }
    for (uint32_t i = 0; i < 2048 * 3; i++) {
        uint32_t e = (uint32_t[]){127, 2, 253}[i / 2048] + (i / 1024) % 2;
        uint32_t x = (e << 23) | ((i % 1024) << 13) | ((uint32_t)rnd() & 0x1fff);
        float r = _mm_cvtss_f32(_mm_rsqrt_ss(_mm_set_ss(*(float *)&x)));
        printf("rsqrtss %08x %08x\n", x, *(uint32_t *)&r);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "tables")) {
        tables();
        return 0;
    }
    int per_op = argc > 1 ? atoi(argv[1]) : 300;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fpe;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGFPE, &sa, NULL);
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) { printf("# %s", line); break; }
    if (f) fclose(f);
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int n = 0; n < per_op; n++) cases[i]();
    return 0;
}
