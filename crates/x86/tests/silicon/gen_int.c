/* Silicon vectors for exitlab-x86's packed-integer semantics (SSE2,
 * SSSE3, SSE4.1, SSE4.2 and their MMX forms): one line per case,
 *
 *   <op> <a> <b> <c> <result>
 *
 * (hex, 128 bits each; c is XMM0 for the BLENDV forms). Operands mix
 * random bits with lane-boundary values (0, -1, 0x80.., 0x7f..).
 *   gcc -O1 -msse4.2 -mpopcnt -o gen_int gen_int.c && ./gen_int > int.txt
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef unsigned __int128 u128;
static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static u128 operand(void) {
    static const uint8_t edge[] = {0x00, 0xff, 0x80, 0x7f, 0x01, 0xfe};
    uint8_t b[16];
    uint64_t mode = rnd() % 4;
    for (int i = 0; i < 16; i++) b[i] = mode == 0 ? edge[rnd() % 6] : (uint8_t)rnd();
    if (mode == 1) for (int i = 0; i < 16; i += 2) if (rnd() % 3 == 0) { b[i] = edge[rnd() % 6]; b[i + 1] = edge[rnd() % 6]; }
    u128 v; memcpy(&v, b, 16); return v;
}
static __m128i X(u128 v) { __m128i r; memcpy(&r, &v, 16); return r; }
static u128 U(__m128i v) { u128 r; memcpy(&r, &v, 16); return r; }
static void out(const char *op, u128 a, u128 b, u128 c, u128 r) {
    u128 v[4] = {a, b, c, r};
    printf("%s", op);
    for (int i = 0; i < 4; i++) printf(" %016llx%016llx", (unsigned long long)(v[i] >> 64), (unsigned long long)v[i]);
    printf("\n");
}
#define N 40
#define OP2(name, expr) for (int n = 0; n < N; n++) { u128 a = operand(), b = operand(); __m128i x = X(a), y = X(b); (void)y; out(name, a, b, 0, U(expr)); }
#define OP3(name, expr) for (int n = 0; n < N; n++) { u128 a = operand(), b = operand(), c = operand(); __m128i x = X(a), y = X(b), z = X(c); out(name, a, b, c, U(expr)); }
#define SHIFT(name, fn, max) for (int n = 0; n < N; n++) { u128 a = operand(), b = rnd() % (max); __m128i x = X(a); out(name, a, b, 0, U(fn(x, _mm_cvtsi64_si128((long long)(uint64_t)b)))); }
#define MMX2(name, expr) for (int n = 0; n < N; n++) { u128 a = (uint64_t)operand(), b = (uint64_t)operand(); __m64 x = (__m64)(uint64_t)a, y = (__m64)(uint64_t)b; __m64 r = expr; _mm_empty(); out(name, a, b, 0, (uint64_t)r); }

int main(void) {
    OP2("paddb", _mm_add_epi8(x, y)) OP2("paddw", _mm_add_epi16(x, y)) OP2("paddd", _mm_add_epi32(x, y)) OP2("paddq", _mm_add_epi64(x, y))
    OP2("psubb", _mm_sub_epi8(x, y)) OP2("psubq", _mm_sub_epi64(x, y))
    OP2("paddsb", _mm_adds_epi8(x, y)) OP2("paddsw", _mm_adds_epi16(x, y)) OP2("paddusb", _mm_adds_epu8(x, y)) OP2("paddusw", _mm_adds_epu16(x, y))
    OP2("psubsb", _mm_subs_epi8(x, y)) OP2("psubsw", _mm_subs_epi16(x, y)) OP2("psubusb", _mm_subs_epu8(x, y)) OP2("psubusw", _mm_subs_epu16(x, y))
    OP2("pmullw", _mm_mullo_epi16(x, y)) OP2("pmulhw", _mm_mulhi_epi16(x, y)) OP2("pmulhuw", _mm_mulhi_epu16(x, y))
    OP2("pmulld", _mm_mullo_epi32(x, y)) OP2("pmuludq", _mm_mul_epu32(x, y)) OP2("pmuldq", _mm_mul_epi32(x, y))
    OP2("pmaddwd", _mm_madd_epi16(x, y)) OP2("pmaddubsw", _mm_maddubs_epi16(x, y)) OP2("pmulhrsw", _mm_mulhrs_epi16(x, y))
    OP2("pavgb", _mm_avg_epu8(x, y)) OP2("pavgw", _mm_avg_epu16(x, y))
    OP2("pminub", _mm_min_epu8(x, y)) OP2("pminsw", _mm_min_epi16(x, y)) OP2("pminsb", _mm_min_epi8(x, y)) OP2("pminuw", _mm_min_epu16(x, y)) OP2("pminsd", _mm_min_epi32(x, y)) OP2("pminud", _mm_min_epu32(x, y))
    OP2("pmaxub", _mm_max_epu8(x, y)) OP2("pmaxsw", _mm_max_epi16(x, y)) OP2("pmaxsb", _mm_max_epi8(x, y)) OP2("pmaxuw", _mm_max_epu16(x, y)) OP2("pmaxsd", _mm_max_epi32(x, y)) OP2("pmaxud", _mm_max_epu32(x, y))
    OP2("psadbw", _mm_sad_epu8(x, y))
    OP2("pcmpeqb", _mm_cmpeq_epi8(x, y)) OP2("pcmpeqw", _mm_cmpeq_epi16(x, y)) OP2("pcmpeqd", _mm_cmpeq_epi32(x, y)) OP2("pcmpeqq", _mm_cmpeq_epi64(x, y))
    OP2("pcmpgtb", _mm_cmpgt_epi8(x, y)) OP2("pcmpgtw", _mm_cmpgt_epi16(x, y)) OP2("pcmpgtd", _mm_cmpgt_epi32(x, y)) OP2("pcmpgtq", _mm_cmpgt_epi64(x, y))
    SHIFT("psllw", _mm_sll_epi16, 20) SHIFT("pslld", _mm_sll_epi32, 40)
    SHIFT("psllq", _mm_sll_epi64, 70) SHIFT("psrlw", _mm_srl_epi16, 20)
    SHIFT("psrld", _mm_srl_epi32, 40) SHIFT("psrlq", _mm_srl_epi64, 70)
    SHIFT("psraw", _mm_sra_epi16, 20) SHIFT("psrad", _mm_sra_epi32, 40)
    SHIFT("psrad_big", _mm_sra_epi32, UINT64_MAX)
    OP2("pslldq5", _mm_slli_si128(x, 5)) OP2("psrldq11", _mm_srli_si128(x, 11))
    OP2("packsswb", _mm_packs_epi16(x, y)) OP2("packssdw", _mm_packs_epi32(x, y)) OP2("packuswb", _mm_packus_epi16(x, y)) OP2("packusdw", _mm_packus_epi32(x, y))
    OP2("punpcklbw", _mm_unpacklo_epi8(x, y)) OP2("punpckhbw", _mm_unpackhi_epi8(x, y)) OP2("punpcklwd", _mm_unpacklo_epi16(x, y)) OP2("punpckhwd", _mm_unpackhi_epi16(x, y))
    OP2("punpckldq", _mm_unpacklo_epi32(x, y)) OP2("punpckhdq", _mm_unpackhi_epi32(x, y)) OP2("punpcklqdq", _mm_unpacklo_epi64(x, y)) OP2("punpckhqdq", _mm_unpackhi_epi64(x, y))
    OP2("pshufd1b", _mm_shuffle_epi32(x, 0x1b)) OP2("pshufde4", _mm_shuffle_epi32(x, 0xe4)) OP2("pshuflw93", _mm_shufflelo_epi16(x, 0x93)) OP2("pshufhw39", _mm_shufflehi_epi16(x, 0x39))
    OP2("shufps4e", _mm_castps_si128(_mm_shuffle_ps(_mm_castsi128_ps(x), _mm_castsi128_ps(y), 0x4e)))
    OP2("shufpd2", _mm_castpd_si128(_mm_shuffle_pd(_mm_castsi128_pd(x), _mm_castsi128_pd(y), 2)))
    OP2("pshufb", _mm_shuffle_epi8(x, y)) OP2("palignr3", _mm_alignr_epi8(x, y, 3)) OP2("palignr17", _mm_alignr_epi8(x, y, 17))
    OP2("phaddw", _mm_hadd_epi16(x, y)) OP2("phaddd", _mm_hadd_epi32(x, y)) OP2("phaddsw", _mm_hadds_epi16(x, y))
    OP2("phsubw", _mm_hsub_epi16(x, y)) OP2("phsubd", _mm_hsub_epi32(x, y)) OP2("phsubsw", _mm_hsubs_epi16(x, y))
    OP2("psignb", _mm_sign_epi8(x, y)) OP2("psignw", _mm_sign_epi16(x, y)) OP2("psignd", _mm_sign_epi32(x, y))
    OP2("pabsb", _mm_abs_epi8(y)) OP2("pabsw", _mm_abs_epi16(y)) OP2("pabsd", _mm_abs_epi32(y))
    OP2("pmovmskb", _mm_cvtsi32_si128(_mm_movemask_epi8(x)))
    OP2("pextrb13", _mm_cvtsi32_si128(_mm_extract_epi8(x, 13))) OP2("pextrw6", _mm_cvtsi32_si128(_mm_extract_epi16(x, 6)))
    OP2("pextrd2", _mm_cvtsi32_si128(_mm_extract_epi32(x, 2))) OP2("pextrq1", _mm_cvtsi64_si128(_mm_extract_epi64(x, 1)))
    OP2("pinsrb9", _mm_insert_epi8(x, (int)(uint64_t)b, 9)) OP2("pinsrw3", _mm_insert_epi16(x, (int)(uint64_t)b, 3))
    OP2("pinsrd3", _mm_insert_epi32(x, (int)(uint64_t)b, 3)) OP2("pinsrq0", _mm_insert_epi64(x, (long long)(uint64_t)b, 0))
    OP2("insertps9a", _mm_castps_si128(_mm_insert_ps(_mm_castsi128_ps(x), _mm_castsi128_ps(y), 0x9a)))
    OP2("insertpsc1", _mm_castps_si128(_mm_insert_ps(_mm_castsi128_ps(x), _mm_castsi128_ps(y), 0xc1)))
    OP2("extractps3", _mm_cvtsi32_si128(_mm_extract_ps(_mm_castsi128_ps(x), 3)))
    OP2("blendps5", _mm_castps_si128(_mm_blend_ps(_mm_castsi128_ps(x), _mm_castsi128_ps(y), 5)))
    OP2("blendpd2", _mm_castpd_si128(_mm_blend_pd(_mm_castsi128_pd(x), _mm_castsi128_pd(y), 2)))
    OP2("pblendwa5", _mm_blend_epi16(x, y, 0xa5))
    OP3("blendvps", _mm_castps_si128(_mm_blendv_ps(_mm_castsi128_ps(x), _mm_castsi128_ps(y), _mm_castsi128_ps(z))))
    OP3("blendvpd", _mm_castpd_si128(_mm_blendv_pd(_mm_castsi128_pd(x), _mm_castsi128_pd(y), _mm_castsi128_pd(z))))
    OP3("pblendvb", _mm_blendv_epi8(x, y, z))
    OP2("pmovsxbw", _mm_cvtepi8_epi16(y)) OP2("pmovsxbd", _mm_cvtepi8_epi32(y)) OP2("pmovsxbq", _mm_cvtepi8_epi64(y))
    OP2("pmovsxwd", _mm_cvtepi16_epi32(y)) OP2("pmovsxwq", _mm_cvtepi16_epi64(y)) OP2("pmovsxdq", _mm_cvtepi32_epi64(y))
    OP2("pmovzxbw", _mm_cvtepu8_epi16(y)) OP2("pmovzxbd", _mm_cvtepu8_epi32(y)) OP2("pmovzxbq", _mm_cvtepu8_epi64(y))
    OP2("pmovzxwd", _mm_cvtepu16_epi32(y)) OP2("pmovzxwq", _mm_cvtepu16_epi64(y)) OP2("pmovzxdq", _mm_cvtepu32_epi64(y))
    OP2("phminposuw", _mm_minpos_epu16(y))
    OP2("mpsadbw0", _mm_mpsadbw_epu8(x, y, 0)) OP2("mpsadbw7", _mm_mpsadbw_epu8(x, y, 7)) OP2("mpsadbw6", _mm_mpsadbw_epu8(x, y, 6))
    OP2("ptest", _mm_cvtsi32_si128(_mm_testz_si128(x, y) | _mm_testc_si128(x, y) << 1))
    OP2("movddup", _mm_castpd_si128(_mm_movedup_pd(_mm_castsi128_pd(y))))
    OP2("movshdup", _mm_castps_si128(_mm_movehdup_ps(_mm_castsi128_ps(y)))) OP2("movsldup", _mm_castps_si128(_mm_moveldup_ps(_mm_castsi128_ps(y))))
    OP2("movhlps", _mm_castps_si128(_mm_movehl_ps(_mm_castsi128_ps(x), _mm_castsi128_ps(y)))) OP2("movlhps", _mm_castps_si128(_mm_movelh_ps(_mm_castsi128_ps(x), _mm_castsi128_ps(y))))
    OP2("movmskps", _mm_cvtsi32_si128(_mm_movemask_ps(_mm_castsi128_ps(x)))) OP2("movmskpd", _mm_cvtsi32_si128(_mm_movemask_pd(_mm_castsi128_pd(x))))
    MMX2("mmx_paddsw", _mm_adds_pi16(x, y)) MMX2("mmx_pmaddwd", _mm_madd_pi16(x, y)) MMX2("mmx_pshufb", _mm_shuffle_pi8(x, y))
    MMX2("mmx_palignr5", _mm_alignr_pi8(x, y, 5)) MMX2("mmx_phaddsw", _mm_hadds_pi16(x, y)) MMX2("mmx_packuswb", _mm_packs_pu16(x, y))
    MMX2("mmx_punpckhbw", _mm_unpackhi_pi8(x, y)) MMX2("mmx_pshufw72", _mm_shuffle_pi16(x, 0x72)) MMX2("mmx_psadbw", _mm_sad_pu8(x, y))
    MMX2("mmx_pmuludq", (__m64)_mm_mul_su32(x, y)) for (int n = 0; n < N; n++) { u128 a = (uint64_t)operand(), b = rnd() % 70; __m64 r = _mm_srl_si64((__m64)(uint64_t)a, (__m64)(uint64_t)b); _mm_empty(); out("mmx_psrlq", a, b, 0, (uint64_t)r); }
    return 0;
}
