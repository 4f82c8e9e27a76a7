#include "kernels.h"
#include <math.h>
#include <immintrin.h>

#pragma STDC FP_CONTRACT OFF

// One element, in the order of the vector lanes below.
static inline void update_one(float *p, const float *g, float *m, float *v, size_t i, float k, float step_size,
                              float bc2_sqrt, float decay, float beta2, float one_minus_beta1, float one_minus_beta2, float eps) {
    float gi = g[i] * k;
    float mi = m[i] + one_minus_beta1 * (gi - m[i]);
    float vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    p[i] = p[i] * decay - step_size * (mi / denom);
}

__attribute__((target("avx512f")))
static void update_avx512(float *p, const float *g, float *m, float *v, size_t count, float k, float step_size,
                          float bc2_sqrt, float decay, float beta2, float one_minus_beta1, float one_minus_beta2, float eps) {
    const __m512 vk = _mm512_set1_ps(k), vStep = _mm512_set1_ps(step_size), vBc2 = _mm512_set1_ps(bc2_sqrt);
    const __m512 vDecay = _mm512_set1_ps(decay), vB2 = _mm512_set1_ps(beta2), vB1c = _mm512_set1_ps(one_minus_beta1);
    const __m512 vB2c = _mm512_set1_ps(one_minus_beta2), vEps = _mm512_set1_ps(eps);
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), vk);
        __m512 mOld = _mm512_loadu_ps(m + i);
        __m512 mi = _mm512_add_ps(mOld, _mm512_mul_ps(vB1c, _mm512_sub_ps(gi, mOld)));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(vB2, _mm512_loadu_ps(v + i)), _mm512_mul_ps(_mm512_mul_ps(vB2c, gi), gi));
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vBc2), vEps);
        __m512 pi = _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(p + i), vDecay), _mm512_mul_ps(vStep, _mm512_div_ps(mi, denom)));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        _mm512_storeu_ps(p + i, pi);
    }
    for (; i < count; i++) update_one(p, g, m, v, i, k, step_size, bc2_sqrt, decay, beta2, one_minus_beta1, one_minus_beta2, eps);
}

void zt_adamw_update(float *p, const float *g, float *m, float *v, size_t count,
                     float gradient_scale, float step_size, float bc2_sqrt, float decay,
                     float beta2, float one_minus_beta1, float one_minus_beta2, float eps) {
    if (zt_kernels_vectorised()) {
        update_avx512(p, g, m, v, count, gradient_scale, step_size, bc2_sqrt, decay, beta2, one_minus_beta1, one_minus_beta2, eps);
        return;
    }
    for (size_t i = 0; i < count; i++)
        update_one(p, g, m, v, i, gradient_scale, step_size, bc2_sqrt, decay, beta2, one_minus_beta1, one_minus_beta2, eps);
}
