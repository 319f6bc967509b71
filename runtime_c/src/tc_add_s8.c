/* ADD, int8, broadcasting up to 4-D (see tc_kernels.h).
 * x86 hosts with AVX2 (run-time check), no broadcast: eight elements at a time, the three
 * multiplies by quantized multipliers in tc_requant_avx2.h's lanes (bit for bit the scalar
 * arithmetic; multipliers in [0, 2^31) as documented). */
#include "tc_kernels.h"
#include "tc_requant_avx2.h"

#ifdef TC_HOST_X86_SIMD
/* returns the elements done (a multiple of 8); out may be in1 or in2 (in place) */
__attribute__((target("avx2"))) static int32_t add_avx2(const tc_add_params *p, const int8_t *in1,
                                                       const int8_t *in2, int8_t *out, int32_t n)
{
    const int8_t s1 = (int8_t)p->input1_shift, s2 = (int8_t)p->input2_shift, so = (int8_t)p->output_shift;
    const __m256i off1 = _mm256_set1_epi32(p->input1_offset), off2 = _mm256_set1_epi32(p->input2_offset);
    const __m128i ls = _mm_cvtsi32_si128(p->left_shift);
    tc_rq8 r1, r2, ro;
    int32_t i;
    tc_rq8_prepare(&r1, &p->input1_multiplier, &s1, 0);
    tc_rq8_prepare(&r2, &p->input2_multiplier, &s2, 0);
    tc_rq8_prepare(&ro, &p->output_multiplier, &so, 0);
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256i a = _mm256_sll_epi32(
            _mm256_add_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(in1 + i))), off1), ls);
        const __m256i b = _mm256_sll_epi32(
            _mm256_add_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(in2 + i))), off2), ls);
        const __m256i sa = tc_rq8_apply(&r1, a, 0, INT32_MIN, INT32_MAX);
        const __m256i sb = tc_rq8_apply(&r2, b, 0, INT32_MIN, INT32_MAX);
        tc_rq8_store8(tc_rq8_apply(&ro, _mm256_add_epi32(sa, sb), p->output_offset, p->act_min, p->act_max),
                      out + i);
    }
    return i;
}
#endif

static int8_t tc_add_one(const tc_add_params *p, int32_t x1, int32_t x2)
{
    const int32_t a = (int32_t)((uint32_t)(x1 + p->input1_offset) << p->left_shift);
    const int32_t b = (int32_t)((uint32_t)(x2 + p->input2_offset) << p->left_shift);
    const int32_t sa = tc_mul_by_quant_mult(a, p->input1_multiplier, p->input1_shift);
    const int32_t sb = tc_mul_by_quant_mult(b, p->input2_multiplier, p->input2_shift);
    return tc_requantize(sa + sb, p->output_multiplier, p->output_shift, p->output_offset,
                         p->act_min, p->act_max);
}

void tc_add_s8(const tc_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
    const int32_t d[4] = {p->d0, p->d1, p->d2, p->d3};
    tc_bcast_rows r;
    int32_t i3;
    if ((p->a_bcast | p->b_bcast) == 0) {
        const int32_t n = p->d0 * p->d1 * p->d2 * p->d3;
        int32_t i = 0;
#ifdef TC_HOST_X86_SIMD
        if (n >= 8 && p->left_shift >= 0 && p->left_shift < 32 && __builtin_cpu_supports("avx2")) {
            i = add_avx2(p, in1, in2, out, n);
        }
#endif
        for (; i < n; ++i) {
            out[i] = tc_add_one(p, in1[i], in2[i]);
        }
        return;
    }
    tc_bcast_rows_init(&r, d, p->a_bcast, p->b_bcast, in1, in2);
    while (tc_bcast_rows_next(&r)) {
        for (i3 = 0; i3 < d[3]; ++i3) {
            *out++ = tc_add_one(p, r.a[i3 * r.as[3]], r.b[i3 * r.bs[3]]);
        }
    }
}
