/*
 * tc_fully_connected_packed: FULLY_CONNECTED on packed cluster indices.
 *
 * Each weight is used once per batch row, so decoding cannot be amortized over positions; the
 * kernel decodes as it multiplies. Rows are taken in passes of up to TC_FC_ROWS output
 * channels that share a codebook, so that one load (and, on DSP cores, one widening) of the
 * input serves several rows. Per family (tc_arch.h), inside this file:
 *  - pair tables (widths 1..4, the layer's codebook, built at run time into caller scratch):
 *    a field of 2*bits stream bits (two consecutive indices) selects one word holding both
 *    weights as int16 lanes. Cortex-M4/M7/M33 (TC_ARCH_ARM_DSP) feed that word to SMLAD
 *    against the input pair (two MACs per instruction); Cortex-M0/M0+ (TC_ARCH_ARMV6M) split
 *    it with SXTH/ASR for two MULS; portable C does the same in plain C.
 *  - raw int8 weights (codebooks == NULL): SXTB16 + SMLAD on DSP cores, as CMSIS-NN does.
 *  - everything else (5..8-bit codebooks, per-channel codebooks on short rows): a codebook
 *    lookup per weight, indices cut from whole groups of 8 (`bits` bytes) without a bit cursor.
 *  - x86 hosts (TC_HOST_X86_SIMD): 4-bit rows decoded with pshufb and dotted with the input
 *    widened once per batch row; other widths decode chunks to int16 (vectorized dot).
 * The input offset is folded out of the inner loop: sum(w*(x+io)) = sum(w*x) + io*sum(w); the
 * generated code passes input_offset 0 and folds io*sum(w) into the bias at compile time
 * (ops/fully_connected.py), so sum(w) is only computed (second pass) when io != 0.
 * Semantics: TFLite Micro reference_integer_ops FullyConnected / FullyConnectedPerChannel.
 */
#include <string.h>

#include "tc_packed_internal.h"

#define TC_FC_CHUNK 128
#define TC_FC_ROWS 4 /* output channels per pass */
#define TC_FC_PAIR_MAX_BITS 4 /* pair tables for widths 1..4 */

/* ---------------------------------------------------------------------------------------
 * Pair tables and scratch
 */

/* Entries of the pair table this layer uses (0: none). One table per codebook: per-tensor
 * layers build it once per call (worth it from 4 weights per entry), per-channel and shared
 * layers whenever the codebook changes (worth it on rows of >= 2 weights per entry). */
static int32_t fc_pair_entries(const tc_fc_packed_params *p)
{
    const int32_t bits = p->bits;
    int32_t e;
    if (bits < 1 || bits > TC_FC_PAIR_MAX_BITS) {
        return 0;
    }
    e = (int32_t)1 << (2 * bits);
    if (p->codebook_stride == 0) {
        return (int32_t)p->in_features * p->out_features >= 4 * e ? e : 0;
    }
    return (int32_t)p->in_features >= 2 * e ? e : 0;
}

/* int16 input pairs kept for per-channel / shared codebooks (rows taken one at a time) */
static int32_t fc_widened_words(const tc_fc_packed_params *p)
{
    return p->codebook_stride != 0 ? ((int32_t)p->in_features + 3) / 4 * 2 : 0;
}

int32_t tc_fully_connected_packed_get_buffer_size(const tc_fc_packed_params *p)
{
    const int32_t e = fc_pair_entries(p);
    return e != 0 ? 4 * (e + fc_widened_words(p)) + 3 : 0;
}

/* xw[j] = x[2j] (low int16 lane) | x[2j+1] (high lane), zero past n; words = ceil4(n) / 2 */
static void fc_widen_pairs(const int8_t *restrict x, int32_t n, int32_t words, uint32_t *restrict xw)
{
    int32_t j;
    for (j = 0; j < words; j++) {
        const int32_t i = 2 * j;
        const int32_t x0 = i < n ? x[i] : 0, x1 = i + 1 < n ? x[i + 1] : 0;
        xw[j] = (uint32_t)(uint16_t)(int16_t)x0 | (uint32_t)x1 << 16;
    }
}

/* tab[lo | hi << bits] = cb[lo] (low int16 lane) | cb[hi] (high lane); entries >= k are 0.
 * Four low lanes stay in registers while the high lane runs over the codebook (per-channel
 * layers rebuild the table for every row: ~2 instructions per entry on Cortex-M4). */
