/*
 * tc_fully_connected_packed: FULLY_CONNECTED on packed cluster indices.
 *
 * Each weight is used once per batch row, so decoding cannot be amortized over positions; the
 * kernel decodes as it multiplies. Rows are taken in passes of up to TC_FC_ROWS output
 * channels that share a codebook, so that the input loads serve several rows. Per family
 * (tc_arch.h), inside this file (docs/kernels.md, "FULLY_CONNECTED fast paths"):
 *  - pair tables (widths 1..5, built at run time from the codebook into caller scratch): a
 *    field of 2*bits stream bits (two consecutive indices) selects both weights. The scratch is
 *    optional, at the level p->tables says (the planner grants the largest the arena has room
 *    for): full = pair table + input row widened once per batch row to int16 pairs; compact =
 *    two int8 tables only; none = scratch NULL. Cortex-M4/M7/M33 (TC_ARCH_ARM_DSP), full: one
 *    word of two int16 lanes, fed to SMLAD against the input pair (two MACs per instruction),
 *    four rows per pass; compact: LDRSB + SMLABB/SMLABT. ARMv6-M and portable C: two int8
 *    tables (LDRSB), two MULS (ARMv6-M 4-bit: inline asm loops).
 *  - no tables, 4 bits: per weight a bit-field extract, one LDRSB and one MAC (DSP: two rows per
 *    pass, a codebook each; ARMv6-M: asm).
 *  - raw int8 weights (codebooks == NULL): SXTB16 + SMLAD on DSP cores, as CMSIS-NN does.
 *  - other widths and short per-channel rows: a codebook lookup per weight, indices cut from
 *    whole groups of 8 (`bits` bytes) with constant shifts, no bit cursor.
 *  - x86 hosts (TC_HOST_X86_SIMD): AVX2 decode + dot for every width (run-time check; see
 *    fc_host_avx2, and fc_host_avx2_narrow for widths 1-3 and 5-7), the SSSE3 4-bit path
 *    otherwise.
 * The input offset is folded out of the inner loop: sum(w*(x+io)) = sum(w*x) + io*sum(w); the
 * generated code passes input_offset 0 and folds io*sum(w) into the bias at compile time
 * (ops/fully_connected.py), so sum(w) is only computed (second pass) when io != 0.
 * Semantics: TFLite Micro reference_integer_ops FullyConnected / FullyConnectedPerChannel.
 */
#include <string.h>

#include "tc_packed_internal.h"

#define TC_FC_CHUNK 128
#define TC_FC_ROWS 4  /* output channels per pass of a row kernel */
#define TC_FC_PASS 16 /* output channels the driver hands to a row kernel at once */
#define TC_FC_PAIR_MAX_BITS 6 /* pair tables for widths 1..6 */
#if defined(TC_ARCH_ARM_DSP)
#define TC_FC_HAVE_LOOK4 1 /* fc_look4_rows: 4-bit rows without a table, a codebook per row */
#else
#define TC_FC_HAVE_LOOK4 0
#endif

/* ---------------------------------------------------------------------------------------
 * Pair tables and scratch
 */

/* Entries of the pair table this layer's scratch level holds (0: none): layers of >= 4 weights
 * per entry. One table per codebook: per-tensor layers build it once per call; per-channel
 * layers once per row, so they use it only on rows of >= 2 weights per entry
 * (fc_tables_pay); shared layers once per codebook, where the rows are taken codebook by
 * codebook and every codebook's table serves >= 4 weights per entry. */
static int32_t fc_pair_entries(const tc_fc_packed_params *p)
{
    const int32_t bits = p->bits;
    int32_t e;
    if (bits < 1 || bits > TC_FC_PAIR_MAX_BITS) {
        return 0;
    }
    e = (int32_t)1 << (2 * bits);
    return (uint32_t)p->in_features * p->out_features >= 4u * (uint32_t)e ? e : 0;
}

/* The input row widened once per batch row to int16 pairs (xw[j] = x[2j] low lane, x[2j+1]
 * high lane), which every row of the layer then reads as SMLAD operands (two per word). */
static int32_t fc_widened_words(const tc_fc_packed_params *p)
{
    return ((int32_t)p->in_features + 3) / 4 * 2;
}

/* The table level the layer runs with given a scratch: 2 full (pair words + widened input),
 * 1 compact (split int8 tables), 0 none. */
static int32_t fc_level(const tc_fc_packed_params *p)
{
    const int32_t level = fc_pair_entries(p) != 0 ? TC_MIN((int32_t)p->tables, 2) : 0;
    /* the compact tables pay at 4 bits only (the row kernels for them are 4-bit; other widths
     * run faster without tables than through a generic split-table loop) */
    return level == 1 && p->bits != 4 ? 0 : level;
}

int32_t tc_fully_connected_packed_get_buffer_size(const tc_fc_packed_params *p)
{
    const int32_t e = fc_pair_entries(p);
    const int32_t level = fc_level(p);
    return level == 2 ? 4 * (e + fc_widened_words(p)) + 3 : level == 1 ? 2 * e : 0;
}



/* ---------------------------------------------------------------------------------------
 * Row kernels. Each computes acc[r] = sum over weights [0, 8*groups) of row r (r < nr, rows
 * `rb` bytes apart from q, or at rows[r], each starting on a byte boundary) of w * x. A group of
 * 8 indices is `bits` whole bytes; the kernels read exactly the bytes of their groups.
 */

/* pair field j (0..3: indices 2j, 2j+1) of the group at q, table widths 1..4 */
TC_INLINE uint32_t fc_field(const uint8_t *q, uint32_t bits, uint32_t j)
{
    if (bits == 4) {
        return q[j];
    }
    if (bits == 6) { /* 12-bit fields at bits 0, 12, 24, 36 of q[0..5] */
        const uint32_t b = (3u * j) >> 1, o = 4u * (j & 1u);
        return (((uint32_t)q[b] | (uint32_t)q[b + 1] << 8) >> o) & 4095u;
    }
    if (bits == 5) { /* 10-bit fields at bits 0, 10, 20, 30 of q[0..4] */
        const uint32_t s = 10u * j, b = s >> 3, o = s & 7u;
        return (((uint32_t)q[b] | (uint32_t)q[b + 1] << 8) >> o) & 1023u;
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

/* Split tables (the compact level everywhere; the full level on ARMv6-M and in portable C):
 * the pair field f (first index in the low bits) selects lo[f], the weight of its first
 * index, and hi[f] = lo[e + f], the weight of its second (int8, 2*2^(2*bits) bytes, any
 * alignment). Per pair of weights a loop then loads the field and two LDRSB with register
 * offsets, no shifts or masks. */
TC_NOINLINE static void fc_build_split(int8_t *restrict lo, const int8_t *restrict cb, uint32_t bits,
                                       int32_t k)
{
    const int32_t n = (int32_t)1 << bits;
    int8_t *hi = lo + n * n;
    int8_t c[1 << TC_FC_PAIR_MAX_BITS];
    int32_t a, b;
    for (a = 0; a < n; a++) {
        c[a] = a < k ? cb[a] : 0;
    }
    if (n == 16 && ((uintptr_t)lo & 3u) == 0) { /* 4 bits, aligned: word stores, 128 per table
                                                 * (per-channel layers rebuild per row) */
        uint32_t cw[4], *lw = (uint32_t *)(void *)lo, *hw = (uint32_t *)(void *)hi;
        memcpy(cw, c, 16);
        for (b = 0; b < 16; b++) {
            const uint32_t h = (uint32_t)(uint8_t)c[b] * 0x01010101u;
            lw[0] = cw[0];
            lw[1] = cw[1];
            lw[2] = cw[2];
            lw[3] = cw[3];
            hw[0] = h;
            hw[1] = h;
            hw[2] = h;
            hw[3] = h;
            lw += 4;
            hw += 4;
        }
        return;
    }
    for (b = 0; b < n; b++) {
        for (a = 0; a < n; a++) {
            lo[a] = c[a];
            hi[a] = c[b];
        }
        lo += n;
        hi += n;
    }
}

/* one row against the split tables, the input read as int8 (no widened copy): any width 1..5
 * (fields of 2*bits bits), rows of whole 8-index groups */
TC_INLINE int32_t fc_split_row(const uint8_t *q, uint32_t bits, const int8_t *lo, const int8_t *x,
                               int32_t groups)
{
    const int8_t *hi = lo + ((int32_t)1 << (2 * bits));
    int32_t a = 0, g;
    uint32_t j;
    for (g = 0; g < groups; g++) {
        for (j = 0; j < 4u; j++) {
            const uint32_t f = fc_field(q, bits, j);
            a += lo[f] * x[2 * j];
            a += hi[f] * x[2 * j + 1];
        }
        q += bits;
        x += 8;
    }
    return a;
}

#if defined(TC_ARCH_ARM_DSP)
/* ---- Cortex-M4/M7/M33 (ARMv7E-M / ARMv8-M Mainline with DSP) ----
 * Pair words into SMLAD against the input widened once per batch row (fc_widen_pairs: one LDR,
 * two SXTB16 and two PKH per 4 inputs): x01 = (x0, x1), x23 = (x2, x3) as int16 lanes.
 * GCC has no ACLE intrinsic for SXTB16 with rotation or for PKH, so those are
 * one-instruction asm statements (as CMSIS-NN's cmsis_gcc.h does). Unaligned LDR/LDRH are
 * allowed on these cores. */
/* tc_ld32, tc_ld16, tc_sxtb16_ror8, tc_pkhbt16, tc_pkhtb16: tc_packed_internal.h */
/* one step of fc_build_pairs' asm loop: the next high lane into the eight entries held in
 * r4..r11 (PKHBT), one STM of them, the table pointer to the next row of entries */
#define TC_FC_PKH8                                                                            \
    "ldr %[h], [%[hp]], #4\n\t"                                                               \
    "pkhbt %[v0], %[v0], %[h], lsl #16\n\t"                                                   \
    "pkhbt %[v1], %[v1], %[h], lsl #16\n\t"                                                   \
    "pkhbt %[v2], %[v2], %[h], lsl #16\n\t"                                                   \
    "pkhbt %[v3], %[v3], %[h], lsl #16\n\t"                                                   \
    "pkhbt %[v4], %[v4], %[h], lsl #16\n\t"                                                   \
    "pkhbt %[v5], %[v5], %[h], lsl #16\n\t"                                                   \
    "pkhbt %[v6], %[v6], %[h], lsl #16\n\t"                                                   \
    "pkhbt %[v7], %[v7], %[h], lsl #16\n\t"                                                   \
    "stm %[t], {r4, r5, r6, r7, r8, r9, r10, r11}\n\t"                                        \
    "add %[t], %[t], %[stride]\n\t"

/* Pair words: tab[lo | hi << bits] = cb[lo] (low int16 lane) | cb[hi] (high lane); entries >= k are 0.
 * Four low lanes stay in registers while the high lane runs over the codebook (per-channel
 * layers rebuild the table for every row: ~2 instructions per entry on Cortex-M4). */
TC_NOINLINE static void fc_build_pairs(uint32_t *restrict tab, const int8_t *restrict cb,
                                       uint32_t bits, int32_t k)
{
    const int32_t n = (int32_t)1 << bits;
    uint32_t c16[1 << TC_FC_PAIR_MAX_BITS];
    int32_t hi, lo;
    for (lo = 0; lo < n; lo++) {
        c16[lo] = lo < k ? (uint32_t)(uint16_t)(int16_t)cb[lo] : 0u;
    }
    if (n < 8) { /* 1 and 2 bits */
        for (hi = 0; hi < n; hi++) {
            for (lo = 0; lo < n; lo++) {
                tab[lo | hi << bits] = c16[lo] | c16[hi] << 16;
            }
        }
        return;
    }
#if defined(__OPTIMIZE__) && defined(__GNUC__)
    /* eight entries per step: the high lanes replaced in place (PKHBT), one STM, four steps per
     * iteration (n >= 8 is a multiple of 4): 1.44 instructions per entry (the C loop below: 2.5;
     * shared 5/6-bit layers build a table per codebook) */
    for (lo = 0; lo < n; lo += 8) {
        register uint32_t v0 __asm__("r4") = c16[lo], v1 __asm__("r5") = c16[lo + 1];
        register uint32_t v2 __asm__("r6") = c16[lo + 2], v3 __asm__("r7") = c16[lo + 3];
        register uint32_t v4 __asm__("r8") = c16[lo + 4], v5 __asm__("r9") = c16[lo + 5];
        register uint32_t v6 __asm__("r10") = c16[lo + 6], v7 __asm__("r11") = c16[lo + 7];
        const uint32_t *hp = c16, *end = c16 + n;
        uint32_t *t = tab + lo, h;
        __asm__ volatile("1:\n\t" TC_FC_PKH8 TC_FC_PKH8 TC_FC_PKH8 TC_FC_PKH8
                         "cmp %[hp], %[end]\n\t"
                         "bne 1b\n"
                         : [v0] "+r"(v0), [v1] "+r"(v1), [v2] "+r"(v2), [v3] "+r"(v3), [v4] "+r"(v4),
                           [v5] "+r"(v5), [v6] "+r"(v6), [v7] "+r"(v7), [hp] "+r"(hp), [t] "+r"(t),
                           [h] "=&r"(h)
                         : [end] "r"(end), [stride] "r"((uint32_t)n * 4u)
                         : "cc", "memory");
    }
    return;
#endif
    for (lo = 0; lo < n; lo += 8) { /* eight low lanes in registers: ~2.2 instructions/entry */
        const uint32_t l0 = c16[lo], l1 = c16[lo + 1], l2 = c16[lo + 2], l3 = c16[lo + 3];
        const uint32_t l4 = c16[lo + 4], l5 = c16[lo + 5], l6 = c16[lo + 6], l7 = c16[lo + 7];
        uint32_t *t = tab + lo;
        for (hi = 0; hi < n; hi++) {
            const uint32_t h = c16[hi] << 16;
            t[0] = h | l0;
            t[1] = h | l1;
            t[2] = h | l2;
            t[3] = h | l3;
            t[4] = h | l4;
            t[5] = h | l5;
            t[6] = h | l6;
            t[7] = h | l7;
            t += n;
        }
    }
}

/* xw (see fc_widened_words), zero past n: per 4 inputs LDR, two SXTB16, two PKH, STRD */
static void fc_widen_pairs(const int8_t *x, int32_t n, uint32_t *xw)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t v = tc_ld32(x + i);
        const int32_t a = __sxtb16(v), b = tc_sxtb16_ror8(v);
        xw[0] = (uint32_t)tc_pkhbt16(a, b);
        xw[1] = (uint32_t)tc_pkhtb16(b, a);
        xw += 2;
    }
    if (i < n) {
        int8_t t[4] = {0, 0, 0, 0};
        memcpy(t, x + i, (size_t)(n - i));
        xw[0] = (uint32_t)(uint16_t)(int16_t)t[0] | (uint32_t)(int32_t)t[1] << 16;
        xw[1] = (uint32_t)(uint16_t)(int16_t)t[2] | (uint32_t)(int32_t)t[3] << 16;
    }
}

