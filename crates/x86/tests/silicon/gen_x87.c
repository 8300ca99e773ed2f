/* Silicon vectors for exitlab-x86's x87 semantics. Each case: FNINIT,
 * FLDCW <cw>, load b then a (ST(0) = a, ST(1) = b), run one instruction,
 * then FNSTSW and FXSAVE (both non-waiting, so an unmasked exception stays
 * pending instead of trapping). One line per case:
 *
 *   <op> <cw> <a> <b> <fsw> <ftw> <st0> <st1> <rflags> <mem>
 *
 * (hex; a, b, st0, st1 as 20-digit se:significand; rflags & 0x8d5 after
 * FCOMI/FUCOMIP, else 0; mem the 10 bytes at the memory operand, high byte
 * first, 0x5a where nothing was stored). For FLDS/FLDL/FLDconst, a and b
 * are the memory value (0 for constants); for the memory-operand forms
 * (suffix _m) b holds the memory operand's bits in its significand; FBLD's
 * a is the 10-byte operand; the e_ and o_ forms run with ST(1) empty or
 * the stack full. Operands cover zeros, denormals, pseudo-denormals,
 * unnormals, pseudo-NaNs, infinities, QNaNs and SNaNs of both signs,
 * values near integers and the format limits; control words cover every
 * precision and rounding control, with some exceptions unmasked.
 *   gcc -O1 -mno-red-zone -o gen_x87 gen_x87.c && ./gen_x87 > x87.txt
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { uint64_t sig; uint16_t se; } __attribute__((packed)) f80;
static uint64_t rng = 0x6a09e667f3bcc908ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static f80 operand(int trans) {
    f80 v;
    uint64_t r = rnd();
    uint16_t s = (uint16_t)((r >> 60) & 1) << 15;
    switch (r % 16) {
    case 0: v.se = s; v.sig = 0; break;                                      /* zero */
    case 1: v.se = s; v.sig = rnd() >> 1; break;                             /* denormal */
    case 2: v.se = s; v.sig = rnd() | 1ull << 63; break;                     /* pseudo-denormal */
    case 3: v.se = s | (uint16_t)(rnd() % 0x7ffe + 1); v.sig = rnd() >> 1; break; /* unnormal */
    case 4: v.se = s | 0x7fff; v.sig = 1ull << 63; break;                    /* infinity */
    case 5: v.se = s | 0x7fff; v.sig = rnd() | 3ull << 62; break;            /* QNaN */
    case 6: v.se = s | 0x7fff; v.sig = (rnd() & ~(1ull << 62)) | 1ull << 63 | 1; break; /* SNaN */
    case 7: v.se = s | 0x7fff; v.sig = rnd() >> 1 | 1; break;                /* pseudo-NaN */
    case 8: v.se = s | (uint16_t)(rnd() % 40 + 1); v.sig = rnd() | 1ull << 63; break;        /* near underflow */
    case 9: v.se = s | (uint16_t)(0x7ffe - rnd() % 40); v.sig = rnd() | 1ull << 63; break; /* near overflow */
    case 10: case 11: { /* near an integer or a half */
        int e = (int)(rnd() % 70); v.se = s | (uint16_t)(0x3fff + e);
        v.sig = (rnd() | 1ull << 63) & ~((e < 62 ? (1ull << (62 - e)) : 0) - 1 ? 0 : 0);
        if (e < 63 && r % 3) v.sig &= ~((1ull << (63 - e)) - 1) | (r % 2 ? 1ull << (62 - e) : 0);
        break; }
    default: /* normal, moderate exponents (transcendentals: 2^-95 < |x| < 2^8) */
        v.se = s | (uint16_t)(trans ? 0x3fff - 95 + rnd() % 103 : 0x3fff - 200 + rnd() % 400);
        v.sig = rnd() | 1ull << 63;
    }
    return v;
}

static uint16_t rand_cw(void) {
    uint64_t r = rnd();
    uint16_t cw = 0x0040 | (uint16_t)(r & 0x0f00);
    cw |= (r >> 16) % 4 == 0 ? (uint16_t)((r >> 20) & 0x3f) : 0x3f;
    return cw;
}

struct fx { uint16_t fcw, fsw; uint8_t ftw, r0; uint16_t fop; uint64_t fip, fdp; uint32_t mxcsr, mask; uint8_t st[8][16]; uint8_t rest[320]; } __attribute__((aligned(16)));