TC_NOINLINE static void fc_build_pairs(uint32_t *restrict tab, const int8_t *restrict cb,
                                       uint32_t bits, int32_t k)
{
    const int32_t n = (int32_t)1 << bits;
    uint32_t c16[16];
    int32_t hi, lo;
    for (lo = 0; lo < n; lo++) {
        c16[lo] = lo < k ? (uint32_t)(uint16_t)(int16_t)cb[lo] : 0u;
    }
    if (n < 4) { /* 1 bit */
        for (hi = 0; hi < n; hi++) {
            for (lo = 0; lo < n; lo++) {
                tab[lo | hi << bits] = c16[lo] | c16[hi] << 16;
            }
        }
        return;
    }
    for (lo = 0; lo < n; lo += 4) {
        const uint32_t l0 = c16[lo], l1 = c16[lo + 1], l2 = c16[lo + 2], l3 = c16[lo + 3];
        uint32_t *t = tab + lo;
        for (hi = 0; hi < n; hi++) {
            const uint32_t h = c16[hi] << 16;
            t[0] = h | l0;
            t[1] = h | l1;
            t[2] = h | l2;
            t[3] = h | l3;
            t += n;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Row kernels. Each computes acc[r] = sum over weights [0, 8*groups) of row r (r < nr, rows
 * `rb` bytes apart from q, each starting on a byte boundary) of w * x. A group of 8 indices
 * is `bits` whole bytes; the kernels read exactly the bytes of their groups.
 */

/* pair field j (0..3: indices 2j, 2j+1) of the group at q, table widths 1..4 */
TC_INLINE uint32_t fc_field(const uint8_t *q, uint32_t bits, uint32_t j)
{
    if (bits == 4) {
        return q[j];
    }
    if (bits == 3) { /* 6-bit fields at bits 0, 6, 12, 18 of q[0..2] */
        const uint32_t s = 6u * j, b = s >> 3, o = s & 7u;
        uint32_t v = q[b];
        if (o > 2u) {
            v |= (uint32_t)q[b + 1] << 8;
        }
        return (v >> o) & 63u;
    }
    if (bits == 2) {
        return ((uint32_t)q[j >> 1] >> (4u * (j & 1u))) & 15u;
    }
    return ((uint32_t)q[0] >> (2u * j)) & 3u;
}

/* The 8 indices of a group: bytes 0..3 in lo, bytes 4..bits-1 in hi (exactly `bits` bytes
 * read); index j is bits [bits*j, bits*j + bits) of hi:lo. */
TC_INLINE uint32_t fc_index(uint32_t lo, uint32_t hi, uint32_t bits, uint32_t j)
{
    const uint32_t s = bits * j, m = (1u << bits) - 1u;
    if (s + bits <= 32u) {
        return (lo >> s) & m;
    }
    if (s >= 32u) {
        return (hi >> (s - 32u)) & m;
    }
    return ((lo >> s) | (hi << (32u - s))) & m;
}

#if defined(TC_ARCH_ARM_DSP)
/* ---- Cortex-M4/M7/M33 (ARMv7E-M / ARMv8-M Mainline with DSP) ----
 * Pair words into SMLAD. The input is widened on the fly (one LDR, two SXTB16 and two PKH per
 * 4 inputs, shared by the rows of a pass): x01 = (x0, x1), x23 = (x2, x3) as int16 lanes.
 * GCC has no ACLE intrinsic for SXTB16 with rotation or for PKH, so those are
 * one-instruction asm statements (as CMSIS-NN's cmsis_gcc.h does). Unaligned LDR/LDRH are
 * allowed on these cores. */
/* (x0, x1) and (x2, x3) of four int8 inputs */
#define TC_FC_XPAIRS(xp, x01, x23)                                                            \
    do {                                                                                      \
        const uint32_t xw_ = tc_ld32(xp);                                                     \
        const int32_t a_ = __sxtb16(xw_), b_ = tc_sxtb16_ror8(xw_);                           \
        x01 = tc_pkhbt16(a_, b_);                                                             \
        x23 = tc_pkhtb16(b_, a_);                                                             \
    } while (0)

/* one row, inputs [4h, 4h+4) of the group at q */
#define TC_FC_PAIRS_ROW(acc, q, h)                                                            \
    do {                                                                                      \
        acc = __smlad((int32_t)tab[fc_field(q, bits, 2u * (h))], x01, acc);                   \
        acc = __smlad((int32_t)tab[fc_field(q, bits, 2u * (h) + 1u)], x23, acc);              \
    } while (0)

TC_INLINE void fc_pairs_rows(const uint8_t *q, int32_t rb, int32_t nr, uint32_t bits,
                             const uint32_t *tab, const int8_t *x, const uint32_t *xw,
                             int32_t groups, int32_t *acc)
{
    int32_t g, r;
    if (xw != NULL) { /* input pairs widened once per batch row (per-channel codebooks) */
        for (r = 0; r < nr; r++) {
            const uint8_t *qr = q + r * rb;
            const uint32_t *xr = xw;
            int32_t a = 0;
            for (g = 0; g < groups; g++) {
                int32_t x01 = (int32_t)xr[0], x23 = (int32_t)xr[1];
                TC_FC_PAIRS_ROW(a, qr, 0);
                x01 = (int32_t)xr[2];
                x23 = (int32_t)xr[3];
                TC_FC_PAIRS_ROW(a, qr, 1);
                qr += bits;
                xr += 4;
            }
            acc[r] = a;
        }
        return;
    }
    if (nr == TC_FC_ROWS) {
        const uint8_t *q1 = q + rb, *q2 = q1 + rb, *q3 = q2 + rb;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (g = 0; g < groups; g++) {
            int32_t x01, x23;
            TC_FC_XPAIRS(x, x01, x23);
            TC_FC_PAIRS_ROW(a0, q, 0);
            TC_FC_PAIRS_ROW(a1, q1, 0);
            TC_FC_PAIRS_ROW(a2, q2, 0);
            TC_FC_PAIRS_ROW(a3, q3, 0);
            TC_FC_XPAIRS(x + 4, x01, x23);
            TC_FC_PAIRS_ROW(a0, q, 1);
            TC_FC_PAIRS_ROW(a1, q1, 1);
            TC_FC_PAIRS_ROW(a2, q2, 1);
            TC_FC_PAIRS_ROW(a3, q3, 1);
            q += bits;
            q1 += bits;
            q2 += bits;
            q3 += bits;
            x += 8;
        }
        acc[0] = a0;
        acc[1] = a1;
        acc[2] = a2;
        acc[3] = a3;
        return;
    }
    for (r = 0; r < nr; r++) {
        const uint8_t *qr = q + r * rb;
        const int8_t *xr = x;
        int32_t a = 0;
        for (g = 0; g < groups; g++) {
            int32_t x01, x23;
            TC_FC_XPAIRS(xr, x01, x23);
            TC_FC_PAIRS_ROW(a, qr, 0);
            TC_FC_XPAIRS(xr + 4, x01, x23);
            TC_FC_PAIRS_ROW(a, qr, 1);
            qr += bits;
            xr += 8;
        }
        acc[r] = a;
    }
}

/* raw int8 weights: SXTB16 of 4 weights against SXTB16 of 4 inputs, (x0, x2) and (x1, x3) */
#define TC_FC_RAW_ROW(acc, qq)                                                                \
    do {                                                                                      \
        const uint32_t w_ = tc_ld32(qq);                                                      \
        acc = __smlad(__sxtb16(w_), xa, acc);                                                 \
        acc = __smlad(tc_sxtb16_ror8(w_), xb, acc);                                           \
    } while (0)

TC_INLINE void fc_raw_rows(const uint8_t *q, int32_t rb, int32_t nr, const int8_t *x,
                           int32_t groups, int32_t *acc)
{
    int32_t g, r, h;
    if (nr == TC_FC_ROWS) {
        const uint8_t *q1 = q + rb, *q2 = q1 + rb, *q3 = q2 + rb;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (g = 0; g < 2 * groups; g++) {
            const uint32_t xv = tc_ld32(x);
            const int32_t xa = __sxtb16(xv), xb = tc_sxtb16_ror8(xv);
            TC_FC_RAW_ROW(a0, q);
            TC_FC_RAW_ROW(a1, q1);
            TC_FC_RAW_ROW(a2, q2);
            TC_FC_RAW_ROW(a3, q3);
            q += 4;
            q1 += 4;
            q2 += 4;
            q3 += 4;
            x += 4;
        }
        acc[0] = a0;
        acc[1] = a1;
        acc[2] = a2;
        acc[3] = a3;
        return;
    }
    for (r = 0; r < nr; r++) {
        const uint8_t *qr = q + r * rb;
        const int8_t *xr = x;
        int32_t a = 0;
        for (g = 0; g < groups; g++) {
            for (h = 0; h < 2; h++) {
                const uint32_t xv = tc_ld32(xr);
                const int32_t xa = __sxtb16(xv), xb = tc_sxtb16_ror8(xv);
                TC_FC_RAW_ROW(a, qr);
                qr += 4;
                xr += 4;
            }
        }
        acc[r] = a;
    }
}

/* codebook lookups, one per weight, two rows per pass: SMLABB/SMLABT against the SXTB16
 * lanes (x0, x2) and (x1, x3) of the input (no PKH needed) */
TC_INLINE void fc_group_words(const uint8_t *q, uint32_t bits, uint32_t *lo, uint32_t *hi)
{
    if (bits >= 4) {
        *lo = tc_ld32(q);
        *hi = bits == 5 ? q[4] : bits == 6 ? tc_ld16(q + 4) : bits == 7 ? tc_ld16(q + 4) | (uint32_t)q[6] << 16
                                                                          : bits == 8 ? tc_ld32(q + 4) : 0u;
    } else {
        *lo = bits == 3 ? tc_ld16(q) | (uint32_t)q[2] << 16 : bits == 2 ? tc_ld16(q) : q[0];
        *hi = 0;
    }
}

#define TC_FC_LOOKUP4(acc, lo, hi, j0)                                                        \
    do {                                                                                      \
        acc = __smlabb(cb[fc_index(lo, hi, bits, (j0))], xa, acc);                            \
        acc = __smlabb(cb[fc_index(lo, hi, bits, (j0) + 1u)], xb, acc);                       \
        acc = __smlabt(cb[fc_index(lo, hi, bits, (j0) + 2u)], xa, acc);                       \
        acc = __smlabt(cb[fc_index(lo, hi, bits, (j0) + 3u)], xb, acc);                       \
    } while (0)

TC_INLINE void fc_lookup_rows(const uint8_t *q, int32_t rb, int32_t nr, uint32_t bits,
                              const int8_t *cb, const int8_t *x, int32_t groups, int32_t *acc)
{
    int32_t g, r;
    for (r = 0; r + 1 < nr; r += 2) {
        const uint8_t *qa = q + r * rb, *qb = qa + rb;
        const int8_t *xr = x;
        int32_t a0 = 0, a1 = 0;
        for (g = 0; g < groups; g++) {
            uint32_t lo, hi, xv = tc_ld32(xr);
            int32_t xa = __sxtb16(xv), xb = tc_sxtb16_ror8(xv);
            fc_group_words(qa, bits, &lo, &hi);
            TC_FC_LOOKUP4(a0, lo, hi, 0u);
            fc_group_words(qb, bits, &lo, &hi);
            TC_FC_LOOKUP4(a1, lo, hi, 0u);
            xv = tc_ld32(xr + 4);
            xa = __sxtb16(xv);
            xb = tc_sxtb16_ror8(xv);
            fc_group_words(qa, bits, &lo, &hi);
            TC_FC_LOOKUP4(a0, lo, hi, 4u);
            fc_group_words(qb, bits, &lo, &hi);
            TC_FC_LOOKUP4(a1, lo, hi, 4u);
            qa += bits;
            qb += bits;
            xr += 8;
        }
        acc[r] = a0;
        acc[r + 1] = a1;
    }
    if (r < nr) {
        const uint8_t *qa = q + r * rb;
        const int8_t *xr = x;
        int32_t a0 = 0;
        for (g = 0; g < groups; g++) {
            uint32_t lo, hi, xv = tc_ld32(xr);
            int32_t xa = __sxtb16(xv), xb = tc_sxtb16_ror8(xv);
            fc_group_words(qa, bits, &lo, &hi);
            TC_FC_LOOKUP4(a0, lo, hi, 0u);
            xv = tc_ld32(xr + 4);
            xa = __sxtb16(xv);
            xb = tc_sxtb16_ror8(xv);
            TC_FC_LOOKUP4(a0, lo, hi, 4u);
            qa += bits;
            xr += 8;
        }
        acc[r] = a0;
    }
}

#else /* !TC_ARCH_ARM_DSP */
/* ---- plain C (ARMv6-M, portable, x86 hosts for widths they do not vectorize) ----
 * Written for Thumb-1 (8 low registers, 1-cycle MULS, no unaligned or 64-bit loads): two rows
 * per pass, two inputs live at a time, accumulators that GCC may keep in high registers
 * (ADD Rd, Rm reaches them); a pair word is split with SXTH / ASR #16 for two MULS. */
#define TC_FC_PAIR_MAC(acc, t, x0, x1)                                                        \
    do {                                                                                      \
        const int32_t t_ = (int32_t)(t);                                                      \
        acc += (int32_t)(int16_t)t_ * (x0);                                                   \
        acc += (t_ >> 16) * (x1);                                                             \
    } while (0)

TC_INLINE void fc_pairs_rows(const uint8_t *q, int32_t rb, int32_t nr, uint32_t bits,
                             const uint32_t *tab, const int8_t *x, const uint32_t *xw,
                             int32_t groups, int32_t *acc)
{
    int32_t g, r;
    uint32_t j;
    if (xw != NULL) { /* input pairs widened once per batch row (per-channel codebooks) */
        for (r = 0; r < nr; r++) {
            const uint8_t *qr = q + r * rb;
            const uint32_t *xr = xw;
            int32_t a = 0;
            for (g = 0; g < groups; g++) {
                for (j = 0; j < 4u; j++) {
                    const int32_t pr = (int32_t)xr[j];
                    TC_FC_PAIR_MAC(a, tab[fc_field(qr, bits, j)], (int32_t)(int16_t)pr, pr >> 16);
                }
                qr += bits;
                xr += 4;
            }
            acc[r] = a;
        }
        return;
    }
    for (r = 0; r + 1 < nr; r += 2) {
        const uint8_t *qa = q + r * rb, *qb = qa + rb;
        const int8_t *xr = x;
        int32_t a0 = 0, a1 = 0;
        for (g = 0; g < groups; g++) {
            for (j = 0; j < 4u; j++) {
                const int32_t x0 = xr[2 * j], x1 = xr[2 * j + 1];
                TC_FC_PAIR_MAC(a0, tab[fc_field(qa, bits, j)], x0, x1);
                TC_FC_PAIR_MAC(a1, tab[fc_field(qb, bits, j)], x0, x1);
            }
            qa += bits;
            qb += bits;
            xr += 8;
        }
        acc[r] = a0;
        acc[r + 1] = a1;
    }
    if (r < nr) {
        const uint8_t *qa = q + r * rb;
        const int8_t *xr = x;
        int32_t a0 = 0;
        for (g = 0; g < groups; g++) {
            for (j = 0; j < 4u; j++) {
                TC_FC_PAIR_MAC(a0, tab[fc_field(qa, bits, j)], xr[2 * j], xr[2 * j + 1]);
            }
            qa += bits;
            xr += 8;
        }
        acc[r] = a0;
    }
}

/* raw int8 weights, two rows per pass sharing each input */
TC_INLINE void fc_raw_rows(const uint8_t *q, int32_t rb, int32_t nr, const int8_t *x,
                           int32_t groups, int32_t *acc)
{
    const int32_t n = 8 * groups;
    int32_t i, r;
    for (r = 0; r + 1 < nr; r += 2) {
        const int8_t *wa = (const int8_t *)(const void *)(q + r * rb), *wb = wa + rb;
        int32_t a0 = 0, a1 = 0;
        for (i = 0; i < n; i++) {
            const int32_t xi = x[i];
            a0 += wa[i] * xi;
            a1 += wb[i] * xi;
        }
        acc[r] = a0;
        acc[r + 1] = a1;
    }
    if (r < nr) {
        acc[r] = tc_dot_s8((const int8_t *)(const void *)(q + r * rb), x, n);
    }
}

TC_INLINE void fc_group_words(const uint8_t *q, uint32_t bits, uint32_t *lo, uint32_t *hi)
{
    uint32_t v = q[0];
    if (bits > 1) {
        v |= (uint32_t)q[1] << 8;
    }
    if (bits > 2) {
        v |= (uint32_t)q[2] << 16;
    }
    if (bits > 3) {
        v |= (uint32_t)q[3] << 24;
    }
    *lo = v;
    v = 0;
    if (bits > 4) {
        v = q[4];
    }
    if (bits > 5) {
        v |= (uint32_t)q[5] << 8;
    }
    if (bits > 6) {
        v |= (uint32_t)q[6] << 16;
    }
    if (bits > 7) {
        v |= (uint32_t)q[7] << 24;
    }
    *hi = v;
}

TC_INLINE void fc_lookup_rows(const uint8_t *q, int32_t rb, int32_t nr, uint32_t bits,
                              const int8_t *cb, const int8_t *x, int32_t groups, int32_t *acc)
{
    int32_t g, r;
    uint32_t j;
    for (r = 0; r < nr; r++) {
        const uint8_t *qr = q + r * rb;
        const int8_t *xr = x;
        int32_t a = 0;
        for (g = 0; g < groups; g++) {
            uint32_t lo, hi;
            fc_group_words(qr, bits, &lo, &hi);
            for (j = 0; j < 8u; j++) {
                a += cb[fc_index(lo, hi, bits, j)] * xr[j];
            }
            qr += bits;
            xr += 8;
        }
        acc[r] = a;
    }
}
#endif /* TC_ARCH_ARM_DSP */

/* One instance per width, so that field positions are constants. */
TC_NOINLINE TC_HOT_LOOP static void fc_pairs_any(const uint8_t *q, int32_t rb, int32_t nr,
                                                 uint32_t bits, const uint32_t *tab,
                                                 const int8_t *x, const uint32_t *xw,
                                                 int32_t groups, int32_t *acc)
{
    switch (bits) {
    case 4:
        fc_pairs_rows(q, rb, nr, 4, tab, x, xw, groups, acc);
        break;
    case 3:
        fc_pairs_rows(q, rb, nr, 3, tab, x, xw, groups, acc);
        break;
    case 2:
        fc_pairs_rows(q, rb, nr, 2, tab, x, xw, groups, acc);
        break;
    default:
        fc_pairs_rows(q, rb, nr, 1, tab, x, xw, groups, acc);
        break;
    }
}

TC_NOINLINE TC_HOT_LOOP static void fc_lookup_any(const uint8_t *q, int32_t rb, int32_t nr,
                                                  uint32_t bits, const int8_t *cb,
                                                  const int8_t *x, int32_t groups, int32_t *acc)
{
    switch (bits) {
    case 1:
        fc_lookup_rows(q, rb, nr, 1, cb, x, groups, acc);
        break;
    case 2:
        fc_lookup_rows(q, rb, nr, 2, cb, x, groups, acc);
        break;
    case 3:
        fc_lookup_rows(q, rb, nr, 3, cb, x, groups, acc);
        break;
    case 4:
        fc_lookup_rows(q, rb, nr, 4, cb, x, groups, acc);
        break;
    case 5:
        fc_lookup_rows(q, rb, nr, 5, cb, x, groups, acc);
        break;
    case 6:
        fc_lookup_rows(q, rb, nr, 6, cb, x, groups, acc);
        break;
    case 7:
        fc_lookup_rows(q, rb, nr, 7, cb, x, groups, acc);
        break;
    default:
        fc_lookup_rows(q, rb, nr, 8, cb, x, groups, acc);
        break;
    }
}

TC_NOINLINE TC_HOT_LOOP static void fc_raw_any(const uint8_t *q, int32_t rb, int32_t nr,
                                               const int8_t *x, int32_t groups, int32_t *acc)
{
    fc_raw_rows(q, rb, nr, x, groups, acc);
}

/* ---------------------------------------------------------------------------------------
 * Generic row (any alignment, any width): 128-weight chunks decoded to int16, then a dot
 * product. Also gives sum(w) when want_ws (layers whose input offset is not folded).
 */
static int32_t fc_row_chunked(const uint8_t *packed, uint32_t row_bit, uint32_t bits,
                              const int8_t *cb, const int8_t *x, int32_t n, int want_ws,
                              int32_t *ws)
{
    int16_t buf[TC_FC_CHUNK];
    int32_t acc = 0, i;
    for (i = 0; i < n; i += TC_FC_CHUNK) {
        const int32_t m = TC_MIN(TC_FC_CHUNK, n - i);
        tc_unpack_lut16(packed, row_bit + (uint32_t)i * bits, (uint8_t)bits, cb, m, buf);
        acc += tc_dot_s16_s8(buf, x + i, m);
        if (want_ws) {
            *ws += tc_sum_s16(buf, m);
        }
    }
    return acc;
}

#ifdef TC_HOST_X86_SIMD
#include <tmmintrin.h>
#define TC_FC_HOST_MAX_IN 2048

/* x86 hosts, 4-bit rows: sum(w*x) over n32 (a multiple of 32) weights against the input
 * pre-widened to int16; per 32 weights one 16-byte index load, two pshufb codebook lookups,
 * sign extension and four pmaddwd, accumulated in one register. */
__attribute__((target("ssse3"))) static int32_t fc_dot4_ssse3(const uint8_t *p, const int8_t *cb,
                                                             const int16_t *x16, int32_t n32)
{
    const __m128i tab = _mm_loadu_si128((const __m128i *)(const void *)cb);
    const __m128i m = _mm_set1_epi8(0x0F);
    __m128i acc = _mm_setzero_si128();
    int32_t i;
    for (i = 0; i < n32; i += 32) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + (i >> 1)));
        const __m128i lo = _mm_shuffle_epi8(tab, _mm_and_si128(v, m));
        const __m128i hi = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 4), m));
        const __m128i w0 = _mm_unpacklo_epi8(lo, hi), w1 = _mm_unpackhi_epi8(lo, hi);
        const __m128i *xv = (const __m128i *)(const void *)(x16 + i);
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_srai_epi16(_mm_unpacklo_epi8(w0, w0), 8),
                                                _mm_loadu_si128(xv)));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_srai_epi16(_mm_unpackhi_epi8(w0, w0), 8),
                                                _mm_loadu_si128(xv + 1)));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_srai_epi16(_mm_unpacklo_epi8(w1, w1), 8),
                                                _mm_loadu_si128(xv + 2)));
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_srai_epi16(_mm_unpackhi_epi8(w1, w1), 8),
                                                _mm_loadu_si128(xv + 3)));
    }
    acc = _mm_add_epi32(acc, _mm_srli_si128(acc, 8));
    acc = _mm_add_epi32(acc, _mm_srli_si128(acc, 4));
    return _mm_cvtsi128_si32(acc);
}
#endif

