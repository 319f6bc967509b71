/*
 * tc_unpack_lut_generic: packed index bitstream -> codebook values, any width 1..8, any
 * starting bit. The reference decoder every fast path is tested against.
 */
#include "tc_kernels.h"

void tc_unpack_lut_generic(const uint8_t *packed, uint32_t bit_offset, uint8_t bits,
                           const int8_t *codebook, int32_t count, int8_t *out)
{
    const uint8_t *q = packed + (bit_offset >> 3);
    const uint32_t mask = (1u << bits) - 1u;
    uint32_t buf;
    int32_t nbits;
    int32_t i;

    if (count <= 0) {
        return;
    }
    /* bit buffer: the low `nbits` bits of buf are the next bits of the stream */
    buf = (uint32_t)(*q++) >> (bit_offset & 7u);
    nbits = 8 - (int32_t)(bit_offset & 7u);
    for (i = 0; i < count; i++) {
        uint32_t idx;
        if (nbits < (int32_t)bits) {
            buf |= (uint32_t)(*q++) << nbits;
            nbits += 8;
        }
        idx = buf & mask;
        buf >>= bits;
        nbits -= bits;
        out[i] = codebook != NULL ? codebook[idx] : (int8_t)(uint8_t)idx;
    }
}
