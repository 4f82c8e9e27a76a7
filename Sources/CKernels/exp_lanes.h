// The lanes of zt_exp_f32, shared by the kernels that need exp (internal to CKernels).
#ifndef ZEROTRAIN_EXP_LANES_H
#define ZEROTRAIN_EXP_LANES_H
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#pragma STDC FP_CONTRACT OFF

// glibc's expf (from Arm's optimized-routines): x·32/ln2 = k + r, exp(x) = 2^(k/32) · 2^(r/32),
// 2^(k/32) from a table whose entry i holds the bits of 2^(i/32) minus i << 47 (so adding
// k << 47 puts k/32's integer part into the exponent), 2^(r/32) by C0 r³ + C1 r² + C2 r + 1.
// The constants are those of glibc 2.36's __exp2f_data, so the results agree bit for bit.
static const uint64_t zt_exp_table[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

static inline double zt_exp_bits(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }

// expf of eight lanes. |x| >= 88 (overflow, underflow, inf, NaN) goes to libm's own special cases.
__attribute__((target("avx512f,avx512dq"), always_inline))
static inline __m256 zt_exp8(__m256 xf) {
    const __m512d invLn2N = _mm512_set1_pd(zt_exp_bits(0x40471547652b82fe));  // 32 / ln 2
    const __m512d shift = _mm512_set1_pd(zt_exp_bits(0x4338000000000000));    // 1.5 · 2^52: adding it rounds to an integer
    const __m512d c0 = _mm512_set1_pd(zt_exp_bits(0x3ebc6af84b912394));
    const __m512d c1 = _mm512_set1_pd(zt_exp_bits(0x3f2ebfce50fac4f3));
    const __m512d c2 = _mm512_set1_pd(zt_exp_bits(0x3f962e42ff0c52d6));
    const __m512d one = _mm512_set1_pd(1.0);
    const __m512i t0 = _mm512_loadu_si512(zt_exp_table), t1 = _mm512_loadu_si512(zt_exp_table + 8);
    const __m512i t2 = _mm512_loadu_si512(zt_exp_table + 16), t3 = _mm512_loadu_si512(zt_exp_table + 24);
    __m512d xd = _mm512_cvtps_pd(xf);
    __m512d kd = _mm512_fmadd_pd(invLn2N, xd, shift);
    __m512i ki = _mm512_castpd_si512(kd);
    kd = _mm512_sub_pd(kd, shift);
    __m512d r = _mm512_fmsub_pd(invLn2N, xd, kd);
    __m512d z = _mm512_fmadd_pd(c0, r, c1);
    __m512i index = _mm512_and_si512(ki, _mm512_set1_epi64(31));
    __m512i low = _mm512_permutex2var_epi64(t0, index, t1);   // entries 0…15 by index bits 0–3
    __m512i high = _mm512_permutex2var_epi64(t2, index, t3);  // entries 16…31
    __mmask8 upper = _mm512_test_epi64_mask(index, _mm512_set1_epi64(16));
    __m512i t = _mm512_mask_blend_epi64(upper, low, high);
    t = _mm512_add_epi64(t, _mm512_slli_epi64(ki, 47));
    __m512d r2 = _mm512_mul_pd(r, r);
    __m512d p = _mm512_fmadd_pd(c2, r, one);
    p = _mm512_fmadd_pd(z, r2, p);
    p = _mm512_mul_pd(p, _mm512_castsi512_pd(t));
    __m256 out = _mm512_cvtpd_ps(p);
    __m256i magnitude = _mm256_and_si256(_mm256_castps_si256(xf), _mm256_set1_epi32(0x7fffffff));
    int special = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x42afffff))));
    if (special) {
        float in[8], res[8];
        _mm256_storeu_ps(in, xf);
        _mm256_storeu_ps(res, out);
        for (int lane = 0; lane < 8; lane++) if (special & (1 << lane)) res[lane] = expf(in[lane]);
        out = _mm256_loadu_ps(res);
    }
    return out;
}

// expf of sixteen lanes.
__attribute__((target("avx512f,avx512dq"), always_inline))
static inline __m512 zt_exp16(__m512 x) {
    __m256 lo = zt_exp8(_mm512_castps512_ps256(x));
    __m256 hi = zt_exp8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}
#endif
