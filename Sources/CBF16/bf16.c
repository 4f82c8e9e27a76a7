#include "bf16.h"
#include <string.h>
#include <immintrin.h>

static inline uint16_t convert_one(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);  // NaN: keep it quiet
    if ((bits & 0x7f800000u) == 0) return (uint16_t)((bits >> 16) & 0x8000u);     // subnormal -> 0, as vcvtneps2bf16 does
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

static void convert_portable(const float *src, uint16_t *dst, size_t count) {
    for (size_t i = 0; i < count; i++) dst[i] = convert_one(src[i]);
}

__attribute__((target("avx512f,avx512bf16,avx512vl")))
static void convert_avx512bf16(const float *src, uint16_t *dst, size_t count) {
    size_t i = 0;
    for (; i + 32 <= count; i += 32) {
        __m512 lo = _mm512_loadu_ps(src + i), hi = _mm512_loadu_ps(src + i + 16);
        __m512bh packed = _mm512_cvtne2ps_pbh(hi, lo);
        _mm512_storeu_si512((void *)(dst + i), (__m512i)packed);
    }
    for (; i + 16 <= count; i += 16) {
        __m256bh packed = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)packed);
    }
    for (; i < count; i++) dst[i] = convert_one(src[i]);
}

static int native = -1;

int zt_bf16_native(void) {
    if (native < 0) {
        __builtin_cpu_init();
        native = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    }
    return native;
}

void zt_f32_to_bf16(const float *src, uint16_t *dst, size_t count) {
    if (zt_bf16_native()) convert_avx512bf16(src, dst, count);
    else convert_portable(src, dst, count);
}

void zt_f32_to_bf16_rows(const float *src, size_t src_ld, uint16_t *dst, size_t dst_ld, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) zt_f32_to_bf16(src + r * src_ld, dst + r * dst_ld, cols);
}

void zt_bf16_to_f32(const uint16_t *src, float *dst, size_t count) {
    for (size_t i = 0; i < count; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(dst + i, &bits, 4);
    }
}