/* Pair fields 2h and 2h+1 (inputs 4h..4h+3) of the group at q: for widths 1..3 both come from
 * one load (LDRB / unaligned LDRH) and two bit-field extracts; 4-bit fields are bytes. */
TC_INLINE void fc_fields2(const uint8_t *q, uint32_t bits, uint32_t h, uint32_t *f0, uint32_t *f1)
{
    if (bits == 4) {
        *f0 = q[2u * h];
        *f1 = q[2u * h + 1u];
    } else if (bits == 6) { /* 24 bits at bit 24h: q[0..3] from bit 0, or q[2..5] from bit 8 */
        const uint32_t v = tc_ld32(q + 2u * h);
        *f0 = (v >> (8u * h)) & 4095u;
        *f1 = (v >> (8u * h + 12u)) & 4095u;
    } else if (bits == 5) { /* 20 bits at bit 20h: q[0..3] from bit 0, or q[1..4] from bit 12 */
        const uint32_t v = tc_ld32(q + h);
        *f0 = (v >> (12u * h)) & 1023u;
        *f1 = (v >> (12u * h + 10u)) & 1023u;
    } else if (bits == 3) { /* 12 bits at bit 12h: fields at 4h and 4h+6 of q[h..h+1] */
        const uint32_t v = tc_ld16(q + h);
        *f0 = (v >> (4u * h)) & 63u;
        *f1 = (v >> (4u * h + 6u)) & 63u;
    } else if (bits == 2) {
        const uint32_t v = q[h];
        *f0 = v & 15u;
        *f1 = v >> 4;
    } else {
        const uint32_t v = q[0];
        *f0 = (v >> (4u * h)) & 3u;
        *f1 = (v >> (4u * h + 2u)) & 3u;
    }
}

/* Codebook lookups, one per weight (widths without a pair table): half a group (4 indices,
 * 4*bits bits) comes from one exact 32-bit (or narrower) load, each index from one bit-field
 * extract; LDRSB of the codebook entry, then SMLABB/SMLABT against the SXTB16 lanes (x0, x2)
 * and (x1, x3) of the input (no PKH needed). */
TC_INLINE uint32_t fc_half_word(const uint8_t *q, uint32_t bits, uint32_t h)
{
    if (bits >= 4) { /* bits [4*bits*h, +4*bits) inside bytes [B, B+4), B = min(bits*h/2, bits-4) */
        const uint32_t s = 4u * bits * h, b = TC_MIN(s >> 3, bits - 4u);
        return tc_ld32(q + b) >> (s - 8u * b);
    }
    if (bits == 3) {
        return tc_ld16(q + h) >> (4u * h);
    }
    if (bits == 2) {
        return q[h];
    }
    return (uint32_t)q[0] >> (4u * h);
}

/* The compact level at 4 bits on these cores: one table of 256 halfwords (the same 512 B as the
 * split tables), entry f = lo | hi << 4 holding (int8)cb[lo] in its low byte and (int8)cb[hi] in
 * its high byte. Two entries (fields 2h, 2h+1: weights 4h..4h+3) joined into one word give, by
 * SXTB16 and SXTB16 ROR 8, the weight lanes (w0, w2) and (w1, w3) that match the input lanes
 * (x0, x2) and (x1, x3): per 4 weights two LDRB, two LDRH, one ORR, two SXTB16 and two SMLAD
 * (the split tables: four LDRSB and four SMLABB/SMLABT plus the field extracts). Any alignment
 * (unaligned LDRH and STR are allowed on these cores). */
TC_NOINLINE static void fc_build_half4(int8_t *restrict t, const int8_t *restrict cb, int32_t k)
{
    uint32_t c[16];
    int32_t a, b;
    for (a = 0; a < 16; a++) {
        c[a] = a < k ? (uint32_t)(uint8_t)cb[a] : 0u;
    }
    for (b = 0; b < 16; b++) {
        const uint32_t h = c[b] << 8 | c[b] << 24;
        for (a = 0; a < 16; a += 2) {
            const uint32_t w = h | c[a] | c[a + 1] << 16;
            memcpy(t, &w, 4);
            t += 4;
        }
    }
}

/* One pass skeleton for the row kernels of every level on these cores (fc_rows_dsp): the full
 * pair table (in scratch or flash, widths 1..6, one per codebook of shared layouts), the compact
 * halfword table, codebook lookups (widths without a table) and raw int8 weights. Rows go
 * TC_FC_ROWS at a time, sharing each load of the input operands of a half group (inputs
 * 4h..4h+3), then the remaining rows one by one. A level adds only its operands of a half group
 * (fc_x_half) and one row's four MACs against them (fc_dot_half); `kind` is a constant at every
 * call, so each instance compiles to that level's loop alone. */
enum fc_kind {
    FC_PAIRS, /* pair words tab[field] (int16 lanes, two MACs per SMLAD), the widened input */
    FC_HALF4, /* the compact halfword table t (4 bits), the input as int8 */
    FC_LOOK,  /* a codebook lookup per weight, the input as int8 */
    FC_RAW    /* raw int8 weights */
};

/* what the rows of a pass read besides their index bytes (one table or codebook for the pass) */
struct fc_lv {
    const uint32_t *tab; /* FC_PAIRS */
    const int8_t *t;     /* FC_HALF4 */
    const int8_t *cb;    /* FC_LOOK */
};

/* index bytes of a group of 8 weights, input bytes of a group (the widened input: 4 words); a
 * pass of 4 rows takes steps of TC_FC_HALVES half groups (raw weights: one), TC_FC_UNROLL steps
 * per iteration (the pair rows: two) */
#define TC_FC_QB(kind, bits) ((kind) == FC_HALF4 ? 4 : (kind) == FC_RAW ? 8 : (int32_t)(bits))
#define TC_FC_XB(kind) ((kind) == FC_PAIRS ? 16 : 8)
#define TC_FC_HALVES(kind) ((kind) == FC_RAW ? 1 : 2)
#define TC_FC_UNROLL(kind) ((kind) == FC_PAIRS ? 2 : 1)

/* the input operands of half h (inputs 4h..4h+3; h 2, 3: the next group) shared by the rows of a
 * pass: the SXTB16 lanes (x0, x2), (x1, x3) of four int8 inputs. The pair rows read their widened
 * input words in fc_dot_half instead (loads next to their use: as the loop was before the fold,
 * measured; the 4-row loop of the narrow widths has no register to spare) */
TC_INLINE void fc_x_half(enum fc_kind kind, const uint8_t *x, uint32_t h, int32_t *xa, int32_t *xb)
{
    if (kind == FC_PAIRS) {
        *xa = 0;
        *xb = 0;
    } else {
        const uint32_t v = tc_ld32(x + 4u * h);
        *xa = __sxtb16(v);
        *xb = tc_sxtb16_ror8(v);
    }
}

/* one row's weights 4h..4h+3 of the group at q against the inputs 4h..4h+3 of the group at x
 * (fc_x_half's operands xa, xb) */
TC_INLINE int32_t fc_dot_half(enum fc_kind kind, uint32_t bits, struct fc_lv lv, const uint8_t *q,
                              uint32_t h, const uint8_t *x, int32_t xa, int32_t xb, int32_t acc)
{
    uint32_t w;
    if (kind == FC_PAIRS) { /* two pair fields (LDRB, or a load and two extracts), LDR, SMLAD
                             * against the input pair words (x0, x1), (x2, x3) */
        const int32_t *xp = (const int32_t *)(const void *)x;
        uint32_t f0, f1;
        fc_fields2(q, bits, h & 1u, &f0, &f1);
        acc = __smlad((int32_t)lv.tab[f0], xp[2u * h], acc);
        return __smlad((int32_t)lv.tab[f1], xp[2u * h + 1u], acc);
    }
    if (kind == FC_LOOK) { /* four indices from one load, LDRSB + SMLABB/SMLABT each */
        const uint32_t m = (1u << bits) - 1u, v = fc_half_word(q, bits, h & 1u);
        acc = __smlabb(lv.cb[v & m], xa, acc);
        acc = __smlabb(lv.cb[(v >> bits) & m], xb, acc);
        acc = __smlabt(lv.cb[(v >> (2u * bits)) & m], xa, acc);
        return __smlabt(lv.cb[(v >> (3u * bits)) & m], xb, acc);
    }
    if (kind == FC_HALF4) { /* two halfword entries joined: weights (w0, w2) | (w1, w3) << 8 */
        const uint32_t j = 2u * (h & 1u);
        w = (uint32_t)tc_ld16(lv.t + 2u * q[j]) | (uint32_t)tc_ld16(lv.t + 2u * q[j + 1u]) << 16;
    } else { /* FC_RAW: four int8 weights */
        w = tc_ld32(q + 4u * (h & 1u));
    }
    acc = __smlad(__sxtb16(w), xa, acc);
    return __smlad(tc_sxtb16_ror8(w), xb, acc);
}

/* half h of the group at xx for the four rows of a pass (q0..q3, a0..a3 of fc_pass_dsp);
 * TC_AFTER keeps each row's loads after the previous row's MACs */
#define TC_FC_PASS_HALF(xx, h)                                                                \
    do {                                                                                      \
        int32_t xa_, xb_;                                                                     \
        fc_x_half(kind, (xx), (h), &xa_, &xb_);                                               \
        a0 = fc_dot_half(kind, bits, lv, q0, (h), (xx), xa_, xb_, a0);                        \
        TC_AFTER(q1, a0);                                                                     \
        a1 = fc_dot_half(kind, bits, lv, q1, (h), (xx), xa_, xb_, a1);                        \
        TC_AFTER(q2, a1);                                                                     \
        a2 = fc_dot_half(kind, bits, lv, q2, (h), (xx), xa_, xb_, a2);                        \
        TC_AFTER(q3, a2);                                                                     \
        a3 = fc_dot_half(kind, bits, lv, q3, (h), (xx), xa_, xb_, a3);                        \
        TC_AFTER(q0, a3);                                                                     \
    } while (0)

/* one group of one row at q: halves h0, h0 + 1 (h0 2: the group after the one at x) */
TC_INLINE int32_t fc_row_group(enum fc_kind kind, uint32_t bits, struct fc_lv lv, const uint8_t *x,
                               uint32_t h0, const uint8_t *q, int32_t a)
{
    int32_t xa, xb;
    fc_x_half(kind, x, h0, &xa, &xb);
    a = fc_dot_half(kind, bits, lv, q, h0, x, xa, xb, a);
    fc_x_half(kind, x, h0 + 1u, &xa, &xb);
    return fc_dot_half(kind, bits, lv, q, h0 + 1u, x, xa, xb, a);
}

/* row r of a pass: rows[r], or (rows NULL) `rb` bytes apart from q */
TC_INLINE const uint8_t *fc_row_at(const uint8_t *const *rows, const uint8_t *q, int32_t rb,
                                   int32_t r)
{
    return rows != NULL ? rows[r] : q + r * rb;
}

/* acc[r] = the dot product of the first 8*groups weights of row r (r < nr <= TC_FC_ROWS, each
 * starting on a byte boundary, fc_row_at) with the input x0 (the widened input for FC_PAIRS) */
TC_INLINE void fc_pass_dsp(enum fc_kind kind, uint32_t bits, struct fc_lv lv,
                           const uint8_t *const *rows, const uint8_t *q, int32_t rb, int32_t nr,
                           const uint8_t *x0, int32_t groups, int32_t *acc)
{
    const int32_t qb = TC_FC_QB(kind, bits), xs = TC_FC_XB(kind), u = TC_FC_UNROLL(kind);
    const int32_t hs = TC_FC_HALVES(kind), steps = groups * 2 / hs; /* steps of a 4-row pass */
    const int32_t qstep = qb * hs / 2, xstep = xs * hs / 2;        /* their index, input bytes */
    int32_t g, r;
    if (nr == TC_FC_ROWS) {
        const uint8_t *q0 = fc_row_at(rows, q, rb, 0), *q1 = fc_row_at(rows, q, rb, 1);
        const uint8_t *q2 = fc_row_at(rows, q, rb, 2), *q3 = fc_row_at(rows, q, rb, 3);
        const uint8_t *x = x0, *xe = x0 + xstep * steps;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        /* (the pair rows count steps, the others run to the input's end: each loop as GCC
         * allocated it best, measured) */
        for (g = 0; u == 2 ? g + 2 <= steps : x != xe; g += u) {
            TC_FC_PASS_HALF(x, 0u);
            if (hs == 2) {
                TC_FC_PASS_HALF(x, 1u);
            }
            q0 += qstep;
            q1 += qstep;
            q2 += qstep;
            q3 += qstep;
            if (u == 2) { /* the next group: halves 2 and 3 */
                TC_FC_PASS_HALF(x, 2u);
                TC_FC_PASS_HALF(x, 3u);
                q0 += qb;
                q1 += qb;
                q2 += qb;
                q3 += qb;
            }
            x += u * xstep;
        }
        if (u == 2 && g < steps) {
            TC_FC_PASS_HALF(x, 0u);
            TC_FC_PASS_HALF(x, 1u);
        }
        acc[0] = a0;
        acc[1] = a1;
        acc[2] = a2;
        acc[3] = a3;
        return;
    }
    for (r = 0; r < nr; r++) { /* fewer rows: one by one */
        const uint8_t *qr = fc_row_at(rows, q, rb, r);
        const uint8_t *x = x0;
        int32_t a = 0;
        for (g = 0; g + u <= groups; g += u) {
            a = fc_row_group(kind, bits, lv, x, 0u, qr, a);
            qr += qb;
            if (u == 2) {
                a = fc_row_group(kind, bits, lv, x, 2u, qr, a);
                qr += qb;
            }
            x += u * xs;
        }
        if (u == 2 && g < groups) {
            a = fc_row_group(kind, bits, lv, x, 0u, qr, a);
        }
        acc[r] = a;
    }
}

/* the same for any number of rows (rows[r], or rows NULL: `rb` bytes apart from q): passes of
 * TC_FC_ROWS */
TC_INLINE void fc_rows_dsp(enum fc_kind kind, uint32_t bits, struct fc_lv lv,
                           const uint8_t *const *rows, const uint8_t *q, int32_t rb, int32_t nr,
                           const void *x, int32_t groups, int32_t *acc)
{
    int32_t r;
    for (r = 0; r < nr; r += TC_FC_ROWS) {
        fc_pass_dsp(kind, bits, lv, rows != NULL ? rows + r : NULL, rows != NULL ? q : q + r * rb,
                    rb, TC_MIN(TC_FC_ROWS, nr - r), (const uint8_t *)x, groups, acc + r);
    }
}

/* the levels' row kernels: full pair tables (rows sharing the table tab, the widened input xw) */
TC_INLINE void fc_pairs_rows(const uint8_t *const *rows, int32_t nr, uint32_t bits,
                             const uint32_t *tab, const uint32_t *xw, int32_t groups,
                             int32_t *acc)
{
    const struct fc_lv lv = {tab, NULL, NULL};
    fc_rows_dsp(FC_PAIRS, bits, lv, rows, NULL, 0, nr, xw, groups, acc);
}

#define TC_FC_HAVE_FLASH_PAIRS 1

/* raw int8 weights: SXTB16 of 4 weights against SXTB16 of 4 inputs, (x0, x2) and (x1, x3), as
 * CMSIS-NN */
