/* CONCATENATION, int8: copy one input into its slot of the output (see tc_kernels.h). */
#include <string.h>

#include "tc_kernels.h"

void tc_concat_s8(const tc_concat_params *p, const int8_t *in, int8_t *out)
{
    int32_t r;
    for (r = 0; r < p->outer; ++r) {
        memcpy(out + r * p->out_inner + p->offset, in + r * p->in_inner, (size_t)p->in_inner);
    }
}
