#include "kernels.h"
#include "exp_lanes.h"

#pragma STDC FP_CONTRACT OFF

static inline float sigmoid(float g) { return 1 / (1 + expf(-g)); }

// The portable loops: the whole range without AVX-512, the tail after the lanes with it.
static void forward_portable(const float *gate, const float *up, float *h, size_t count) {
    for (size_t i = 0; i < count; i++) h[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

static void backward_portable(const float *dh, const float *gate, const float *up, float *d_gate, float *d_up, size_t count) {
    for (size_t i = 0; i < count; i++) {
        float g = gate[i], s = sigmoid(g);
        float silu = g * s;
        d_up[i] = dh[i] * silu;
        d_gate[i] = dh[i] * up[i] * s * (1 + g * (1 - s));
    }
}

__attribute__((target("avx512f,avx512dq")))
static void forward_avx512(const float *gate, const float *up, float *h, size_t count) {
    const __m512 one = _mm512_set1_ps(1), sign = _mm512_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i);
        __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, zt_exp16(_mm512_xor_ps(g, sign))));
        _mm512_storeu_ps(h + i, _mm512_mul_ps(_mm512_mul_ps(g, s), _mm512_loadu_ps(up + i)));
    }
    forward_portable(gate + i, up + i, h + i, count - i);
}

__attribute__((target("avx512f,avx512dq")))
static void backward_avx512(const float *dh, const float *gate, const float *up, float *d_gate, float *d_up, size_t count) {
    const __m512 one = _mm512_set1_ps(1), sign = _mm512_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i), d = _mm512_loadu_ps(dh + i);
        __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, zt_exp16(_mm512_xor_ps(g, sign))));
        __m512 dgate = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, _mm512_loadu_ps(up + i)), s),
                                     _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, s))));
        _mm512_storeu_ps(d_up + i, _mm512_mul_ps(d, _mm512_mul_ps(g, s)));
        _mm512_storeu_ps(d_gate + i, dgate);
    }
    backward_portable(dh + i, gate + i, up + i, d_gate + i, d_up + i, count - i);
}

void zt_swiglu_forward(const float *gate, const float *up, float *h, size_t count) {
    if (zt_kernels_vectorised()) forward_avx512(gate, up, h, count);
    else forward_portable(gate, up, h, count);
}

void zt_swiglu_backward(const float *dh, const float *gate, const float *up, float *d_gate, float *d_up, size_t count) {
    if (zt_kernels_vectorised()) backward_avx512(dh, gate, up, d_gate, d_up, count);
    else backward_portable(dh, gate, up, d_gate, d_up, count);
}