static void pr(const char *op, uint16_t cw, f80 a, f80 b, uint16_t fsw, struct fx *x, uint64_t extra) {
    f80 s0, s1;
    memcpy(&s0, x->st[0], 10); memcpy(&s1, x->st[1], 10);
    printf("%s %04x %04x%016llx %04x%016llx %04x %02x %04x%016llx %04x%016llx %llx", op, cw, a.se,
           (unsigned long long)a.sig, b.se, (unsigned long long)b.sig, fsw, x->ftw, s0.se,
           (unsigned long long)s0.sig, s1.se, (unsigned long long)s1.sig, (unsigned long long)extra);
}

static void pr_mem(const uint8_t *m) {
    printf(" ");
    for (int i = 9; i >= 0; i--) printf("%02x", m[i]);
    printf("\n");
}

#define RUN(NAME, INSN, TRANS)                                                               \
    static void op_##NAME(void) {                                                            \
        f80 a = operand(TRANS), b = operand(TRANS);                                          \
        uint16_t cw = rand_cw(), fsw; static struct fx x; uint64_t fl = 0;                   \
        uint8_t mem[16]; memset(mem, 0x5a, sizeof mem);                                       \
        __asm__ volatile("fninit\n\tfldcw %[cw]\n\tfldt %[b]\n\tfldt %[a]\n\t" INSN "\n\t"    \
                         "fnstsw %[sw]\n\tfxsave %[x]\n\tfninit"                              \
                         : [sw] "=m"(fsw), [x] "=m"(x), [m] "+m"(mem), "+a"(fl)               \
                         : [cw] "m"(cw), [a] "m"(a), [b] "m"(b) : "memory", "cc");            \
        pr(#NAME, cw, a, b, fsw, &x, fl);                                                    \
        pr_mem(mem);                                                                         \
    }

#define COMI0 "pushq $0\n\tpopfq\n\t"
#define COMI "\n\tpushfq\n\tpopq %%rax\n\tandq $0x8d5, %%rax"
RUN(fadd, "fadd %%st(1), %%st", 0)
RUN(fsub, "fsub %%st(1), %%st", 0)
RUN(fsubr, "fsubr %%st(1), %%st", 0)
RUN(fmul, "fmul %%st(1), %%st", 0)
RUN(fdiv, "fdiv %%st(1), %%st", 0)
RUN(fdivr, "fdivr %%st(1), %%st", 0)
RUN(faddp, "faddp %%st, %%st(1)", 0)
RUN(fsqrt, "fsqrt", 0)
RUN(frndint, "frndint", 0)
RUN(fscale, "fscale", 0)
RUN(fxtract, "fxtract", 0)
RUN(fprem, "fprem", 0)
RUN(fprem1, "fprem1", 0)
RUN(fabs, "fabs", 0)
RUN(fchs, "fchs", 0)
RUN(fxch, "fxch %%st(1)", 0)
RUN(fcom, "fcom %%st(1)", 0)
RUN(fucom, "fucom %%st(1)", 0)
RUN(fcompp, "fcompp", 0)
RUN(ftst, "ftst", 0)
RUN(fxam, "fxam", 0)
RUN(fcomi, COMI0 "fcomi %%st(1), %%st" COMI, 0)
RUN(fucomip, COMI0 "fucomip %%st(1), %%st" COMI, 0)
RUN(fsts, "fsts %[m]", 0)
RUN(fstl, "fstl %[m]", 0)
RUN(fistps, "fistps %[m]", 0)
RUN(fistpl, "fistpl %[m]", 0)
RUN(fistpll, "fistpll %[m]", 0)
RUN(fisttpl, "fisttpl %[m]", 0)
RUN(fbstp, "fbstp %[m]", 0)
RUN(fsin, "fsin", 1)
RUN(fcos, "fcos", 1)
RUN(fsincos, "fsincos", 1)
RUN(fptan, "fptan", 1)
RUN(fpatan, "fpatan", 1)
RUN(f2xm1, "f2xm1", 1)
RUN(fyl2x, "fyl2x", 1)
RUN(fyl2xp1, "fyl2xp1", 1)

/* Loads of m32fp/m64fp and the constants: the operand is ignored, b's
 * bits are the memory value. */
