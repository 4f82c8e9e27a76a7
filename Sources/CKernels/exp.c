#include "kernels.h"
#include "exp_lanes.h"

__attribute__((target("avx512f,avx512dq")))
static void exp_avx512(const float *x, float *y, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(y + i, zt_exp8(_mm256_loadu_ps(x + i)));
    for (; i < count; i++) y[i] = expf(x[i]);
}

// Every kernel of CKernels dispatches on this: the AVX-512 lanes where the CPU has them.
static int cpu_has_lanes(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
}

static int vectorised = -1;

int zt_kernels_vectorised(void) {
    if (vectorised < 0) vectorised = cpu_has_lanes();
    return vectorised;
}

int zt_kernels_set_vectorised(int on) {
    int previous = zt_kernels_vectorised();
    vectorised = on && cpu_has_lanes();
    return previous;
}

void zt_exp_f32(const float *x, float *y, size_t count) {
    if (zt_kernels_vectorised()) { exp_avx512(x, y, count); return; }
    for (size_t i = 0; i < count; i++) y[i] = expf(x[i]);
}