TC_INLINE void fc_raw_rows(const uint8_t *q, int32_t rb, int32_t nr, const int8_t *x,
                           int32_t groups, int32_t *acc)
{
    const struct fc_lv lv = {NULL, NULL, NULL};
    fc_rows_dsp(FC_RAW, 8u, lv, NULL, q, rb, nr, x, groups, acc);
}

/* widths without a pair table: a codebook lookup per weight (cb shared by the rows) */
TC_INLINE void fc_lookup_rows(const uint8_t *q, int32_t rb, int32_t nr, uint32_t bits,
                              const int8_t *cb, const int8_t *x, int32_t groups, int32_t *acc)
{
    const struct fc_lv lv = {NULL, NULL, cb};
    fc_rows_dsp(FC_LOOK, bits, lv, NULL, q, rb, nr, x, groups, acc);
}

/* the compact level at 4 bits: the halfword table t (fc_build_half4) */
TC_NOINLINE static void fc_half4_rows(const uint8_t *const *rows, int32_t nr, const int8_t *t,
                                      const int8_t *x0, int32_t groups, int32_t *acc)
{
    const struct fc_lv lv = {NULL, t, NULL};
    fc_rows_dsp(FC_HALF4, 4u, lv, rows, NULL, 0, nr, x0, groups, acc);
}
#define TC_FC_HAVE_HALF4 1


/* 4-bit rows without a pair table (scratch == NULL, or per-channel rows too short for one):
 * two rows per pass share the input words (four SXTB16 lanes per 8 inputs), each with its own
 * codebook; per 8 weights of a row one LDR of the 4 index bytes, then per weight one bit-field
 * extract, one LDRSB of the codebook entry and one SMLABB/SMLABT. ~3.8 instructions per MAC
 * in the loop (the pair table: ~1.7). */
#define TC_FC_L4ROW(acc, qq, c)                                                               \
    do {                                                                                      \
        const uint32_t v_ = tc_ld32(qq);                                                      \
        acc = __smlabb((c)[v_ & 15u], xa, acc);                                               \
        acc = __smlabb((c)[(v_ >> 4) & 15u], xb, acc);                                        \
        acc = __smlabt((c)[(v_ >> 8) & 15u], xa, acc);                                        \
        acc = __smlabt((c)[(v_ >> 12) & 15u], xb, acc);                                       \
        acc = __smlabb((c)[(v_ >> 16) & 15u], xc, acc);                                       \
        acc = __smlabb((c)[(v_ >> 20) & 15u], xd, acc);                                       \
        acc = __smlabt((c)[(v_ >> 24) & 15u], xc, acc);                                       \
        acc = __smlabt((c)[v_ >> 28], xd, acc);                                               \
    } while (0)

/* rows r of the pass at q + r*rb, codebook cbs[r] (same: all the same codebook, one register
 * less in the loop) */
TC_INLINE void fc_look4_rows_impl(const uint8_t *q, int32_t rb, int32_t nr,
                                  const int8_t *const *cbs, const int8_t *x0, int32_t groups,
                                  int32_t *acc, int same)
{
    int32_t r;
    for (r = 0; r + 2 <= nr; r += 2) {
        const uint8_t *qa = q + r * rb, *qb = qa + rb;
        const int8_t *ca = cbs[r], *cb = same ? ca : cbs[r + 1];
        const int8_t *x = x0, *end = x0 + 8 * groups;
        int32_t a0 = 0, a1 = 0;
        while (x != end) {
            const uint32_t u0 = tc_ld32(x), u1 = tc_ld32(x + 4);
            const int32_t xa = __sxtb16(u0), xb = tc_sxtb16_ror8(u0);
            const int32_t xc = __sxtb16(u1), xd = tc_sxtb16_ror8(u1);
            TC_FC_L4ROW(a0, qa, ca);
            TC_AFTER(qb, a0);
            TC_FC_L4ROW(a1, qb, cb);
            TC_AFTER(qa, a1);
            qa += 4;
            qb += 4;
            x += 8;
        }
        acc[r] = a0;
        acc[r + 1] = a1;
    }
    if (r < nr) {
        const uint8_t *qa = q + r * rb;
        const int8_t *ca = cbs[r];
        const int8_t *x = x0, *end = x0 + 8 * groups;
        int32_t a0 = 0;
        while (x != end) {
            const uint32_t u0 = tc_ld32(x), u1 = tc_ld32(x + 4);
            const int32_t xa = __sxtb16(u0), xb = tc_sxtb16_ror8(u0);
            const int32_t xc = __sxtb16(u1), xd = tc_sxtb16_ror8(u1);
            TC_FC_L4ROW(a0, qa, ca);
            qa += 4;
            x += 8;
        }
        acc[r] = a0;
    }
}

TC_NOINLINE static void fc_look4_rows(const uint8_t *q, int32_t rb, int32_t nr,
                                      const int8_t *const *cbs, const int8_t *x0, int32_t groups,
                                      int32_t *acc)
{
    int32_t r;
    for (r = 1; r < nr && cbs[r] == cbs[0]; r++) {
    }
    if (r == nr) {
        fc_look4_rows_impl(q, rb, nr, cbs, x0, groups, acc, 1);
    } else {
        fc_look4_rows_impl(q, rb, nr, cbs, x0, groups, acc, 0);
    }
}



#else /* !TC_ARCH_ARM_DSP */
/* ---- plain C (ARMv6-M, portable, x86 hosts for widths they do not vectorize) ----
 * Written for Thumb-1 (8 low registers, 1-cycle MULS, no unaligned or 64-bit loads, LDRSB
 * only with a register offset): one row per call so that the loop's values fit the low
 * registers, byte tables instead of shifts and masks. */

/* Split tables: the pair field f (first index in the low bits) selects lo[f], the weight of
 * its first index, and hi[f] = lo[e + f], the weight of its second (int8, 2*2^(2*bits) bytes:
 * half of the scratch the DSP cores' pair words take). Per pair of weights the Thumb-1 loop
 * then loads the field byte and two LDRSB with register offsets, no shifts or masks. */
TC_INLINE void fc_build_pairs(uint32_t *restrict tab, const int8_t *restrict cb, uint32_t bits,
                              int32_t k)
{
    fc_build_split((int8_t *)(void *)tab, cb, bits, k);
}

/* pair field j of rows a and b against inputs 2j, 2j+1 (loaded once for both rows) */
/* xw (see fc_widened_words), zero past n */
static void fc_widen_pairs(const int8_t *x, int32_t n, uint32_t *xw)
{
    const int32_t words = (n + 3) / 4 * 2;
    int32_t j;
    for (j = 0; j < words; j++) {
        const int32_t i = 2 * j;
        const int32_t x0 = i < n ? x[i] : 0, x1 = i + 1 < n ? x[i + 1] : 0;
        xw[j] = (uint32_t)(uint16_t)(int16_t)x0 | (uint32_t)x1 << 16;
    }
}

/* pair field j against the input pair word j: LDRB of the field, two LDRSB from the split
 * tables, LDR of the pair word, SXTH and ASRS, two MULS, two ADDS */
#define TC_FC_PAIRW(j)                                                                        \
    do {                                                                                      \
        const int32_t p_ = (int32_t)xp[j];                                                    \
        const uint32_t f_ = fc_field(qa, bits, (j));                                          \
        a0 += lo[f_] * (int32_t)(int16_t)p_;                                                  \
        a0 += hi[f_] * (p_ >> 16);                                                            \
    } while (0)

/* One row per call: with its few live values (row, tables, input, count) the hot loop keeps
 * everything in the 8 low registers of a Thumb-1 core at -O2 and -Os alike. */
TC_INLINE int32_t fc_pairs_row(const uint8_t *qa, uint32_t bits, const uint32_t *tab,
                               const uint32_t *xp, int32_t groups)
{
    const int8_t *lo = (const int8_t *)(const void *)tab;
    const int8_t *hi = lo + ((int32_t)1 << (2 * bits));
    int32_t a0 = 0, g;
    for (g = 0; g < groups; g++) {
        TC_FC_PAIRW(0);
        TC_FC_PAIRW(1);
        TC_FC_PAIRW(2);
        TC_FC_PAIRW(3);
        qa += bits;
        xp += 4;
    }
    return a0;
}

#define TC_FC_PAIRS_ROW_FN(name, b)                                                           \
    TC_NOINLINE static int32_t name(const uint8_t *q, const uint32_t *tab, const uint32_t *xw, \
                                    int32_t groups)                                           \
    {                                                                                         \
        return fc_pairs_row(q, b, tab, xw, groups);                                           \
    }
TC_FC_PAIRS_ROW_FN(fc_pairs_row6, 6)
TC_FC_PAIRS_ROW_FN(fc_pairs_row5, 5)
#if defined(TC_ARCH_ARMV6M) && defined(TC_V6M_ASM)
/* 4-bit rows on ARMv6-M, the shape the core wants (GCC's Thumb-1 allocation of the C loop
 * above shuffles through high registers: 7.3 instructions per MAC). Per pair field: LDRB of
 * the field, LDR of the input pair word, two LDRSB from the split tables, SXTH, ASRS, two MULS,
 * two ADD into the accumulator (r8, ADD takes high registers): 10 instructions per 2 MACs,
 * + 4 per group of 8 (5.5 per MAC). Eight low registers: row, input, the two tables and four
 * temporaries (no frame pointer at -O1 and above; TC_V6M_ASM requires optimization). Same sums
 * as fc_pairs_row (the tests compare it with the portable C). */
#define TC_FC_V6M_PAIR(j, xo)                                                                 \
    "ldrb %[f], [%[q], #" #j "]\n\t"                                                          \
    "ldr %[xp], [%[xw], #" #xo "]\n\t"                                                        \
    "ldrsb %[w], [%[lo], %[f]]\n\t"                                                           \
    "sxth %[t], %[xp]\n\t"                                                                    \
    "muls %[t], %[w], %[t]\n\t"                                                               \
    "add %[acc], %[t]\n\t"                                                                    \
    "ldrsb %[w], [%[hi], %[f]]\n\t"                                                           \
    "asrs %[xp], %[xp], #16\n\t"                                                              \
    "muls %[xp], %[w], %[xp]\n\t"                                                             \
    "add %[acc], %[xp]\n\t"
TC_NOINLINE static int32_t fc_pairs_row4(const uint8_t *q, const uint32_t *tab, const uint32_t *xw,
                                         int32_t groups)
{
    register int32_t acc __asm__("r8") = 0;
    register const uint32_t *end __asm__("r9") = xw + 4 * groups;
    const int8_t *lo = (const int8_t *)(const void *)tab, *hi = lo + 256;
    uint32_t f, w, t, xp;
    if (groups > 0) {
        __asm__ volatile(".syntax unified\n"
                         "1:\n\t" TC_FC_V6M_PAIR(0, 0) TC_FC_V6M_PAIR(1, 4) TC_FC_V6M_PAIR(2, 8)
                         TC_FC_V6M_PAIR(3, 12)
                         "adds %[q], #4\n\t"
                         "adds %[xw], #16\n\t"
                         "cmp %[xw], %[end]\n\t"
                         "bne 1b\n"
                         : [acc] "+r"(acc), [q] "+l"(q), [xw] "+l"(xw), [f] "=&l"(f), [w] "=&l"(w),
                           [t] "=&l"(t), [xp] "=&l"(xp)
                         : [lo] "l"(lo), [hi] "l"(hi), [end] "r"(end)
                         : "cc", "memory");
    }
    return acc;
}
#else
TC_FC_PAIRS_ROW_FN(fc_pairs_row4, 4)
#endif
TC_FC_PAIRS_ROW_FN(fc_pairs_row3, 3)
TC_FC_PAIRS_ROW_FN(fc_pairs_row2, 2)
TC_FC_PAIRS_ROW_FN(fc_pairs_row1, 1)