#define LOAD(NAME, INSN)                                                                     \
    static void op_##NAME(void) {                                                            \
        f80 a = operand(0), b; uint64_t mem = rnd();                                          \
        if (rnd() % 3 == 0) mem = (mem & 0x800fffffffffffffull) | ((rnd() % 2) ? 0x7ff0000000000000ull : 0); \
        if (rnd() % 5 == 0) mem = (mem & 0x807fffffull) | ((rnd() % 2) ? 0x7f800000ull : 0);  \
        b.se = 0; b.sig = mem; (void)a;                                                      \
        uint16_t cw = rand_cw(), fsw; static struct fx x;                                     \
        __asm__ volatile("fninit\n\tfldcw %[cw]\n\t" INSN "\n\tfnstsw %[sw]\n\tfxsave %[x]\n\tfninit" \
                         : [sw] "=m"(fsw), [x] "=m"(x) : [cw] "m"(cw), [m] "m"(mem) : "memory"); \
        pr(#NAME, cw, b, b, fsw, &x, 0);                                                     \
        printf(" 0\n");                                                                     \
    }
LOAD(flds, "flds %[m]")
LOAD(fldl, "fldl %[m]")
LOAD(fldpi, "fldpi")
LOAD(fldl2e, "fldl2e")
LOAD(fldl2t, "fldl2t")
LOAD(fldlg2, "fldlg2")
LOAD(fldln2, "fldln2")

/* Memory-operand forms: ST(0) = a, the memory operand drawn as a special
 * or random m32fp/m64fp/m16int/m32int; it is printed in b's slot (its raw
 * bits in the significand field). */
static uint64_t mem_operand(int kind) {
    uint64_t r = rnd();
    switch (kind) {
    case 0: { static const uint32_t sp[] = {0, 0x80000000, 1, 0x807fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0x3f800000, 0x7f7fffff};
              return r % 3 ? sp[(r >> 8) % 10] : (uint32_t)(r >> 20); }
    case 1: { static const uint64_t sp[] = {0, 1ull << 63, 1, 0x000fffffffffffffull, 0x7ff0000000000000ull, 0x7ff8000000000000ull, 0x7ff0000000000001ull, 0x3ff0000000000000ull, 0x7fefffffffffffffull};
              return r % 3 ? sp[(r >> 8) % 9] : rnd(); }
    case 2: return (uint16_t)r;
    default: return (uint32_t)r;
    }
}

#define MEMOP(NAME, INSN, KIND)                                                              \
    static void op_##NAME(void) {                                                            \
        f80 a = operand(0), b; uint64_t mem = mem_operand(KIND);                              \
        b.se = 0; b.sig = mem;                                                               \
        uint16_t cw = rand_cw(), fsw; static struct fx x;                                     \
        __asm__ volatile("fninit\n\tfldcw %[cw]\n\tfldz\n\tfldt %[a]\n\t" INSN "\n\tfnstsw %[sw]\n\tfxsave %[x]\n\tfninit" \
                         : [sw] "=m"(fsw), [x] "=m"(x) : [cw] "m"(cw), [a] "m"(a), [m] "m"(mem) : "memory"); \
        pr(#NAME, cw, a, b, fsw, &x, 0);                                                     \
        printf(" 0\n");                                                                      \
    }
MEMOP(fadds_m, "fadds %[m]", 0)
MEMOP(fmull_m, "fmull %[m]", 1)
MEMOP(fdivrs_m, "fdivrs %[m]", 0)
MEMOP(fiadds_m, "fiadds %[m]", 2)
MEMOP(fidivl_m, "fidivl %[m]", 3)
MEMOP(fcoms_m, "fcoms %[m]", 0)
MEMOP(fcompl_m, "fcompl %[m]", 1)
MEMOP(ficoms_m, "ficoms %[m]", 2)
MEMOP(filds_m, "filds %[m]", 2)
MEMOP(fildl_m, "fildl %[m]", 3)

/* Stack faults: only a is loaded, so ST(1) is empty (and with fldt a
 * pushed eight times, the stack is full for the overflow forms). */
