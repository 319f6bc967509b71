/*
 * tinycluster runtime: architecture selection, in one place (docs/design-codebooks-kernels.md,
 * section 3). Every kernel file picks its fast path from these macros at C compile time; the
 * generated model code never depends on them (one stream format for every target).
 *
 * Exactly one family is selected:
 *  - TC_ARCH_ARM_DSP   ARMv7E-M / ARMv8-M Mainline with the DSP extension
 *                      (__ARM_FEATURE_DSP: Cortex-M4, M7, M33, M55 ...): ACLE intrinsics
 *                      (__smlad, __sxtb16, __pkhbt, ...) from <arm_acle.h>.
 *  - TC_ARCH_ARMV6M    ARMv6-M (__ARM_ARCH_6M__: Cortex-M0, M0+, RP2040): Thumb-1 loops
 *                      (8 low registers, 1-cycle MULS, no 64-bit multiply instruction).
 *  - TC_HOST_X86_SIMD  x86 hosts with GCC/Clang (SSE2 baseline, SSSE3 chosen at run time).
 *  - TC_ARCH_PORTABLE  anything else: the portable C reference.
 * Defining TC_PORTABLE (e.g. -DTC_PORTABLE) forces the portable reference on any target: that
 * is how the tests compare a fast path with the reference on the same machine. The older
 * -DTC_NO_HOST_SIMD still turns off the x86 host paths only (and therefore, on a host, means
 * the same as TC_PORTABLE).
 *
 * Each selected macro is defined to 1 (test with #if defined(...) or #ifdef); TC_HOST_SIMD is
 * always defined, to 0 or 1, for use in ordinary C conditions.
 */
#ifndef TC_ARCH_H
#define TC_ARCH_H

#if !defined(TC_PORTABLE) && defined(__ARM_FEATURE_DSP) && (__ARM_FEATURE_DSP == 1) && \
    defined(__ARM_ARCH_PROFILE) && (__ARM_ARCH_PROFILE == 'M')
#define TC_ARCH_ARM_DSP 1
#define TC_ARCH_NAME "arm-dsp"
#elif !defined(TC_PORTABLE) && (defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__))
/* ARMv8-M Baseline (Cortex-M23) has the same Thumb-1 data-processing set as ARMv6-M */
#define TC_ARCH_ARMV6M 1
#define TC_ARCH_NAME "armv6m"
#elif !defined(TC_PORTABLE) && !defined(TC_NO_HOST_SIMD) && defined(__GNUC__) && \
    (defined(__x86_64__) || defined(__i386__))
#define TC_HOST_X86_SIMD 1
#define TC_ARCH_NAME "x86-simd"
#else
#define TC_ARCH_PORTABLE 1
#define TC_ARCH_NAME "portable"
#endif

#ifdef TC_HOST_X86_SIMD
#define TC_HOST_SIMD 1
#else
#define TC_HOST_SIMD 0
#endif

#ifdef TC_ARCH_ARM_DSP
#include <arm_acle.h>
#endif

#endif /* TC_ARCH_H */