TC_INLINE void fc_pairs_rows(const uint8_t *const *rows, int32_t nr, uint32_t bits,
                             const uint32_t *tab, const uint32_t *xw, int32_t groups,
                             int32_t *acc)
{
    int32_t r;
    for (r = 0; r < nr; r++) {
        const uint8_t *qr = rows[r];
        acc[r] = bits == 6   ? fc_pairs_row6(qr, tab, xw, groups)
                 : bits == 5 ? fc_pairs_row5(qr, tab, xw, groups)
                 : bits == 4 ? fc_pairs_row4(qr, tab, xw, groups)
                 : bits == 3 ? fc_pairs_row3(qr, tab, xw, groups)
                 : bits == 2 ? fc_pairs_row2(qr, tab, xw, groups)
                             : fc_pairs_row1(qr, tab, xw, groups);
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
#if defined(TC_ARCH_ARMV6M)
        /* the conv kernels' Thumb-1 1x2 dot product (tc_packed_internal.h: 4 instructions per
         * MAC; GCC's own allocation of the loop below varies from 6.5 to 9 with -Os) */
        acc[r] = 0;
        acc[r + 1] = 0;
        tc_v6m_dot1x2(x, wa, wb, n, acc + r);
        (void)i;
#else
        int32_t a0 = 0, a1 = 0;
        for (i = 0; i < n; i++) {
            const int32_t xi = x[i];
            a0 += wa[i] * xi;
            a1 += wb[i] * xi;
        }
        acc[r] = a0;
        acc[r + 1] = a1;
#endif
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
    for (r = 0; r < nr; r++) {
        const uint8_t *qr = q + r * rb;
        const int8_t *xr = x;
        int32_t a = 0;
        for (g = 0; g < groups; g++) {
            uint32_t lo, hi;
            fc_group_words(qr, bits, &lo, &hi);
            a += cb[tc_group_index(lo, hi, bits, 0u)] * xr[0];
            a += cb[tc_group_index(lo, hi, bits, 1u)] * xr[1];
            a += cb[tc_group_index(lo, hi, bits, 2u)] * xr[2];
            a += cb[tc_group_index(lo, hi, bits, 3u)] * xr[3];
            a += cb[tc_group_index(lo, hi, bits, 4u)] * xr[4];
            a += cb[tc_group_index(lo, hi, bits, 5u)] * xr[5];
            a += cb[tc_group_index(lo, hi, bits, 6u)] * xr[6];
            a += cb[tc_group_index(lo, hi, bits, 7u)] * xr[7];
            qr += bits;
            xr += 8;
        }
        acc[r] = a;
    }
}

#if defined(TC_ARCH_ARMV6M) && defined(TC_V6M_ASM)
/* 4-bit rows without a pair table on ARMv6-M (scratch == NULL, short per-channel rows): per
 * index byte LDRB, the low index by LSLS/LSRS and the high one by LSRS, two LDRSB of codebook
 * entries, two LDRSB of inputs (register offset: one running index, the input and the input
 * + 1 as bases), two MULS, two ADD into r8, one index step: 12 instructions per 2 MACs + 2 per
 * group of 8 (6.25 per MAC; the C loop: ~10). Eight low registers, as fc_pairs_row4. */
#define TC_FC_V6M_LOOK(j)                                                                     \
    "ldrb %[b], [%[q], #" #j "]\n\t"                                                          \
    "lsls %[t], %[b], #28\n\t"                                                                \
    "lsrs %[t], %[t], #28\n\t"                                                                \
    "ldrsb %[w], [%[cb], %[t]]\n\t"                                                           \
    "ldrsb %[t], [%[x0], %[i]]\n\t"                                                           \
    "muls %[w], %[t], %[w]\n\t"                                                               \
    "add %[acc], %[w]\n\t"                                                                    \
    "lsrs %[b], %[b], #4\n\t"                                                                 \
    "ldrsb %[w], [%[cb], %[b]]\n\t"                                                           \
    "ldrsb %[t], [%[x1], %[i]]\n\t"                                                           \
    "muls %[w], %[t], %[w]\n\t"                                                               \
    "add %[acc], %[w]\n\t"                                                                    \
    "adds %[i], #2\n\t"
TC_NOINLINE static int32_t fc_look4_row_v6m(const uint8_t *q, const int8_t *cb, const int8_t *x,
                                            int32_t groups)
{
    register int32_t acc __asm__("r8") = 0;
    const int8_t *x0 = x + 8 * groups, *x1 = x0 + 1;
    int32_t i = -8 * groups;
    uint32_t b, t, w;
    if (groups > 0) {
        __asm__ volatile(".syntax unified\n"
                         "1:\n\t" TC_FC_V6M_LOOK(0) TC_FC_V6M_LOOK(1) TC_FC_V6M_LOOK(2)
                         TC_FC_V6M_LOOK(3)
                         "adds %[q], #4\n\t"
                         "cmp %[i], #0\n\t"
                         "bne 1b\n"
                         : [acc] "+r"(acc), [q] "+l"(q), [i] "+l"(i), [b] "=&l"(b), [t] "=&l"(t),
                           [w] "=&l"(w)
                         : [cb] "l"(cb), [x0] "l"(x0), [x1] "l"(x1)
                         : "cc", "memory");
    }
    return acc;
}
/* 4-bit rows against the compact split tables on ARMv6-M, the input read as int8 (no widened
 * copy): per pair field LDRB, two LDRSB from the tables, two LDRSB of inputs (one running
 * index, stepped between them), two MULS, two ADD into r8: 11 instructions per 2 MACs. */
#define TC_FC_V6M_SPLIT(j)                                                                    \
    "ldrb %[f], [%[q], #" #j "]\n\t"                                                          \
    "ldrsb %[w], [%[lo], %[f]]\n\t"                                                           \
    "ldrsb %[t], [%[x], %[i]]\n\t"                                                            \
    "muls %[w], %[t], %[w]\n\t"                                                               \
    "add %[acc], %[w]\n\t"                                                                    \
    "ldrsb %[w], [%[hi], %[f]]\n\t"                                                           \
    "adds %[i], #1\n\t"                                                                       \
    "ldrsb %[t], [%[x], %[i]]\n\t"                                                            \
    "muls %[w], %[t], %[w]\n\t"                                                               \
    "add %[acc], %[w]\n\t"                                                                    \
    "adds %[i], #1\n\t"
TC_NOINLINE static int32_t fc_split4_row_v6m(const uint8_t *q, const int8_t *lo, const int8_t *x,
                                             int32_t groups)
{
    register int32_t acc __asm__("r8") = 0;
    const int8_t *hi = lo + 256, *xe = x + 8 * groups;
    int32_t i = -8 * groups;
    uint32_t f, t, w;
    if (groups > 0) {
        __asm__ volatile(".syntax unified\n"
                         "1:\n\t" TC_FC_V6M_SPLIT(0) TC_FC_V6M_SPLIT(1) TC_FC_V6M_SPLIT(2)
                         TC_FC_V6M_SPLIT(3)
                         "adds %[q], #4\n\t"
                         "cmp %[i], #0\n\t"
                         "bne 1b\n"
                         : [acc] "+r"(acc), [q] "+l"(q), [i] "+l"(i), [f] "=&l"(f), [t] "=&l"(t),
                           [w] "=&l"(w)
                         : [lo] "l"(lo), [hi] "l"(hi), [x] "l"(xe)
                         : "cc", "memory");
    }
    return acc;
}
#define TC_FC_HAVE_LOOK4_V6M 1
#endif
#endif /* TC_ARCH_ARM_DSP */

/* One instance per width, so that field positions are constants. */
TC_NOINLINE static void fc_pairs_any(const uint8_t *const *q, int32_t nr, uint32_t bits,
                                     const uint32_t *tab, const uint32_t *xw, int32_t groups,
                                     int32_t *acc)
{
    switch (bits) {
    case 6:
        fc_pairs_rows(q, nr, 6, tab, xw, groups, acc);
        break;
    case 5:
        fc_pairs_rows(q, nr, 5, tab, xw, groups, acc);
        break;
    case 4:
        fc_pairs_rows(q, nr, 4, tab, xw, groups, acc);
        break;
    case 3:
        fc_pairs_rows(q, nr, 3, tab, xw, groups, acc);
        break;
    case 2:
        fc_pairs_rows(q, nr, 2, tab, xw, groups, acc);
        break;
    default:
        fc_pairs_rows(q, nr, 1, tab, xw, groups, acc);
        break;
    }
}

#if defined(TC_FC_HAVE_FLASH_PAIRS)
/* Flash pair tables without the widened input row in scratch (the arena had no room at this
 * layer), rows longer than one chunk: the input is widened in chunks of TC_FC_XCHUNK groups into
 * xw (the driver's stack buffer, 256 B), each chunk serving every row of the pass through the
 * same row kernels as the full level (fc_pairs_rows). */
#define TC_FC_XCHUNK 16
TC_NOINLINE static void fc_xpairs_any(const uint8_t *const *rows, int32_t nr, uint32_t bits,
                                      const uint32_t *tab, const int8_t *x, int32_t groups,
                                      int32_t *acc, uint32_t *xw)
{
    const uint8_t *rr[TC_FC_PASS];
    int32_t part[TC_FC_PASS];
    int32_t g0, r;
    for (r = 0; r < nr; r++) {
        acc[r] = 0;
        rr[r] = rows[r];
    }
    for (g0 = 0; g0 < groups; g0 += TC_FC_XCHUNK) {
        const int32_t gc = TC_MIN(TC_FC_XCHUNK, groups - g0);
        fc_widen_pairs(x + 8 * g0, 8 * gc, xw);
        fc_pairs_any(rr, nr, bits, tab, xw, gc, part);
        for (r = 0; r < nr; r++) {
            acc[r] += part[r];
            rr[r] += gc * (int32_t)bits;
        }
    }
}
#endif

TC_NOINLINE static void fc_lookup_any(const uint8_t *q, int32_t rb, int32_t nr, uint32_t bits,
                                      const int8_t *cb, const int8_t *x, int32_t groups,
                                      int32_t *acc)
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
#if defined(TC_FC_HAVE_LOOK4_V6M)
        {
            int32_t r;
            for (r = 0; r < nr; r++) {
                acc[r] = fc_look4_row_v6m(q + r * rb, cb, x, groups);
            }
        }
#else
        fc_lookup_rows(q, rb, nr, 4, cb, x, groups, acc);
#endif
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

/* compact level: rows against the split tables, the input as int8 */
#define TC_FC_SPLIT_ROW_FN(name, b)                                                           \
    TC_NOINLINE static int32_t name(const uint8_t *q, const int8_t *lo, const int8_t *x,       \
                                    int32_t groups)                                           \
    {                                                                                         \
        return fc_split_row(q, b, lo, x, groups);                                             \
    }
TC_FC_SPLIT_ROW_FN(fc_split_row1, 1)
TC_FC_SPLIT_ROW_FN(fc_split_row2, 2)
TC_FC_SPLIT_ROW_FN(fc_split_row3, 3)
TC_FC_SPLIT_ROW_FN(fc_split_row5, 5)
#if defined(TC_FC_HAVE_LOOK4_V6M)
#define fc_split_row4 fc_split4_row_v6m
#else
TC_FC_SPLIT_ROW_FN(fc_split_row4, 4)
#endif

TC_NOINLINE static void fc_split_any(const uint8_t *const *rows, int32_t nr, uint32_t bits,
                                     const int8_t *lo, const int8_t *x, int32_t groups,
                                     int32_t *acc)
{
    int32_t r;
#if defined(TC_FC_HAVE_HALF4)
    if (bits == 4) { /* the halfword table (fc_build_half4) */
        fc_half4_rows(rows, nr, lo, x, groups, acc);
        return;
    }
#endif
    for (r = 0; r < nr; r++) {
        acc[r] = bits == 5   ? fc_split_row5(rows[r], lo, x, groups)
                 : bits == 4 ? fc_split_row4(rows[r], lo, x, groups)
                 : bits == 3 ? fc_split_row3(rows[r], lo, x, groups)
                 : bits == 2 ? fc_split_row2(rows[r], lo, x, groups)
                             : fc_split_row1(rows[r], lo, x, groups);
    }
}

TC_NOINLINE static void fc_raw_any(const uint8_t *q, int32_t rb, int32_t nr, const int8_t *x,
                                   int32_t groups, int32_t *acc)
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
#include <immintrin.h>
#define TC_FC_HOST_MAX_IN 2048

/* x86 hosts, 4-bit rows without AVX2: sum(w*x) over n32 (a multiple of 32) weights against
 * the input pre-widened to int16; per 32 weights one 16-byte index load, two pshufb codebook
 * lookups, sign extension and four pmaddwd, accumulated in one register. */
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

/* x86 hosts with AVX2, widths 4 and 8 (the others: fc_host_avx2_narrow below): 32 indices
 * (4*bits bytes) per step as bytes (4 bits: nibbles split and interleaved; 8 bits: loaded); the
 * codebook lookup is vpshufb over 16-entry slices (one for k <= 16, merged by the index's upper
 * bits for larger codebooks); the weights are dotted with the input by vpsignb + vpmaddubsw.
 * Reads bytes [0, 16) (4 bits) or [0, 32) (8 bits) of each step: the caller keeps those inside
 * the stream. */
struct fc_avx2_tabs {
    int32_t slices; /* 16-entry slices of a codebook */
};
struct fc_avx2_cb {
    const int8_t *src; /* 16-entry slices of the codebook: the codebook itself, or pad */
    int8_t pad[256];   /* a zero-padded copy, for a codebook too close to the array's end */
};

static void fc_avx2_setup(struct fc_avx2_tabs *t, uint32_t bits)
{
    t->slices = bits >= 8 ? 16 : bits > 4 ? 1 << (bits - 4) : 1;
}

/* a codebook's slices: read in place while all of them stay below cb_end (entries past the k
 * of the codebook are never selected: indices are < k), else from a zero-padded copy */
static void fc_avx2_set_cb(struct fc_avx2_cb *c, int32_t slices, const int8_t *cb, int32_t k,
                           const int8_t *cb_end)
{
    int32_t i;
    if (cb + 16 * slices <= cb_end) {
        c->src = cb;
        return;
    }
    for (i = 0; i < 16 * slices; i++) {
        c->pad[i] = i < k ? cb[i] : 0;
    }
    c->src = c->pad;
}

/* the 32 indices of the step at p as bytes, in the order 0-7, 16-23, 8-15, 24-31 (the input
 * blocks of fc_prep_blocks are stored in the same order) */
__attribute__((target("avx2"), always_inline)) static inline __m256i fc_avx2_indices(const struct fc_avx2_tabs *t,
                                                                      const uint8_t *p, uint32_t bits)
{
    if (bits == 8) {
        return _mm256_permute4x64_epi64(_mm256_loadu_si256((const __m256i *)(const void *)p), 0xD8);
    }
    {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        const __m128i m = _mm_set1_epi8(0x0F);
        const __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
        /* indices 0-7, 16-23 | 8-15, 24-31 */
        const __m128i a = _mm_unpacklo_epi8(lo, hi), b = _mm_unpackhi_epi8(lo, hi);
        (void)t;
        return _mm256_set_m128i(_mm_unpackhi_epi64(a, b), _mm_unpacklo_epi64(a, b));
    }
}

/* codebook entries of 32 index bytes: vpshufb reads an index's low 4 bits (bit 7 is 0 here),
 * the slices are then merged by index bits 4, 5, 6, 7 (each moved to bit 7 for vpblendvb) */
#define TC_AVX2_SEL(a, b, idx, bit) _mm256_blendv_epi8((a), (b), _mm256_slli_epi16((idx), 7 - (bit)))
#define TC_AVX2_SLICE(c, s) _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)((c)->src + 16 * (s))))
__attribute__((target("avx2"), always_inline)) static inline __m256i fc_avx2_lookup(const struct fc_avx2_cb *t,
                                                                     __m256i idx, int32_t slices)
{
    __m256i r0, r1, r2 = idx, r3 = idx, lk;
    int32_t s;
    if (slices == 1) {
        return _mm256_shuffle_epi8(TC_AVX2_SLICE(t, 0), idx);
    }
    if (slices == 2) {
        return TC_AVX2_SEL(_mm256_shuffle_epi8(TC_AVX2_SLICE(t, 0), idx),
                           _mm256_shuffle_epi8(TC_AVX2_SLICE(t, 1), idx), idx, 4);
    }
    /* 8-bit indices: vpshufb would return 0 for indices >= 128 (bit 7), clear it for the lookups */
    lk = slices == 16 ? _mm256_and_si256(idx, _mm256_set1_epi8(0x7F)) : idx;
    for (s = 0; s < slices; s += 4) { /* four slices per pass, merged by bits 4 and 5 */
        r0 = TC_AVX2_SEL(_mm256_shuffle_epi8(TC_AVX2_SLICE(t, s), lk),
                         _mm256_shuffle_epi8(TC_AVX2_SLICE(t, s + 1), lk), idx, 4);
        r1 = TC_AVX2_SEL(_mm256_shuffle_epi8(TC_AVX2_SLICE(t, s + 2), lk),
                         _mm256_shuffle_epi8(TC_AVX2_SLICE(t, s + 3), lk), idx, 4);
        r0 = TC_AVX2_SEL(r0, r1, idx, 5);
        if (s == 0) {
            r2 = r0;
        } else if (s == 4) {
            r2 = TC_AVX2_SEL(r2, r0, idx, 6);
        } else if (s == 8) {
            r3 = r0;
        } else {
            r3 = TC_AVX2_SEL(r3, r0, idx, 6);
        }
    }
    return slices == 16 ? TC_AVX2_SEL(r2, r3, idx, 7) : r2;
}

/* sum(w*x) over steps*32 weights of the row at p. The input comes as its signs (xs: the int8
 * x) and magnitudes (xa: |x| as uint8), both in the block order of the indices; w*x = |x| *
 * (w * sign(x)) is one vpsignb and one vpmaddubsw (pairs of products: |sum| <= 2*128*127, no
 * saturation, given the caller has excluded weights of -128), then vpmaddwd by 1 to int32. */
__attribute__((target("avx2"), always_inline)) static inline int32_t fc_dot_avx2(const struct fc_avx2_tabs *t,
                                                           const struct fc_avx2_cb *c,
                                                           const uint8_t *p, uint32_t bits,
                                                           const int8_t *xs, const uint8_t *xa, int32_t steps)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc = _mm256_setzero_si256();
    const int32_t slices = bits >= 8 ? 16 : bits > 4 ? 1 << (bits - 4) : 1;
    int32_t i;
    __m128i r;
    for (i = 0; i < steps; i++) {
        const __m256i w = fc_avx2_lookup(c, fc_avx2_indices(t, p, bits), slices);
        const __m256i s8 = _mm256_loadu_si256((const __m256i *)(const void *)(xs + 32 * i));
        const __m256i a8 = _mm256_loadu_si256((const __m256i *)(const void *)(xa + 32 * i));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a8, _mm256_sign_epi8(w, s8)), ones));
        p += 4 * bits;
    }
    r = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    r = _mm_add_epi32(r, _mm_srli_si128(r, 8));
    r = _mm_add_epi32(r, _mm_srli_si128(r, 4));
    return _mm_cvtsi128_si32(r);
}