#define EMPTY(NAME, INSN, FULL)                                                              \
    static void op_##NAME(void) {                                                            \
        f80 a = operand(0), b = {0, 0};                                                       \
        uint16_t cw = rand_cw(), fsw; static struct fx x;                                     \
        if (FULL)                                                                            \
            __asm__ volatile("fninit\n\tfldcw %[cw]\n\tfldt %[a]\n\tfldt %[a]\n\tfldt %[a]\n\tfldt %[a]\n\t" \
                             "fldt %[a]\n\tfldt %[a]\n\tfldt %[a]\n\tfldt %[a]\n\tfnclex\n\t" INSN "\n\t" \
                             "fnstsw %[sw]\n\tfxsave %[x]\n\tfninit"                          \
                             : [sw] "=m"(fsw), [x] "=m"(x) : [cw] "m"(cw), [a] "m"(a) : "memory"); \
        else                                                                                 \
            __asm__ volatile("fninit\n\tfldcw %[cw]\n\tfldt %[a]\n\t" INSN "\n\tfnstsw %[sw]\n\tfxsave %[x]\n\tfninit" \
                             : [sw] "=m"(fsw), [x] "=m"(x) : [cw] "m"(cw), [a] "m"(a) : "memory"); \
        pr(#NAME, cw, a, b, fsw, &x, 0);                                                     \
        printf(" 0\n");                                                                      \
    }
EMPTY(e_fadd, "fadd %%st(1), %%st", 0)
EMPTY(e_faddp, "faddp %%st, %%st(1)", 0)
EMPTY(e_fxch, "fxch %%st(1)", 0)
EMPTY(e_fcom, "fcom %%st(1)", 0)
EMPTY(e_fxam, "fstp %%st(0)\n\tfxam", 0)
EMPTY(e_fld, "fld %%st(1)", 0)
EMPTY(e_fsincos, "fincstp\n\tfsincos", 0)
EMPTY(o_fld1, "fld1", 1)
EMPTY(o_fsincos, "fsincos", 1)
EMPTY(o_fxtract, "fxtract", 1)

/* FBLD of arbitrary bytes (digits above 9 included) and FISTTP/FIST of
 * other widths. */
static void op_fbld(void) {
    f80 a, b = {0, 0};
    uint8_t m[10];
    for (int i = 0; i < 10; i++) m[i] = (uint8_t)rnd();
    if (rnd() % 2) for (int i = 0; i < 9; i++) m[i] = (uint8_t)((rnd() % 10) | (rnd() % 10) << 4);
    memcpy(&a, m, 10);
    uint16_t cw = rand_cw(), fsw; static struct fx x;
    __asm__ volatile("fninit\n\tfldcw %[cw]\n\tfbld %[m]\n\tfnstsw %[sw]\n\tfxsave %[x]\n\tfninit"
                     : [sw] "=m"(fsw), [x] "=m"(x) : [cw] "m"(cw), [m] "m"(m) : "memory");
    pr("fbld", cw, a, b, fsw, &x, 0);
    printf(" 0\n");
}
RUN(fisttps, "fisttps %[m]", 0)
RUN(fisttpll, "fisttpll %[m]", 0)
RUN(fistl, "fistl %[m]", 0)
RUN(fstpt, "fstpt %[m]", 0)
RUN(fcmovb, "pushq $1\n\tpopfq\n\tfcmovb %%st(1), %%st", 0)
RUN(ffree_fincstp, "ffree %%st(1)\n\tfincstp", 0)

typedef void (*fn)(void);
static const fn all[] = {op_fadd, op_fsub, op_fsubr, op_fmul, op_fdiv, op_fdivr, op_faddp, op_fsqrt, op_frndint, op_fscale, op_fxtract, op_fprem, op_fprem1, op_fabs, op_fchs, op_fxch, op_fcom, op_fucom, op_fcompp, op_ftst, op_fxam, op_fcomi, op_fucomip, op_fsts, op_fstl, op_fistps, op_fistpl, op_fistpll, op_fisttpl, op_fbstp, op_fsin, op_fcos, op_fsincos, op_fptan, op_fpatan, op_f2xm1, op_fyl2x, op_fyl2xp1, op_flds, op_fldl, op_fldpi, op_fldl2e, op_fldl2t, op_fldlg2, op_fldln2, op_fadds_m, op_fmull_m, op_fdivrs_m, op_fiadds_m, op_fidivl_m, op_fcoms_m, op_fcompl_m, op_ficoms_m, op_filds_m, op_fildl_m, op_e_fadd, op_e_faddp, op_e_fxch, op_e_fcom, op_e_fxam, op_e_fld, op_e_fsincos, op_o_fld1, op_o_fsincos, op_o_fxtract, op_fisttps, op_fisttpll, op_fistl, op_fstpt, op_fcmovb, op_ffree_fincstp, op_fbld};
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200;
    for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++)
        for (int k = 0; k < n; k++) all[i]();
    return 0;
}
