/* Silicon vectors for exitlab-x86's SSE4.2 string instructions and CRC32:
 *
 *   pcmpestr <imm8> <a> <b> <eax> <edx> <ecx of PCMPESTRI> <xmm0 of PCMPESTRM> <rflags after PCMPESTRI>
 *   pcmpistr <imm8> <a> <b> 0 0 <ecx> <xmm0> <rflags>
 *   crc32 <bytes> <crc> <data> <result>
 *
 * every imm8 0x00-0x7f, strings drawn from a small alphabet so that matches,
 * ranges and embedded zeros are common.
 *   gcc -O1 -msse4.2 -o gen_str gen_str.c && ./gen_str > str.txt
 */
#include <nmmintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef unsigned __int128 u128;
static uint64_t rng = 0x853c49e6748fea9bull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static __m128i str(void) {
    static const uint8_t alpha[] = {0, 'a', 'b', 'c', 'z', 0x80, 0xff, 0x41, 0x7f, 1};
    uint8_t b[16];
    int len = rnd() % 20;
    for (int i = 0; i < 16; i++) b[i] = i < len ? alpha[1 + rnd() % 9] : (rnd() % 4 ? 0 : alpha[rnd() % 10]);
    __m128i v; memcpy(&v, b, 16); return v;
}
static void hex(__m128i v) { u128 x; memcpy(&x, &v, 16); printf(" %016llx%016llx", (unsigned long long)(x >> 64), (unsigned long long)x); }

#define ONE(IMM)                                                                         \
    case IMM: {                                                                          \
        int ecx; uint64_t fl;                                                            \
        __asm__("pcmpestri %[i], %[b], %[a]\n\tpushfq\n\tpopq %[f]"                      \
                : "=c"(ecx), [f] "=r"(fl) : [a] "x"(a), [b] "x"(b), "a"(la), "d"(lb), [i] "i"(IMM) : "cc"); \
        __m128i m = _mm_cmpestrm(a, la, b, lb, IMM);                                    \
        printf("pcmpestr %02x", IMM); hex(a); hex(b);                                    \
        printf(" %d %d %d", la, lb, ecx); hex(m); printf(" %llx\n", (unsigned long long)(fl & 0x8d5)); \
        __asm__("pcmpistri %[i], %[b], %[a]\n\tpushfq\n\tpopq %[f]"                      \
                : "=c"(ecx), [f] "=r"(fl) : [a] "x"(a), [b] "x"(b), [i] "i"(IMM) : "cc"); \
        m = _mm_cmpistrm(a, b, IMM);                                                    \
        printf("pcmpistr %02x", IMM); hex(a); hex(b);                                    \
        printf(" 0 0 %d", ecx); hex(m); printf(" %llx\n", (unsigned long long)(fl & 0x8d5)); \
        break; }
#define R8(b) ONE(b+0) ONE(b+1) ONE(b+2) ONE(b+3) ONE(b+4) ONE(b+5) ONE(b+6) ONE(b+7)
#define R64(b) R8(b) R8(b+8) R8(b+16) R8(b+24) R8(b+32) R8(b+40) R8(b+48) R8(b+56)

int main(void) {
    for (int imm = 0; imm < 128; imm++)
        for (int n = 0; n < 6; n++) {
            __m128i a = str(), b = str();
            int la = (int)(rnd() % 41) - 20, lb = (int)(rnd() % 41) - 20;
            switch (imm) { R64(0) R64(64) }
        }
    for (int n = 0; n < 200; n++) {
        uint32_t crc = (uint32_t)rnd(); uint64_t d = rnd(); int bytes = 1 << (n % 4);
        uint64_t r = bytes == 1 ? _mm_crc32_u8(crc, (uint8_t)d) : bytes == 2 ? _mm_crc32_u16(crc, (uint16_t)d)
                   : bytes == 4 ? _mm_crc32_u32(crc, (uint32_t)d) : _mm_crc32_u64(crc, d);
        printf("crc32 %d %08x %016llx %08llx\n", bytes, crc, (unsigned long long)d, (unsigned long long)r);
    }
    return 0;
}