/* four rows `rb` bytes apart sharing the input loads; sums to out[0..3] */
__attribute__((target("avx2"), always_inline)) static inline void fc_dot4_avx2(const struct fc_avx2_tabs *t,
                                                         const struct fc_avx2_cb *c,
                                                         const uint8_t *p, int32_t rb, uint32_t bits,
                                                         const int8_t *xs, const uint8_t *xa,
                                                         int32_t steps, int32_t *out, int same)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    const int32_t slices = bits >= 8 ? 16 : bits > 4 ? 1 << (bits - 4) : 1;
    int32_t i;
    __m128i r;
#define TC_FC_AVX2_ROW(acc, q, cbs)                                                           \
    do {                                                                                      \
        const __m256i w_ = fc_avx2_lookup((cbs), fc_avx2_indices(t, (q), bits), slices);      \
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a8, _mm256_sign_epi8(w_, s8)), ones)); \
    } while (0)
    for (i = 0; i < steps; i++) {
        const __m256i s8 = _mm256_loadu_si256((const __m256i *)(const void *)(xs + 32 * i));
        const __m256i a8 = _mm256_loadu_si256((const __m256i *)(const void *)(xa + 32 * i));
        TC_FC_AVX2_ROW(a0, p, c);
        TC_FC_AVX2_ROW(a1, p + rb, same ? c : c + 1);
        TC_FC_AVX2_ROW(a2, p + 2 * rb, same ? c : c + 2);
        TC_FC_AVX2_ROW(a3, p + 3 * rb, same ? c : c + 3);
        p += 4 * bits;
    }
#undef TC_FC_AVX2_ROW
    /* horizontal sums of the four accumulators at once */
    a0 = _mm256_hadd_epi32(a0, a1);
    a2 = _mm256_hadd_epi32(a2, a3);
    a0 = _mm256_hadd_epi32(a0, a2);
    r = _mm_add_epi32(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
    _mm_storeu_si128((__m128i *)(void *)out, r);
}

#define TC_FC_DOT4_AVX2(b)                                                                    \
    __attribute__((target("avx2"))) static void fc_dot4_avx2_##b(                             \
        const struct fc_avx2_tabs *t, const struct fc_avx2_cb *c, const uint8_t *p,           \
        int32_t rb, const int8_t *xs, const uint8_t *xa, int32_t steps, int32_t *out,         \
        int same)                                                                             \
    {                                                                                         \
        if (same) { /* one codebook for the four rows: its slices loaded once per step */     \
            fc_dot4_avx2(t, c, p, rb, b, xs, xa, steps, out, 1);                              \
        } else {                                                                              \
            fc_dot4_avx2(t, c, p, rb, b, xs, xa, steps, out, 0);                              \
        }                                                                                     \
    }
TC_FC_DOT4_AVX2(4)
TC_FC_DOT4_AVX2(8)

typedef void (*fc_dot4_avx2_fn)(const struct fc_avx2_tabs *, const struct fc_avx2_cb *,
                                const uint8_t *, int32_t, const int8_t *, const uint8_t *, int32_t,
                                int32_t *, int);
/* widths 4 and 8 (the others: fc_host_avx2_narrow) */
static const fc_dot4_avx2_fn fc_dot4_avx2_by_bits[9] = {
    NULL, NULL, NULL, NULL, fc_dot4_avx2_4, NULL, NULL, NULL, fc_dot4_avx2_8};

/* instances with a constant width, so that the width tests fold */
#define TC_FC_DOT_AVX2(b)                                                                     \
    __attribute__((target("avx2"))) static int32_t fc_dot_avx2_##b(                           \
        const struct fc_avx2_tabs *t, const struct fc_avx2_cb *c, const uint8_t *p,           \
        const int8_t *xs, const uint8_t *xa, int32_t steps)                                   \
    {                                                                                         \
        return fc_dot_avx2(t, c, p, b, xs, xa, steps);                                        \
    }
TC_FC_DOT_AVX2(4)
TC_FC_DOT_AVX2(8)

typedef int32_t (*fc_dot_avx2_fn)(const struct fc_avx2_tabs *, const struct fc_avx2_cb *,
                                  const uint8_t *, const int8_t *, const uint8_t *, int32_t);
static const fc_dot_avx2_fn fc_dot_avx2_by_bits[9] = {
    NULL, NULL, NULL, NULL, fc_dot_avx2_4, NULL, NULL, NULL, fc_dot_avx2_8};

/* raw int8 weights (any value, -128 included), four rows `rb` apart: 16 weights per step
 * sign-extended (vpmovsxbw) against the input widened to int16 (natural order), vpmaddwd;
 * sums to out[0..nrows) */
__attribute__((target("avx2"))) static void fc_dot4_s8_avx2(const int8_t *w, int32_t rb,
                                                            const int16_t *x16, int32_t steps,
                                                            int32_t nrows, int32_t *out)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    int32_t i;
    __m128i r;
#define TC_FC_S8_ROW(acc, q)                                                                  \
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepi8_epi16(                      \
                                    _mm_loadu_si128((const __m128i *)(const void *)((q) + 16 * i))), xv))
    for (i = 0; i < steps; i++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(x16 + 16 * i));
        TC_FC_S8_ROW(a0, w);
        if (nrows == 4) {
            TC_FC_S8_ROW(a1, w + rb);
            TC_FC_S8_ROW(a2, w + 2 * rb);
            TC_FC_S8_ROW(a3, w + 3 * rb);
        }
    }
#undef TC_FC_S8_ROW
    a0 = _mm256_hadd_epi32(a0, a1);
    a2 = _mm256_hadd_epi32(a2, a3);
    a0 = _mm256_hadd_epi32(a0, a2);
    r = _mm_add_epi32(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
    _mm_storeu_si128((__m128i *)(void *)out, r);
}

static int tc_host_avx2(void)
{
    return __builtin_cpu_supports("avx2");
}
#endif

#ifdef TC_HOST_X86_SIMD
#define TC_FC_HOST_BLOCK 64
/* xs, xa for fc_dot_avx2: the input and its magnitudes, each block of 32 in the order 0-7,
 * 16-23, 8-15, 24-31, zero past n up to the next multiple of 32 (weights there multiply 0) */
__attribute__((target("avx2"))) static void fc_prep_blocks(const int8_t *x, int32_t n, int8_t *xs,
                                                           uint8_t *xa)
{
    int32_t i;
    for (i = 0; i < n; i += 32) {
        int8_t tmp[32];
        const int8_t *src = x + i;
        __m256i v;
        if (i + 32 > n) { /* last partial block, zero-padded */
            int32_t j;
            for (j = 0; j < 32; j++) {
                tmp[j] = i + j < n ? x[i + j] : 0;
            }
            src = tmp;
        }
        v = _mm256_permute4x64_epi64(_mm256_loadu_si256((const __m256i *)(const void *)src), 0xD8);
        _mm256_storeu_si256((__m256i *)(void *)(xs + i), v);
        _mm256_storeu_si256((__m256i *)(void *)(xa + i), _mm256_abs_epi8(v));
    }
}

/* 1 if any codebook byte in [cb, end) is -128 (the sign trick of fc_dot_avx2 excludes it) */
__attribute__((target("avx2"))) static int fc_has_min(const int8_t *cb, const int8_t *end)
{
    const __m256i m = _mm256_set1_epi8(-128);
    for (; cb + 32 <= end; cb += 32) {
        if (_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(const void *)cb), m))) {
            return 1;
        }
    }
    for (; cb < end; cb++) {
        if (*cb == -128) {
            return 1;
        }
    }
    return 0;
}

/* x86 hosts with AVX2, widths 1-3 and 5-7 (fc_host_avx2_narrow): the same 32 weights per step
 * as fc_dot_avx2, with fewer shuffle-port instructions and no per-call codebook set-up:
 *  - decode: two 16-byte broadcast loads (groups 0 and 1 from p, 2 and 3 from p + 2*bits: each
 *    128-bit lane gathers its own group's byte pairs), one vpshufb each; groups 0/1 are cut with
 *    vpmulhuw (the window shifted right by the field's offset, taken from one byte higher when
 *    the offset is 0), groups 2/3 with vpmullw (the field moved to the high byte); one vpblendvb
 *    (low bytes from the first, high bytes from the second) and one mask give 32 clean indices,
 *    in the order 0,16,1,17,..,7,23 | 8,24,..,15,31 (the input is stored in that order);
 *  - lookup: vpshufb over 16-entry slices merged by vpblendvb on index bits 4, 5, 6 (their
 *    masks by byte additions, not shifts); each slice broadcast-loaded from the codebook in
 *    place (entries past k are never selected), or from a zero-padded copy of the codebook
 *    array's last bytes for a codebook whose slices would reach past the array;
 *  - dot: vpsignb + vpmaddubsw + vpmaddwd as fc_dot_avx2 (no -128 in the codebooks).
 * Reads bytes [0, 2*bits + 16) of each step. Measured against fc_dot_avx2 on ad01's 128x640
 * 7-bit layer: 5.6 -> 3.9-4.3 ns per step and row (docs/kernels.md). Tried without gain: an
 * XOR-prefix lookup (vpsubb + vpxor instead of blends), slices pre-broadcast to 32 bytes. */

struct fc_nw_consts {
    __m256i shuf_a, mul_a, shuf_b, mul_b, mask;
};

/* fc_nw_setup's constants per width (group 0's lane; group 1's bytes are `bits` higher), from
 * field k = bits*k: byte b = (bits*k)/8, offset o = (bits*k)%8. shuf_b: the window (b, b+1),
 * mul_b = 2^(8-o) (field to the high byte). shuf_a: the same window, mul_a = 2^(16-o) (high
 * half = window >> o), except o = 0: window (zero, b), mul_a = 2^8. */
static const int8_t fc_nw_shuf_a[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {-128, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1},
    {-128, 0, 0, 1, 0, 1, 0, 1, -128, 1, 1, 2, 1, 2, 1, 2},
    {-128, 0, 0, 1, 0, 1, 1, 2, 1, 2, 1, 2, 2, 3, 2, 3},
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {-128, 0, 0, 1, 1, 2, 1, 2, 2, 3, 3, 4, 3, 4, 4, 5},
    {-128, 0, 0, 1, 1, 2, 2, 3, -128, 3, 3, 4, 4, 5, 5, 6},
    {-128, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7}};
static const int8_t fc_nw_shuf_b[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1},
    {0, 1, 0, 1, 0, 1, 0, 1, 1, 2, 1, 2, 1, 2, 1, 2},
    {0, 1, 0, 1, 0, 1, 1, 2, 1, 2, 1, 2, 2, 3, 2, 3},
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {0, 1, 0, 1, 1, 2, 1, 2, 2, 3, 3, 4, 3, 4, 4, 5},
    {0, 1, 0, 1, 1, 2, 2, 3, 3, 4, 3, 4, 4, 5, 5, 6},
    {0, 1, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7}};
static const uint16_t fc_nw_mul_a[8][8] = {
    {0, 0, 0, 0, 0, 0, 0, 0},
    {256, 32768, 16384, 8192, 4096, 2048, 1024, 512},
    {256, 16384, 4096, 1024, 256, 16384, 4096, 1024},
    {256, 8192, 1024, 32768, 4096, 512, 16384, 2048},
    {0, 0, 0, 0, 0, 0, 0, 0},
    {256, 2048, 16384, 512, 4096, 32768, 1024, 8192},
    {256, 1024, 4096, 16384, 256, 1024, 4096, 16384},
    {256, 512, 1024, 2048, 4096, 8192, 16384, 32768}};
static const uint16_t fc_nw_mul_b[8][8] = {
    {0, 0, 0, 0, 0, 0, 0, 0},
    {256, 128, 64, 32, 16, 8, 4, 2},
    {256, 64, 16, 4, 256, 64, 16, 4},
    {256, 32, 4, 128, 16, 2, 64, 8},
    {0, 0, 0, 0, 0, 0, 0, 0},
    {256, 8, 64, 2, 16, 128, 4, 32},
    {256, 4, 16, 64, 256, 4, 16, 64},
    {256, 2, 4, 8, 16, 32, 64, 128}};

__attribute__((target("avx2"))) static void fc_nw_setup(struct fc_nw_consts *d, uint32_t bits)
{
    /* group 1 (high lane) is `bits` bytes on; a zeroing index (-128) stays negative */
    const __m256i lane1 = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, (char)bits,
                                           (char)bits, (char)bits, (char)bits, (char)bits, (char)bits,
                                           (char)bits, (char)bits, (char)bits, (char)bits, (char)bits,
                                           (char)bits, (char)bits, (char)bits, (char)bits, (char)bits);
#define TC_FC_NW_BOTH(a) _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(a)))
    d->shuf_a = _mm256_add_epi8(TC_FC_NW_BOTH(fc_nw_shuf_a[bits]), lane1);
    d->shuf_b = _mm256_add_epi8(TC_FC_NW_BOTH(fc_nw_shuf_b[bits]), lane1);
    d->mul_a = TC_FC_NW_BOTH(fc_nw_mul_a[bits]);
    d->mul_b = TC_FC_NW_BOTH(fc_nw_mul_b[bits]);
    d->mask = _mm256_set1_epi8((char)((1u << bits) - 1u));
#undef TC_FC_NW_BOTH
}

/* the input blocks of 32 in the decode's order (see above), zero past n; xa = |xs| */
__attribute__((target("avx2"))) static void fc_nw_prep_x(const int8_t *x, int32_t n, int8_t *xs,
                                                         uint8_t *xa)
{
    const __m256i perm = _mm256_setr_epi8(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15,
                                          0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    int32_t i;
    for (i = 0; i < n; i += 32) {
        int8_t tmp[32];
        const int8_t *src = x + i;
        __m256i v;
        if (i + 32 > n) {
            memset(tmp, 0, sizeof(tmp));
            memcpy(tmp, src, (size_t)(n - i));
            src = tmp;
        }
        /* 64-bit groups 0 2 | 1 3, then within each lane the bytes of its two groups interleaved */
        v = _mm256_permute4x64_epi64(_mm256_loadu_si256((const __m256i *)(const void *)src), 0xD8);
        v = _mm256_shuffle_epi8(v, perm);
        _mm256_storeu_si256((__m256i *)(void *)(xs + i), v);
        _mm256_storeu_si256((__m256i *)(void *)(xa + i), _mm256_abs_epi8(v));
    }
}

/* 32 indices of the step at p (see above) */
__attribute__((target("avx2"), always_inline)) static inline __m256i fc_nw_indices(const struct fc_nw_consts *d,
                                                                    const uint8_t *p, uint32_t bits)
{
    const __m256i s01 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)p));
    const __m256i s23 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * bits)));
    const __m256i a = _mm256_mulhi_epu16(_mm256_shuffle_epi8(s01, d->shuf_a), d->mul_a);
    const __m256i b = _mm256_mullo_epi16(_mm256_shuffle_epi8(s23, d->shuf_b), d->mul_b);
    return _mm256_and_si256(_mm256_blendv_epi8(a, b, _mm256_set1_epi16((short)0x8000)), d->mask);
}