/* ---------------------------------------------------------------------------------------
 * Driver: batch rows outer (the input of a batch row is widened once on x86 hosts), passes
 * of up to TC_FC_ROWS output channels sharing a codebook inner; a pair table is rebuilt only
 * when the pass's codebook is not the one it holds.
 */
void tc_fully_connected_packed(const tc_fc_packed_params *p, const int8_t *input,
                               const uint8_t *packed, const int8_t *codebooks,
                               const uint8_t *codebook_map, const int32_t *bias,
                               const int32_t *mult, const int8_t *shift, int8_t *output,
                               int8_t *scratch)
{
    const int32_t n = p->in_features;
    const int32_t out_f = p->out_features;
    const uint32_t bits = p->bits;
    const int32_t io = p->input_offset;
    const int32_t fo = p->filter_offset;
    const int32_t rb = (int32_t)(((uint32_t)n * bits) >> 3); /* row bytes when aligned */
    const int aligned = (((uint32_t)n * bits) & 7u) == 0;   /* every row on a byte boundary */
    uint32_t *tab = fc_pair_entries(p) != 0 ? (uint32_t *)(void *)tc_scratch_s32(scratch) : NULL;
    uint32_t *xw = tab != NULL && p->codebook_stride != 0 ? tab + fc_pair_entries(p) : NULL;
    const int8_t *tab_cb = NULL;
    int32_t b;
#ifdef TC_HOST_X86_SIMD
    /* whole 4-bit rows on the SSSE3 path (input widened once per batch row, 4 KiB of stack) */
    int16_t x16[TC_FC_HOST_MAX_IN];
    const int host4 = bits == 4 && codebooks != NULL && io == 0 && (n & 1) == 0 && n >= 32 &&
                      n <= TC_FC_HOST_MAX_IN && __builtin_cpu_supports("ssse3");
    const int32_t n32 = n & ~31;
#endif

    for (b = 0; b < p->batches; b++) {
        const int8_t *x = input + (int32_t)b * n;
        int64_t xsum = 0;
        int32_t c = 0;
        if (fo != 0) {
            int32_t i;
            for (i = 0; i < n; i++) {
                xsum += x[i];
            }
        }
#ifdef TC_HOST_X86_SIMD
        if (host4) {
            tc_widen_s8_s16(x, n, x16);
        }
#endif
        if (xw != NULL) {
            fc_widen_pairs(x, n, fc_widened_words(p), xw);
        }
        while (c < out_f) {
            const int32_t cbi = codebook_map != NULL ? codebook_map[c] : c;
            const int8_t *cb =
                codebooks == NULL ? NULL : codebooks + (int32_t)p->codebook_stride * cbi;
            int8_t *y = output + (int32_t)b * out_f + c;
            int32_t acc[TC_FC_ROWS], ws[TC_FC_ROWS];
            int32_t nr = 1, r, done = 0;
            const int32_t g = aligned ? n >> 3 : 0; /* groups of 8 for the row kernels */
            /* rows of one pass share the codebook */
            while (nr < TC_FC_ROWS && c + nr < out_f) {
                const int32_t ci = codebook_map != NULL ? codebook_map[c + nr] : c + nr;
                if (p->codebook_stride != 0 && codebooks != NULL && ci != cbi) {
                    break;
                }
                nr++;
            }
            for (r = 0; r < nr; r++) {
                acc[r] = 0;
                ws[r] = 0;
            }
            if (cb == NULL) { /* raw int8 weights */
                if (TC_HOST_SIMD) {
                    for (r = 0; r < nr; r++) {
                        acc[r] = tc_dot_s8(
                            (const int8_t *)(const void *)packed + (int32_t)(c + r) * n, x, n);
                    }
                    done = n;
                } else if (g > 0) {
                    fc_raw_any(packed + (int32_t)c * rb, rb, nr, x, g, acc);
                    done = 8 * g;
                }
            }
#ifdef TC_HOST_X86_SIMD
            else if (host4) {
                for (r = 0; r < nr; r++) {
                    const uint32_t row_bit = (uint32_t)(c + r) * (uint32_t)n * 4u;
                    acc[r] = fc_dot4_ssse3(packed + (row_bit >> 3), cb, x16, n32);
                }
                done = n32;
            }
#endif
            else if (g > 0) {
                if (tab != NULL) {
                    if (cb != tab_cb) {
                        fc_build_pairs(tab, cb, bits, p->codebook_size);
                        tab_cb = cb;
                    }
                    fc_pairs_any(packed + (int32_t)c * rb, rb, nr, bits, tab, x, xw, g, acc);
                } else {
                    fc_lookup_any(packed + (int32_t)c * rb, rb, nr, bits, cb, x, g, acc);
                }
                done = 8 * g;
            }
            for (r = 0; r < nr; r++) {
                const int32_t ch = c + r;
                const uint32_t row_bit = (uint32_t)ch * (uint32_t)n * bits;
                const int32_t q = p->requant_per_channel ? ch : 0;
                int64_t total;
                if (done < n) {
                    acc[r] += fc_row_chunked(packed, row_bit + (uint32_t)done * bits, bits, cb,
                                             x + done, n - done, io != 0, &ws[r]);
                }
                if (io != 0 && done > 0) { /* layers without a folded offset: sum(w) too */
                    (void)fc_row_chunked(packed, row_bit, bits, cb, x, done, 1, &ws[r]);
                }
                /* sum((w+fo)*(x+io)) = sum(w*x) + io*sum(w) + fo*sum(x+io); wraps like int32 */
                total = (int64_t)acc[r] + (int64_t)io * ws[r];
                if (fo != 0) {
                    total += (int64_t)fo * (xsum + (int64_t)n * io);
                }
                if (bias != NULL) {
                    total += bias[ch];
                }
                y[r] = tc_requantize((int32_t)(uint32_t)(uint64_t)total, mult[q], shift[q],
                                     p->output_offset, p->act_min, p->act_max);
            }
            c += nr;
        }
    }
}
