#include "kernels.h"
#include "exp_lanes.h"

__attribute__((target("avx512f,avx512dq")))
static void exp_avx512(const float *x, float *y, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(y + i, zt_exp8(_mm256_loadu_ps(x + i)));
    for (; i < count; i++) y[i] = expf(x[i]);
}

static int vectorised = -1;

int zt_kernels_vectorised(void) {
    if (vectorised < 0) {
        __builtin_cpu_init();
        vectorised = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") ? 1 : 0;
    }
    return vectorised;
}

int zt_kernels_set_vectorised(int on) {
    int previous = zt_kernels_vectorised();
    __builtin_cpu_init();
    vectorised = on && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") ? 1 : 0;
    return previous;
}

void zt_exp_f32(const float *x, float *y, size_t count) {
    if (zt_kernels_vectorised()) { exp_avx512(x, y, count); return; }
    for (size_t i = 0; i < count; i++) y[i] = expf(x[i]);
}