/* the weights of 32 clean indices (bit 7 clear) from the codebook's 16-entry slices at t (each
 * broadcast to both 128-bit lanes by its load) */
#define TC_FC_NW_SLICE(t, s) _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)((t) + 16 * (s))))
__attribute__((target("avx2"), always_inline)) static inline __m256i fc_nw_lookup(const int8_t *t, __m256i i,
                                                                   int32_t slices)
{
    __m256i i1, i2, i3, r0, r1, r2, r3;
    if (slices == 1) {
        return _mm256_shuffle_epi8(TC_FC_NW_SLICE(t, 0), i);
    }
    i1 = _mm256_add_epi8(i, i);   /* index bit 6 at bit 7 */
    i2 = _mm256_add_epi8(i1, i1); /* bit 5 */
    i3 = _mm256_add_epi8(i2, i2); /* bit 4 */
    r0 = _mm256_blendv_epi8(_mm256_shuffle_epi8(TC_FC_NW_SLICE(t, 0), i), _mm256_shuffle_epi8(TC_FC_NW_SLICE(t, 1), i), i3);
    if (slices == 2) {
        return r0;
    }
    r1 = _mm256_blendv_epi8(_mm256_shuffle_epi8(TC_FC_NW_SLICE(t, 2), i), _mm256_shuffle_epi8(TC_FC_NW_SLICE(t, 3), i), i3);
    r0 = _mm256_blendv_epi8(r0, r1, i2);
    if (slices == 4) {
        return r0;
    }
    r2 = _mm256_blendv_epi8(_mm256_shuffle_epi8(TC_FC_NW_SLICE(t, 4), i), _mm256_shuffle_epi8(TC_FC_NW_SLICE(t, 5), i), i3);
    r3 = _mm256_blendv_epi8(_mm256_shuffle_epi8(TC_FC_NW_SLICE(t, 6), i), _mm256_shuffle_epi8(TC_FC_NW_SLICE(t, 7), i), i3);
    r2 = _mm256_blendv_epi8(r2, r3, i2);
    return _mm256_blendv_epi8(r0, r2, i1);
}
#undef TC_FC_NW_SLICE

#define TC_FC_NW_SLICES(bits) ((bits) > 4 ? 1 << ((bits) - 4) : 1)

/* Four rows at a time, npass passes: rows 4q..4q+3 of p (`rb` bytes apart, steps whole steps
 * each) with the codebook slices of row j at t[j]; sums to out[0..4*npass). The four rows go
 * phase by phase (decode all, look up all, dot all): measured faster than row after row, whose
 * long dependency chains stall the vector scheduler. One call per block of outputs keeps the
 * constants in registers. The slices are read inside the loop (vpshufb operands), hidden from
 * GCC, which would otherwise hoist all 4*slices of them out of the short loop into spilled
 * copies. */
__attribute__((always_inline)) static inline const int8_t *fc_nw_opaque(const int8_t *t)
{
    __asm__("" : "+r"(t));
    return t;
}
#define TC_FC_NW_DOT(acc, w)                                                                  \
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a8, _mm256_sign_epi8(w, s8)), ones))
__attribute__((target("avx2"), always_inline)) static inline void fc_nw_rows4(const struct fc_nw_consts *d,
                                                               const int8_t *const *t, const uint8_t *p,
                                                               int32_t rb, uint32_t bits, int32_t npass,
                                                               const int8_t *xs, const uint8_t *xa,
                                                               int32_t steps, int32_t *out)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const int32_t slices = TC_FC_NW_SLICES(bits);
    int32_t q, i;
    for (q = 0; q < npass; q++) {
        const uint8_t *pq = p + (int64_t)4 * q * rb;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (i = 0; i < steps; i++) {
            const __m256i s8 = _mm256_loadu_si256((const __m256i *)(const void *)(xs + 32 * i));
            const __m256i a8 = _mm256_loadu_si256((const __m256i *)(const void *)(xa + 32 * i));
            __m256i w0 = fc_nw_indices(d, pq, bits), w1 = fc_nw_indices(d, pq + rb, bits);
            __m256i w2 = fc_nw_indices(d, pq + 2 * rb, bits), w3 = fc_nw_indices(d, pq + 3 * rb, bits);
            w0 = fc_nw_lookup(fc_nw_opaque(t[4 * q]), w0, slices);
            w1 = fc_nw_lookup(fc_nw_opaque(t[4 * q + 1]), w1, slices);
            w2 = fc_nw_lookup(fc_nw_opaque(t[4 * q + 2]), w2, slices);
            w3 = fc_nw_lookup(fc_nw_opaque(t[4 * q + 3]), w3, slices);
            TC_FC_NW_DOT(a0, w0);
            TC_FC_NW_DOT(a1, w1);
            TC_FC_NW_DOT(a2, w2);
            TC_FC_NW_DOT(a3, w3);
            pq += 4 * bits;
        }
        a0 = _mm256_hadd_epi32(a0, a1);
        a2 = _mm256_hadd_epi32(a2, a3);
        a0 = _mm256_hadd_epi32(a0, a2);
        _mm_storeu_si128((__m128i *)(void *)(out + 4 * q),
                         _mm_add_epi32(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1)));
    }
}

/* one row, steps whole steps */
__attribute__((target("avx2"), always_inline)) static inline int32_t fc_nw_row(const struct fc_nw_consts *d,
                                                                const int8_t *t, const uint8_t *p,
                                                                uint32_t bits, const int8_t *xs,
                                                                const uint8_t *xa, int32_t steps)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const int32_t slices = TC_FC_NW_SLICES(bits);
    __m256i a0 = _mm256_setzero_si256();
    __m128i r;
    int32_t i;
    for (i = 0; i < steps; i++) {
        const __m256i s8 = _mm256_loadu_si256((const __m256i *)(const void *)(xs + 32 * i));
        const __m256i a8 = _mm256_loadu_si256((const __m256i *)(const void *)(xa + 32 * i));
        const __m256i w0 = fc_nw_lookup(fc_nw_opaque(t), fc_nw_indices(d, p, bits), slices);
        TC_FC_NW_DOT(a0, w0);
        p += 4 * bits;
    }
    r = _mm_add_epi32(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
    r = _mm_add_epi32(r, _mm_srli_si128(r, 8));
    r = _mm_add_epi32(r, _mm_srli_si128(r, 4));
    return _mm_cvtsi128_si32(r);
}
#undef TC_FC_NW_DOT

/* rows of exactly 8 weights (one group; rows `bits` bytes apart): the step at p holds rows
 * 0..3 as its groups 0..3, one decode and one lookup for the four when they share a codebook
 * (t). The input of fc_nw_prep_x8: x (its 8 values) in every byte pair of s8; |x| at the even
 * bytes of ae (the pair's first index: groups 0 and 1) and at the odd bytes of ao (groups 2
 * and 3), so that vpmaddubsw keeps the rows apart. Sums to out[0..4). */
__attribute__((target("avx2"), always_inline)) static inline void fc_nw_rows8(const struct fc_nw_consts *d,
                                                               const int8_t *t, const uint8_t *p,
                                                               uint32_t bits, __m256i s8, __m256i ae,
                                                               __m256i ao, int32_t *out)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i w = _mm256_sign_epi8(fc_nw_lookup(t, fc_nw_indices(d, p, bits), TC_FC_NW_SLICES(bits)), s8);
    const __m256i v0 = _mm256_madd_epi16(_mm256_maddubs_epi16(ae, w), ones); /* rows 0 | 1 */
    const __m256i v1 = _mm256_madd_epi16(_mm256_maddubs_epi16(ao, w), ones); /* rows 2 | 3 */
    __m256i h = _mm256_hadd_epi32(v0, v1);
    h = _mm256_hadd_epi32(h, h); /* row 0, 2, 0, 2 | 1, 3, 1, 3 */
    h = _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5));
    _mm_storeu_si128((__m128i *)(void *)out, _mm256_castsi256_si128(h));
}

/* instances per width (constant bits and slices) */
#define TC_FC_NW_FN(b)                                                                        \
    __attribute__((target("avx2"))) static void fc_nw_rows4_##b(                              \
        const struct fc_nw_consts *d, const int8_t *const *t, const uint8_t *p, int32_t rb,   \
        int32_t npass, const int8_t *xs, const uint8_t *xa, int32_t steps, int32_t *out)      \
    {                                                                                         \
        fc_nw_rows4(d, t, p, rb, b, npass, xs, xa, steps, out);                               \
    }                                                                                         \
    __attribute__((target("avx2"))) static int32_t fc_nw_row_##b(                             \
        const struct fc_nw_consts *d, const int8_t *t, const uint8_t *p, const int8_t *xs,    \
        const uint8_t *xa, int32_t steps)                                                     \
    {                                                                                         \
        return fc_nw_row(d, t, p, b, xs, xa, steps);                                          \
    }                                                                                         \
    __attribute__((target("avx2"))) static void fc_nw_rows8_##b(                              \
        const struct fc_nw_consts *d, const int8_t *const *t, const uint8_t *p, int32_t nr,   \
        const int8_t *xs, const uint8_t *xa, int32_t *out)                                    \
    {                                                                                         \
        const __m256i s8 = _mm256_loadu_si256((const __m256i *)(const void *)xs);             \
        const __m256i ae = _mm256_loadu_si256((const __m256i *)(const void *)xa);             \
        const __m256i ao = _mm256_loadu_si256((const __m256i *)(const void *)(xa + 32));      \
        int32_t r;                                                                            \
        for (r = 0; r < nr; r += 4) {                                                         \
            fc_nw_rows8(d, fc_nw_opaque(t[r]), p + r * b, b, s8, ae, ao, out + r);            \
        }                                                                                     \
    }
TC_FC_NW_FN(1)
TC_FC_NW_FN(2)
TC_FC_NW_FN(3)
TC_FC_NW_FN(5)
TC_FC_NW_FN(6)
TC_FC_NW_FN(7)

typedef void (*fc_nw_rows4_fn)(const struct fc_nw_consts *, const int8_t *const *, const uint8_t *,
                               int32_t, int32_t, const int8_t *, const uint8_t *, int32_t, int32_t *);
typedef int32_t (*fc_nw_row_fn)(const struct fc_nw_consts *, const int8_t *, const uint8_t *,
                                const int8_t *, const uint8_t *, int32_t);
static const fc_nw_rows4_fn fc_nw_rows4_by_bits[8] = {
    NULL, fc_nw_rows4_1, fc_nw_rows4_2, fc_nw_rows4_3, NULL, fc_nw_rows4_5, fc_nw_rows4_6, fc_nw_rows4_7};
static const fc_nw_row_fn fc_nw_row_by_bits[8] = {
    NULL, fc_nw_row_1, fc_nw_row_2, fc_nw_row_3, NULL, fc_nw_row_5, fc_nw_row_6, fc_nw_row_7};
typedef void (*fc_nw_rows8_fn)(const struct fc_nw_consts *, const int8_t *const *, const uint8_t *,
                               int32_t, const int8_t *, const uint8_t *, int32_t *);
static const fc_nw_rows8_fn fc_nw_rows8_by_bits[8] = {
    NULL, fc_nw_rows8_1, fc_nw_rows8_2, fc_nw_rows8_3, NULL, fc_nw_rows8_5, fc_nw_rows8_6, fc_nw_rows8_7};

/* fc_host_avx2's body for widths 1-3 and 5-7 (the layer qualified there: rows on byte
 * boundaries, input offset folded, no -128 in the codebooks); xs, xa: TC_FC_HOST_MAX_IN bytes
 * each; cb_end: the end of the readable codebook array. Per block of 64 outputs, one call for
 * its passes of four rows (each row with its own codebook), single rows where whole steps would
 * read past the stream. Codebooks are read in place (entries past a codebook's k are never
 * selected); a codebook whose slices reach past cb_end is read from a zero-padded local copy
 * of the array's last bytes. */
