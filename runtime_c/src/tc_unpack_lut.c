/*
 * tc_unpack_lut: packed index bitstream -> codebook values, with byte-wise fast paths for
 * 1, 2, 4 and 8 bits when the first index starts on a byte boundary; every other case goes
 * to the generic bitstream reader (tc_unpack_lut_generic).
 */
#include "tc_kernels.h"

static void unpack8(const uint8_t *restrict p, const int8_t *restrict cb, int32_t n,
                    int8_t *restrict out)
{
    int32_t i;
    for (i = 0; i < n; i++) {
        out[i] = cb[p[i]];
    }
}

static void unpack4(const uint8_t *restrict p, const int8_t *restrict cb, int32_t n,
                    int8_t *restrict out)
{
    const int32_t full = n >> 1;
    int32_t i;
    for (i = 0; i < full; i++) {
        const uint32_t b = p[i];
        out[2 * i] = cb[b & 15u];
        out[2 * i + 1] = cb[b >> 4];
    }
    if (n & 1) {
        out[n - 1] = cb[p[full] & 15u];
    }
}

static void unpack2(const uint8_t *restrict p, const int8_t *restrict cb, int32_t n,
                    int8_t *restrict out)
{
    const int32_t full = n >> 2;
    int32_t i, j;
    for (i = 0; i < full; i++) {
        const uint32_t b = p[i];
        out[4 * i] = cb[b & 3u];
        out[4 * i + 1] = cb[(b >> 2) & 3u];
        out[4 * i + 2] = cb[(b >> 4) & 3u];
        out[4 * i + 3] = cb[b >> 6];
    }
    for (j = 4 * full; j < n; j++) {
        out[j] = cb[(p[full] >> (2 * (j & 3))) & 3u];
    }
}

static void unpack1(const uint8_t *restrict p, const int8_t *restrict cb, int32_t n,
                    int8_t *restrict out)
{
    const int32_t full = n >> 3;
    int32_t i, j;
    for (i = 0; i < full; i++) {
        const uint32_t b = p[i];
        for (j = 0; j < 8; j++) {
            out[8 * i + j] = cb[(b >> j) & 1u];
        }
    }
    for (j = 8 * full; j < n; j++) {
        out[j] = cb[(p[full] >> (j & 7)) & 1u];
    }
}

void tc_unpack_lut(const uint8_t *packed, uint32_t bit_offset, uint8_t bits,
                   const int8_t *codebook, int32_t count, int8_t *out)
{
    const uint8_t *p = packed + (bit_offset >> 3);
    if (count <= 0) {
        return;
    }
    if ((bit_offset & 7u) != 0 || codebook == NULL) {
        if (codebook == NULL && (bit_offset & 7u) == 0 && bits == 8) {
            int32_t i;
            for (i = 0; i < count; i++) {
                out[i] = (int8_t)p[i];
            }
            return;
        }
        tc_unpack_lut_generic(packed, bit_offset, bits, codebook, count, out);
        return;
    }
    switch (bits) {
    case 8:
        unpack8(p, codebook, count, out);
        break;
    case 4:
        unpack4(p, codebook, count, out);
        break;
    case 2:
        unpack2(p, codebook, count, out);
        break;
    case 1:
        unpack1(p, codebook, count, out);
        break;
    default:
        tc_unpack_lut_generic(packed, bit_offset, bits, codebook, count, out);
        break;
    }
}
