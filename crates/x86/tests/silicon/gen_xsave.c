/* Silicon images of the x87/SSE save instructions, for exitlab-x86's
 * xsave module: a known state (x87 stack with three values, control word
 * 0x027f, a pending PE, MXCSR 0x1fa0, XMMi = i repeated in every byte) is
 * saved by FXSAVE, FXSAVE64, XSAVE, XSAVE64, XSAVEC, XSAVEOPT (masks 3, 1
 * and 2), FNSTENV and FNSAVE into buffers prefilled with 0x5a, so the
 * images also show which bytes each instruction leaves alone; the tags_
 * images save a stack holding a value of every tag kind. One line per
 * image: "<name> <hex bytes>".
 *   gcc -O1 -mxsave -mxsavec -mxsaveopt -o gen_xsave gen_xsave.c && ./gen_xsave > xsave.txt
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static uint8_t buf[1024] __attribute__((aligned(64)));

static void setup(void) {
    static const uint16_t cw = 0x027f;
    static const uint32_t mx = 0x1fa0;
    static uint8_t x[16][16];
    for (int i = 0; i < 16; i++) memset(x[i], i * 0x11, 16);
    __asm__ volatile("fninit\n\tfldcw %0\n\tfld1\n\tfldpi\n\tfldl2e\n\tfdiv %%st(1), %%st\n\tldmxcsr %1\n\t"
                     "movdqu 0(%2), %%xmm0\n\tmovdqu 16(%2), %%xmm1\n\tmovdqu 32(%2), %%xmm2\n\tmovdqu 48(%2), %%xmm3\n\t"
                     "movdqu 64(%2), %%xmm4\n\tmovdqu 80(%2), %%xmm5\n\tmovdqu 96(%2), %%xmm6\n\tmovdqu 112(%2), %%xmm7\n\t"
                     "movdqu 128(%2), %%xmm8\n\tmovdqu 144(%2), %%xmm9\n\tmovdqu 160(%2), %%xmm10\n\tmovdqu 176(%2), %%xmm11\n\t"
                     "movdqu 192(%2), %%xmm12\n\tmovdqu 208(%2), %%xmm13\n\tmovdqu 224(%2), %%xmm14\n\tmovdqu 240(%2), %%xmm15"
                     :: "m"(cw), "m"(mx), "r"(x) : "memory");
}

/* A second x87 state whose tags are all kinds: empty R0-R2, then (from
 * ST(0) down) infinity, a denormal, a NaN, 1.0, 0.0. */
static void setup_tags(void) {
    static const uint8_t inf[10] = {0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x7f};
    static const uint8_t den[10] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t nan[10] = {0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff};
    __asm__ volatile("fninit\n\tfldz\n\tfld1\n\tfldt %0\n\tfldt %1\n\tfldt %2" :: "m"(nan), "m"(den), "m"(inf) : "memory");
}

static void dump(const char *name, int n) {
    printf("%s ", name);
    for (int i = 0; i < n; i++) printf("%02x", buf[i]);
    printf("\n");
}

#define SAVE(NAME, INSN, MASK, N)                                                       \
    memset(buf, 0x5a, sizeof buf);                                                      \
    setup();                                                                            \
    __asm__ volatile(INSN " %0" : "+m"(buf) : "a"(MASK), "d"(0) : "memory");           \
    dump(NAME, N);

int main(void) {
    SAVE("fxsave", "fxsave", 0, 512)
    SAVE("fxsave64", "fxsave64", 0, 512)
    SAVE("xsave_3", "xsave", 3, 640)
    SAVE("xsave64_3", "xsave64", 3, 640)
    SAVE("xsave_1", "xsave", 1, 640)
    SAVE("xsave_2", "xsave", 2, 640)
    SAVE("xsavec_3", "xsavec", 3, 640)
    SAVE("xsavec_2", "xsavec", 2, 640)
    SAVE("xsaveopt_3", "xsaveopt", 3, 640)
    SAVE("fnstenv", "fnstenv", 0, 28)
    SAVE("fnsave", "fnsave", 0, 108)
#define SAVE_TAGS(NAME, INSN, N)                                                        \
    memset(buf, 0x5a, sizeof buf);                                                      \
    setup_tags();                                                                       \
    __asm__ volatile(INSN " %0" : "+m"(buf) : "a"(3), "d"(0) : "memory");              \
    dump(NAME, N);
    SAVE_TAGS("tags_fxsave64", "fxsave64", 512)
    SAVE_TAGS("tags_fnstenv", "fnstenv", 28)
    SAVE_TAGS("tags_fnsave", "fnsave", 108)
    __asm__ volatile("fninit");
    return 0;
}