__attribute__((target("avx2"), noinline)) static void fc_host_avx2_narrow(
    const tc_fc_packed_params *p, const int8_t *input, const uint8_t *packed, const int8_t *codebooks,
    const uint8_t *codebook_map, const void *bias, const int32_t *mult, const int8_t *shift,
    int8_t *output, int8_t *xs, uint8_t *xa, const int8_t *cb_end)
{
    const int32_t n = p->in_features, out_f = p->out_features;
    const uint32_t bits = p->bits;
    const int32_t slices = TC_FC_NW_SLICES(bits);
    const int32_t rb = (int32_t)(((uint32_t)n * bits) >> 3);
    const int64_t stream = ((int64_t)out_f * n * bits + 7) / 8;
    const int32_t steps = (n + 31) >> 5;
    const int32_t reach = 2 * (int32_t)bits + 16; /* bytes a step reads past its start */
    const int32_t stride = p->codebook_stride;
    const fc_nw_rows4_fn rows4_fn = fc_nw_rows4_by_bits[bits];
    const fc_nw_row_fn row_fn = fc_nw_row_by_bits[bits];
    const fc_nw_rows8_fn rows8_fn = fc_nw_rows8_by_bits[bits];
    int8_t x8[64];  /* rows of 8 weights: fc_nw_rows8's s8 (32 bytes) */
    uint8_t a8[64]; /* ... and its ae | ao */
    /* the array's last 16*slices bytes (or all of it), then zeros */
    const int8_t *tail = cb_end - codebooks < 16 * slices ? codebooks : cb_end - 16 * slices;
    int8_t tail_copy[256];
    int tail_ready = 0;
    const int8_t *t[TC_FC_HOST_BLOCK];
    struct fc_nw_consts d;
    int32_t acc[TC_FC_HOST_BLOCK];
    int32_t b, c, r, i;
    fc_nw_setup(&d, bits);
    for (b = 0; b < p->batches; b++) {
        const int8_t *x = input + (int32_t)b * n;
        uint32_t fo_term = 0;
        if (p->filter_offset != 0) {
            int32_t xsum = 0;
            for (i = 0; i < n; i++) {
                xsum += x[i];
            }
            fo_term = (uint32_t)p->filter_offset * (uint32_t)xsum;
        }
        fc_nw_prep_x(x, n, xs, xa);
        if (n == 8) { /* x0 x0 x1 x1 .. x7 x7 in both lanes; |x| at even / odd bytes */
            const __m256i v = _mm256_shuffle_epi8(
                _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(const void *)x)),
                _mm256_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4,
                                 5, 5, 6, 6, 7, 7));
            const __m256i av = _mm256_abs_epi8(v);
            _mm256_storeu_si256((__m256i *)(void *)x8, v);
            _mm256_storeu_si256((__m256i *)(void *)a8, _mm256_and_si256(av, _mm256_set1_epi16(0x00FF)));
            _mm256_storeu_si256((__m256i *)(void *)(a8 + 32), _mm256_and_si256(av, _mm256_set1_epi16((short)0xFF00)));
        }
        for (c = 0; c < out_f; c += TC_FC_HOST_BLOCK) {
            const int32_t cnt = TC_MIN(TC_FC_HOST_BLOCK, out_f - c);
            int32_t npass = 0;
            for (r = 0; r < cnt; r++) { /* each row's codebook slices */
                const int32_t ch = c + r;
                const int32_t cbi = codebook_map != NULL ? (int32_t)codebook_map[ch] : ch;
                const int8_t *cb = codebooks + stride * cbi; /* stride 0: per-tensor */
                t[r] = cb;
                if (cb_end - cb < 16 * slices) {
                    if (!tail_ready) { /* (made when first needed) */
                        memset(tail_copy, 0, sizeof(tail_copy));
                        memcpy(tail_copy, tail, (size_t)(cb_end - tail));
                        tail_ready = 1;
                    }
                    t[r] = tail_copy + (cb - tail);
                }
            }
            if (n == 8) { /* four rows per step where they share a codebook */
                for (npass = 0; 4 * npass + 4 <= cnt; npass++) {
                    const int32_t r0 = 4 * npass;
                    const uint8_t *q = packed + (int64_t)(c + r0) * rb;
                    if (t[r0] == t[r0 + 1] && t[r0] == t[r0 + 2] && t[r0] == t[r0 + 3] &&
                        (int64_t)(c + r0) * rb + reach <= stream) {
                        rows8_fn(&d, t + r0, q, 4, x8, a8, acc + r0);
                    } else if (stream - (int64_t)(c + r0 + 3) * rb - reach >= 0) {
                        rows4_fn(&d, t + r0, q, rb, 1, xs, xa, 1, acc + r0);
                    } else {
                        break;
                    }
                }
            } else {
                /* passes of 4 rows whose reads stay inside the stream (the last row's) */
                while (4 * npass + 4 <= cnt &&
                       stream - (int64_t)(c + 4 * npass + 3) * rb - reach >= (int64_t)(steps - 1) * 4 * (int64_t)bits) {
                    npass++;
                }
                rows4_fn(&d, t, packed + (int64_t)c * rb, rb, npass, xs, xa, steps, acc);
            }
            for (r = 4 * npass; r < cnt; r++) { /* single rows, stopping before the stream's end */
                const int32_t ch = c + r;
                const int64_t room = stream - (int64_t)ch * rb - reach;
                const int32_t fit =
                    room < 0 ? 0 : (int32_t)TC_MIN((int64_t)steps, room / (4 * (int64_t)bits) + 1);
                acc[r] = row_fn(&d, t[r], packed + (int64_t)ch * rb, xs, xa, fit);
                if (32 * fit < n) {
                    const int32_t cbi = codebook_map != NULL ? (int32_t)codebook_map[ch] : ch;
                    int32_t ws = 0;
                    acc[r] += fc_row_chunked(packed, (uint32_t)((int64_t)ch * rb * 8 + (int64_t)32 * fit * bits),
                                             bits, codebooks + stride * cbi, x + 32 * fit, n - 32 * fit, 0, &ws);
                }
            }
            /* (after the block: loads right after the kernels' vector stores would stall) */
            for (i = 0; i < cnt; i++) {
                acc[i] = (int32_t)((uint32_t)acc[i] + fo_term + (uint32_t)tc_bias_at(bias, p->bias_bits, c + i));
            }
            tc_requantize_lanes(acc, cnt, mult, shift, p->requant_per_channel, c, p->output_offset,
                                p->act_min, p->act_max, output + (int32_t)b * out_f + c);
        }
    }
}

/* x86 hosts with AVX2 (the caller checks the CPU), rows on byte boundaries and the input
 * offset folded (what the generated code passes): vectorized decode + dot, four rows at a time where they share a
 * codebook, every row in whole steps of 32 weights (the zero-padded input cancels the
 * weights past the row end; only the last rows of the stream stop early, so that nothing past
 * the stream is read), then tc_requantize_lanes() over blocks of 64 outputs. Returns 0
 * (nothing done) when the layer does not qualify. Stack: the widened input (<= 4 KiB). */
__attribute__((target("avx2"))) static int fc_host_avx2(const tc_fc_packed_params *p, const int8_t *input, const uint8_t *packed,
                        const int8_t *codebooks, const uint8_t *codebook_map,
                        const void *bias, const int32_t *mult, const int8_t *shift,
                        int8_t *output)
{
    const int32_t n = p->in_features, out_f = p->out_features;
    const uint32_t bits = p->bits;
    const int32_t rb = (int32_t)(((uint32_t)n * bits) >> 3);
    const int64_t stream = ((int64_t)out_f * n * bits + 7) / 8;
    const int32_t steps = (n + 31) >> 5;
    /* the bytes a step reads past its start (widths 4 and 8; fc_host_avx2_narrow has its own) */
    const int32_t reach = bits == 8 ? 32 : 16;
    int16_t xbuf[TC_FC_HOST_MAX_IN]; /* xs | xa, or the input as int16 for raw weights */
    int8_t *xs = (int8_t *)(void *)xbuf;
    uint8_t *xa = (uint8_t *)(void *)(xs + TC_FC_HOST_MAX_IN);
    struct fc_avx2_tabs t;
    struct fc_avx2_cb cbs[4]; /* the codebooks of the (up to) 4 rows of a pass */
    const int8_t *cb_of[4] = {NULL, NULL, NULL, NULL};
    const int8_t *cb_end;
    int32_t acc[TC_FC_HOST_BLOCK];
    int32_t b, c, r;
    if (p->input_offset != 0 || (((uint32_t)n * bits) & 7u) != 0 || n > TC_FC_HOST_MAX_IN) {
        return 0;
    }
    if (codebooks == NULL) { /* raw int8 weights */
        const int8_t *w0 = (const int8_t *)(const void *)packed;
        const int32_t whole = n >> 4;
        int16_t *x16 = xbuf;
        for (b = 0; b < p->batches; b++) {
            const int8_t *x = input + (int32_t)b * n;
            uint32_t fo_term = 0;
            if (p->filter_offset != 0) {
                int32_t i, xsum = 0;
                for (i = 0; i < n; i++) {
                    xsum += x[i];
                }
                fo_term = (uint32_t)p->filter_offset * (uint32_t)xsum;
            }
            tc_widen_s8_s16(x, n, x16);
            for (c = 0; c < out_f; c += TC_FC_HOST_BLOCK) {
                const int32_t cnt = TC_MIN(TC_FC_HOST_BLOCK, out_f - c);
                for (r = 0; r < cnt;) {
                    const int32_t ch = c + r;
                    const int32_t k = r + 4 <= cnt ? 4 : 1;
                    int32_t four[4], j, i;
                    fc_dot4_s8_avx2(w0 + (int64_t)ch * n, n, x16, whole, k, four);
                    for (j = 0; j < k; j++, r++) {
                        const int8_t *w = w0 + (int64_t)(ch + j) * n;
                        for (i = 16 * whole; i < n; i++) {
                            four[j] += w[i] * x[i];
                        }
                        acc[r] = (int32_t)((uint32_t)four[j] + fo_term +
                                           (uint32_t)tc_bias_at(bias, p->bias_bits, c + r));
                    }
                }
                tc_requantize_lanes(acc, cnt, mult, shift, p->requant_per_channel, c,
                                    p->output_offset, p->act_min, p->act_max,
                                    output + (int32_t)b * out_f + c);
            }
        }
        return 1;
    }
    fc_avx2_setup(&t, bits);
    { /* end of the readable codebook array: the last codebook's k entries, 2^bits for bits <= 4 */
        int32_t last = 0, i;
        if (p->codebook_stride != 0) {
            if (codebook_map == NULL) {
                last = out_f - 1;
            } else { /* the largest map entry, 32 at a time */
                __m256i mx = _mm256_setzero_si256();
                __m128i m2;
                for (i = 0; i + 32 <= out_f; i += 32) {
                    mx = _mm256_max_epu8(mx, _mm256_loadu_si256((const __m256i *)(const void *)(codebook_map + i)));
                }
                m2 = _mm_max_epu8(_mm256_castsi256_si128(mx), _mm256_extracti128_si256(mx, 1));
                m2 = _mm_max_epu8(m2, _mm_srli_si128(m2, 8));
                m2 = _mm_max_epu8(m2, _mm_srli_si128(m2, 4));
                m2 = _mm_max_epu8(m2, _mm_srli_si128(m2, 2));
                m2 = _mm_max_epu8(m2, _mm_srli_si128(m2, 1));
                last = _mm_cvtsi128_si32(m2) & 0xFF;
                for (; i < out_f; i++) {
                    last = TC_MAX(last, (int32_t)codebook_map[i]);
                }
            }
        }
        cb_end = codebooks + (int32_t)p->codebook_stride * last +
                 (bits <= 4 ? TC_MAX((int32_t)1 << bits, (int32_t)p->codebook_size) : p->codebook_size);
    }
    if (fc_has_min(codebooks, cb_end)) {
        return 0; /* a weight of -128 (not from symmetric int8 weights): the portable path */
    }
    if (bits != 4 && bits != 8) {
        fc_host_avx2_narrow(p, input, packed, codebooks, codebook_map, bias, mult, shift, output, xs, xa,
                            cb_end);
        return 1;
    }
    for (b = 0; b < p->batches; b++) {
        const int8_t *x = input + (int32_t)b * n;
        uint32_t fo_term = 0;
        if (p->filter_offset != 0) {
            int32_t i, xsum = 0;
            for (i = 0; i < n; i++) {
                xsum += x[i];
            }
            fo_term = (uint32_t)p->filter_offset * (uint32_t)xsum;
        }
        fc_prep_blocks(x, n, xs, xa);
        for (c = 0; c < out_f; c += TC_FC_HOST_BLOCK) {
            const int32_t cnt = TC_MIN(TC_FC_HOST_BLOCK, out_f - c);
            for (r = 0; r < cnt;) {
                const int32_t ch = c + r;
                const uint8_t *row = packed + (int64_t)ch * rb;
                /* steps whose reads stay inside the stream, for the last of 4 rows from ch */
                const int64_t room4 = stream - (int64_t)(ch + 3) * rb - reach;
                int32_t k = r + 4 <= cnt && room4 >= (int64_t)(steps - 1) * 4 * bits ? 4 : 1;
                int32_t j;
                for (j = 0; j < k; j++) {
                    const int32_t cbi = codebook_map != NULL ? codebook_map[ch + j] : ch + j;
                    const int8_t *cb = codebooks + (int32_t)p->codebook_stride * cbi;
                    if (cb != cb_of[j]) {
                        fc_avx2_set_cb(&cbs[j], t.slices, cb, p->codebook_size, cb_end);
                        cb_of[j] = cb;
                    }
                }
                if (k == 4) {
                    const int same = cbs[0].src == cbs[1].src && cbs[0].src == cbs[2].src &&
                                     cbs[0].src == cbs[3].src;
                    fc_dot4_avx2_by_bits[bits](&t, cbs, row, rb, xs, xa, steps, acc + r, same);
                } else {
                    const int64_t room = stream - (int64_t)ch * rb - reach;
                    const int32_t fit =
                        room < 0 ? 0 : (int32_t)TC_MIN((int64_t)steps, room / (4 * (int64_t)bits) + 1);
                    int32_t a = fc_dot_avx2_by_bits[bits](&t, cbs, row, xs, xa, fit);
                    if (32 * fit < n) {
                        int32_t ws = 0;
                        a += fc_row_chunked(packed, (uint32_t)((int64_t)ch * rb * 8 + (int64_t)32 * fit * bits),
                                            bits, cb_of[0], x + 32 * fit, n - 32 * fit, 0, &ws);
                    }
                    acc[r] = a;
                }
                r += k;
            }
            for (r = 0; r < cnt; r++) { /* after the block (see fc_host_avx2_narrow) */
                acc[r] = (int32_t)((uint32_t)acc[r] + fo_term + (uint32_t)tc_bias_at(bias, p->bias_bits, c + r));
            }
            tc_requantize_lanes(acc, cnt, mult, shift, p->requant_per_channel, c, p->output_offset,
                                p->act_min, p->act_max, output + (int32_t)b * out_f + c);
        }
    }
    return 1;
}
#endif

/* bias, the weight offset's share and requantization of the rows chs[0..nr) of a pass whose
 * sums are whole (kept out of the driver's loop: fewer live values there) */
TC_NOINLINE static void fc_finish(const tc_fc_packed_params *p, const int32_t *acc,
                                  const int32_t *chs, int32_t nr, uint32_t add,
                                  const void *bias, const int32_t *mult, const int8_t *shift,
                                  int8_t *y)
{
    const int32_t oo = p->output_offset, lo = p->act_min, hi = p->act_max;
    const int32_t step = p->requant_per_channel ? 1 : 0;
    int32_t r;
    for (r = 0; r < nr; r++) {
        const int32_t ch = chs[r], q = ch * step;
        const uint32_t t = (uint32_t)acc[r] + add + (uint32_t)tc_bias_at(bias, p->bias_bits, ch);
        y[ch] = tc_requantize((int32_t)t, mult[q], shift[q], oo, lo, hi);
    }
}

/* The flash pair tables the kernel reads (DSP cores, widths 1..5, per-tensor or shared
 * codebooks), or NULL: ARMv6-M, x86 and portable builds ignore them (their loops read split
 * int8 tables or none; same output). */
static const uint32_t *fc_flash_tables(const tc_fc_packed_params *p, const int8_t *codebooks,
                                       const uint8_t *codebook_map, const uint32_t *pair_tables)
{
#if defined(TC_FC_HAVE_FLASH_PAIRS)
    if (pair_tables != NULL && codebooks != NULL && p->bits >= 1 && p->bits <= TC_FC_PAIR_MAX_BITS &&
        (p->codebook_stride == 0 || codebook_map != NULL)) {
        return pair_tables;
    }
#else
    (void)p;
    (void)codebooks;
    (void)codebook_map;
    (void)pair_tables;
#endif
    return NULL;
}

/* Whether the scratch's pair tables pay for this layout (ops/fully_connected.tables_pay mirrors
 * it): per-tensor layers always (fc_pair_entries); per-channel layers (a build per row) on rows of
 * >= 2 weights per entry; shared layers (n_cb codebooks) where the rows are taken codebook by
 * codebook (16 * n_cb <= in, rows of whole groups) with >= 4 weights per entry of the n_cb
 * tables, or on rows of >= 2 weights per entry. */
static int fc_tables_pay(const tc_fc_packed_params *p, int shared, int32_t n_cb)
{
    const int32_t e = fc_pair_entries(p), n = p->in_features;
    if (e == 0 || p->codebook_stride == 0) {
        return e != 0;
    }
    if (n >= 2 * e) {
        return 1;
    }
    return shared && (((uint32_t)n * p->bits) & 7u) == 0 && 16 * n_cb <= n &&
           2u * (uint32_t)n_cb * (uint32_t)e <= (uint32_t)n * p->out_features;
}

