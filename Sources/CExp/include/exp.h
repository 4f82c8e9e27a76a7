#ifndef ZEROTRAIN_EXP_H
#define ZEROTRAIN_EXP_H
#include <stddef.h>

// y[i] = expf(x[i]) for i < count (x and y may be the same). Every result equals glibc's expf
// on a CPU with FMA, bit for bit: with AVX-512, eight lanes at a time run the very arithmetic of
// glibc's __expf_fma (the same 32-entry table of 2^(i/32), the same degree-3 polynomial in
// double, the same fused multiply-adds, one rounding to float at the end); |x| >= 88, NaN and
// the tail go to libm's expf itself. Without AVX-512 every element goes to libm's expf.
void zt_exp_f32(const float *x, float *y, size_t count);
// 1 when zt_exp_f32 runs the AVX-512 lanes.
int zt_exp_vectorised(void);
#endif