/* the largest codebook number of the map (DSP cores: four bytes per USUB8 + SEL) */
static int32_t fc_map_max(const uint8_t *map, int32_t n)
{
    int32_t i = 0, mx = 0;
#if defined(TC_ARCH_ARM_DSP)
    uint32_t m4 = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t v = tc_ld32(map + i);
        (void)__usub8(v, m4);
        m4 = __sel(v, m4);
    }
    mx = (int32_t)TC_MAX(TC_MAX(m4 & 255u, (m4 >> 8) & 255u), TC_MAX((m4 >> 16) & 255u, m4 >> 24));
#endif
    for (; i < n; i++) {
        mx = TC_MAX(mx, (int32_t)map[i]);
    }
    return mx;
}

/* 4-bit rows without tables take a codebook per row on these cores (fc_look4_rows,
 * fc_look4_row_v6m): the driver then forms passes across codebook changes */
#if TC_FC_HAVE_LOOK4 || defined(TC_FC_HAVE_LOOK4_V6M)
#define TC_FC_ANY_CB 1
#else
#define TC_FC_ANY_CB 0
#endif

/* ---------------------------------------------------------------------------------------
 * Driver: batch rows outer (the input of a batch row is widened once), passes of up to
 * TC_FC_PASS output channels inner (consecutive, or codebook by codebook for shared layouts
 * with tables); a pair table is rebuilt only when a row's codebook is not the one it holds.
 */
void tc_fully_connected_packed(const tc_fc_packed_params *p, const int8_t *input,
                               const uint8_t *packed, const int8_t *codebooks,
                               const uint8_t *codebook_map, const uint32_t *pair_tables,
                               const void *bias, const int32_t *mult, const int8_t *shift,
                               int8_t *output, int8_t *scratch)
{
    const int32_t n = p->in_features;
    const int32_t out_f = p->out_features;
    const uint32_t bits = p->bits;
    const int32_t io = p->input_offset;
    const int32_t fo = p->filter_offset;
    const int32_t rb = (int32_t)(((uint32_t)n * bits) >> 3); /* row bytes when aligned */
    const int aligned = (((uint32_t)n * bits) & 7u) == 0;   /* every row on a byte boundary */
    const int32_t g = aligned ? n >> 3 : 0; /* groups of 8 for the row kernels */
    /* the table level: full (pair table + widened input), compact (split int8 tables, the
     * input read as int8) or none (scratch == NULL or tables 0: the planner grants scratch only
     * where the arena has room) */
    /* shared layouts: the number of codebooks (the map's largest entry + 1), when it decides */
    const int32_t n_cb = codebook_map != NULL && codebooks != NULL && (scratch != NULL || pair_tables != NULL)
                             ? fc_map_max(codebook_map, out_f) + 1
                             : 0;
    int32_t level = scratch != NULL && fc_tables_pay(p, codebook_map != NULL, n_cb) ? fc_level(p) : 0;
#if !defined(TC_ARCH_ARM_DSP)
    /* outside the DSP cores the 6-bit tables and the per-codebook tables of short shared rows
     * (16 KiB builds; rows of < 2 weights per entry) run no faster than the lookups (Cortex-M0+,
     * FC 640x128: 6-bit 11.1 without, 11.7 with; 5-bit shared 11.3 / 12.3): the scratch stays unused */
    if (level > 0 && (p->bits > 5 || (p->codebook_stride != 0 && n < 2 * fc_pair_entries(p)))) {
        level = 0;
    }
#endif
    /* flash pair tables (DSP cores; one per codebook, precomputed by the generator): no table
     * build, and the scratch, when its level holds the widened input row, serves for that */
    const uint32_t *ftab = fc_flash_tables(p, codebooks, codebook_map, pair_tables);
    uint32_t *tab = level == 2 && ftab == NULL ? (uint32_t *)(void *)tc_scratch_s32(scratch) : NULL;
    /* compact: one table per codebook, so not for per-channel layers (a build per row) */
    int8_t *split = level == 1 && ftab == NULL && (p->codebook_stride == 0 || codebook_map != NULL)
                        ? scratch
                        : NULL;
    uint32_t *xw = tab != NULL ? tab + fc_pair_entries(p)
                   : ftab != NULL && level > 0 &&
                           tc_fully_connected_packed_get_buffer_size(p) >= 4 * fc_widened_words(p) + 3
                       ? (uint32_t *)(void *)tc_scratch_s32(scratch)
                       : NULL;
    const int tables = tab != NULL || split != NULL || ftab != NULL;
#if defined(TC_FC_HAVE_FLASH_PAIRS)
    /* flash tables without room in the scratch for the widened input: rows of up to one chunk
     * (TC_FC_XCHUNK groups) widen it once per batch row here, longer rows chunk by chunk per
     * pass into the same buffer (fc_xpairs_any) */
    uint32_t xw_stack[TC_FC_XCHUNK * 4];
    if (ftab != NULL && xw == NULL && n <= 8 * TC_FC_XCHUNK) {
        xw = xw_stack;
    }
#endif
    const int8_t *tab_cb = NULL;
    int32_t b, grouped = 0;
#ifdef TC_HOST_X86_SIMD
    /* (the CPU check first: fc_host_avx2 is compiled for AVX2 throughout) */
    if (tc_host_avx2() &&
        fc_host_avx2(p, input, packed, codebooks, codebook_map, bias, mult, shift, output)) {
        return;
    }
#endif
#ifdef TC_HOST_X86_SIMD
    /* whole 4-bit rows on the SSSE3 path (input widened once per batch row, 4 KiB of stack) */
    int16_t x16[TC_FC_HOST_MAX_IN];
    const int host4 = bits == 4 && codebooks != NULL && io == 0 && (n & 1) == 0 && n >= 32 &&
                      n <= TC_FC_HOST_MAX_IN && __builtin_cpu_supports("ssse3");
    const int32_t n32 = n & ~31;
#endif
    /* shared codebooks with a pair table: rows taken codebook by codebook (one table build per
     * codebook and batch row, passes of 4 rows), where the map scans (one per codebook) pay */
    if (tables && codebook_map != NULL && aligned) {
        grouped = 16 * n_cb <= n;
    }

    for (b = 0; b < p->batches; b++) {
        const int8_t *x = input + (int32_t)b * n;
        uint32_t fo_term = 0; /* fo * sum(x + io), the weight offset's share (mod 2^32) */
        int32_t c = 0, left = out_f, grp, scan;
        if (fo != 0) {
            int32_t i, xsum = 0;
            for (i = 0; i < n; i++) {
                xsum += x[i];
            }
            fo_term = (uint32_t)fo * ((uint32_t)xsum + (uint32_t)n * (uint32_t)io);
        }
#ifdef TC_HOST_X86_SIMD
        if (host4) {
            tc_widen_s8_s16(x, n, x16);
        }
#endif
        if (xw != NULL) {
            fc_widen_pairs(x, n, xw);
        }
        grp = 0;
        scan = 0;
        while (left > 0) {
            int32_t chs[TC_FC_PASS]; /* the output channels of this pass */
            const uint8_t *rows[TC_FC_PASS];
            const int8_t *cbs[TC_FC_PASS];
            int32_t acc[TC_FC_PASS];
            int32_t nr = 0, r, done = 0, cbi;
            const int8_t *cb;
            int mixed;
            if (grouped) { /* the next (up to 4) rows whose codebook is grp */
                while (nr == 0) {
                    for (; scan < out_f && nr < TC_FC_PASS; scan++) {
                        if (codebook_map[scan] == grp) {
                            chs[nr++] = scan;
                        }
                    }
                    if (nr == 0) {
                        grp++;
                        scan = 0;
                    }
                }
                cbi = grp;
            } else if (p->codebook_stride == 0 || codebooks == NULL) {
                /* one codebook (or raw weights): the next TC_FC_PASS rows */
                const uint8_t *q = packed + c * rb;
                const int8_t *cb0 = codebooks;
                nr = TC_MIN(TC_FC_PASS, out_f - c);
                for (r = 0; r < nr; r++) {
                    chs[r] = c + r;
                    rows[r] = q;
                    cbs[r] = cb0;
                    q += rb;
                }
                cbi = 0;
                c += nr;
            } else { /* consecutive rows sharing the codebook, except on the DSP 4-bit
                      * table-free path (fc_look4_rows: a codebook per row) */
                /* rows with different codebooks in one pass: the DSP 4-bit table-free path, and
                 * per-channel layers with tables (one build per row, fewer passes) */
                const int any = g > 0 && ((TC_FC_ANY_CB && !tables && bits == 4) ||
                                          (tables && codebook_map == NULL));
                const uint8_t *q = packed + c * rb;
                cbi = codebook_map != NULL ? codebook_map[c] : c;
                do {
                    const int32_t ci = codebook_map != NULL ? codebook_map[c + nr] : c + nr;
                    if (ci != cbi && !any) {
                        break;
                    }
                    chs[nr] = c + nr;
                    rows[nr] = q;
                    cbs[nr] = codebooks + (int32_t)p->codebook_stride * ci;
                    q += rb;
                    nr++;
                } while (nr < TC_FC_PASS && c + nr < out_f);
                c += nr;
            }
            if (grouped) {
                for (r = 0; r < nr; r++) {
                    rows[r] = packed + (int32_t)chs[r] * rb;
                    cbs[r] = codebooks + (int32_t)p->codebook_stride * cbi;
                }
            }
            left -= nr;
            cb = codebooks == NULL ? NULL : codebooks + (int32_t)p->codebook_stride * cbi;
            mixed = 0; /* (only the table-free paths ask; passes with tables are taken apart below) */
            for (r = 1; r < nr && !tables; r++) {
                mixed |= cbs[r] != cb;
            }
            if (cb == NULL) { /* raw int8 weights */
                if (TC_HOST_SIMD) {
                    for (r = 0; r < nr; r++) {
                        acc[r] = tc_dot_s8((const int8_t *)(const void *)packed + chs[r] * n, x, n);
                    }
                    done = n;
                } else if (g > 0) {
                    fc_raw_any(rows[0], rb, nr, x, g, acc);
                    done = 8 * g;
                }
            }
#ifdef TC_HOST_X86_SIMD
            else if (host4) {
                for (r = 0; r < nr; r++) {
                    const uint32_t row_bit = (uint32_t)chs[r] * (uint32_t)n * 4u;
                    acc[r] = fc_dot4_ssse3(packed + (row_bit >> 3), cbs[r], x16, n32);
                }
                done = n32;
            }
#endif
#if TC_FC_HAVE_LOOK4
            else if (mixed && !tables) { /* consecutive rows, a codebook each */
                fc_look4_rows(rows[0], rb, nr, cbs, x, g, acc);
                done = 8 * g;
            }
#endif
#if defined(TC_FC_HAVE_LOOK4_V6M)
            else if (mixed && !tables) { /* consecutive rows, a codebook each */
                for (r = 0; r < nr; r++) {
                    acc[r] = fc_look4_row_v6m(rows[r], cbs[r], x, g);
                }
                done = 8 * g;
            }
#endif
            else if (g > 0) {
                if (tables) { /* runs of rows sharing a codebook */
                    int32_t r0, r1;
                    for (r0 = 0; r0 < nr; r0 = r1) {
                        /* (a pass of one codebook: per-tensor, or shared taken codebook by codebook) */
                        r1 = grouped || p->codebook_stride == 0 ? nr : r0 + 1;
                        for (; r1 < nr && cbs[r1] == cbs[r0]; r1++) {
                        }
#if defined(TC_FC_HAVE_FLASH_PAIRS)
                        if (ftab != NULL) { /* codebook i's table at ftab + i * 2^(2*bits) */
                            const uint32_t *t = ftab;
                            if (p->codebook_stride != 0) {
                                t += ((int32_t)(cbs[r0] - codebooks) / p->codebook_stride)
                                     << (2 * bits);
                            }
                            if (xw != NULL) {
                                fc_pairs_any(rows + r0, r1 - r0, bits, t, xw, g, acc + r0);
                            } else {
                                fc_xpairs_any(rows + r0, r1 - r0, bits, t, x, g, acc + r0, xw_stack);
                            }
                            continue;
                        }
#endif
                        if (cbs[r0] != tab_cb) {
                            tab_cb = cbs[r0];
                            if (split != NULL) {
#if defined(TC_FC_HAVE_HALF4)
                                if (bits == 4) {
                                    fc_build_half4(split, tab_cb, p->codebook_size);
                                } else
#endif
                                {
                                    fc_build_split(split, tab_cb, bits, p->codebook_size);
                                }
                            } else {
                                fc_build_pairs(tab, tab_cb, bits, p->codebook_size);
                            }
                        }
                        if (split != NULL) {
                            fc_split_any(rows + r0, r1 - r0, bits, split, x, g, acc + r0);
                        } else {
                            fc_pairs_any(rows + r0, r1 - r0, bits, tab, xw, g, acc + r0);
                        }
                    }
#if TC_FC_HAVE_LOOK4
                } else if (bits == 4) {
                    fc_look4_rows(rows[0], rb, nr, cbs, x, g, acc);
#endif
                } else {
                    fc_lookup_any(rows[0], rb, nr, bits, cb, x, g, acc);
                }
                done = 8 * g;
            }
            if (done == n && io == 0) { /* whole rows, input offset folded: the common case */
                fc_finish(p, acc, chs, nr, fo_term, bias, mult, shift, output + (int32_t)b * out_f);
                continue;
            }
            /* sum((w+fo)*(x+io)) = sum(w*x) + io*sum(w) + fo*sum(x+io), int32 wrap-around as
             * TFLite Micro's int32 accumulator (computed mod 2^32) */
            for (r = 0; r < nr; r++) {
                const int32_t ch = chs[r];
                const int32_t q = p->requant_per_channel ? ch : 0;
                uint32_t total;
                if (done == n && io == 0) {
                    total = (uint32_t)acc[r];
                } else { /* row tails, unaligned rows, layers without a folded input offset */
                    const uint32_t row_bit = (uint32_t)ch * (uint32_t)n * bits;
                    int32_t ws = 0;
                    total = done > 0 ? (uint32_t)acc[r] : 0u;
                    if (done < n) {
                        total += (uint32_t)fc_row_chunked(packed, row_bit + (uint32_t)done * bits,
                                                          bits, cbs[r], x + done, n - done, io != 0,
                                                          &ws);
                    }
                    if (io != 0 && done > 0) {
                        (void)fc_row_chunked(packed, row_bit, bits, cbs[r], x, done, 1, &ws);
                    }
                    total += (uint32_t)io * (uint32_t)ws;
                }
                total += fo_term;
                if (bias != NULL) {
                    total += (uint32_t)tc_bias_at(bias, p->bias_bits, ch);
                }
                output[(int32_t)b * out_f + ch] = tc_requantize((int32_t)total, mult[q], shift[q],
                                                                p->output_offset, p->act_min,
                                                                p->act_max);
            }
        }
    }
}
