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

// fp16: sign, 5 exponent bits (bias 15), 10 mantissa bits; largest finite 65504, smallest normal
// 2^-14, smallest subnormal 2^-24.
static inline uint16_t f16_one(float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t a = bits & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu);  // NaN: quiet, payload kept
    if (a >= 0x477ff000u) return sign | 0x7c00u;  // ≥ 65520 (65504 + half an ulp; the tie goes to even, inf)
    if (a >= 0x38800000u) {                       // normal: drop 13 mantissa bits, rebias 127 -> 15
        uint32_t h = (a >> 13) - (112u << 10), rest = a & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h += 1;  // a carry moves into the exponent, as it should
        return sign | (uint16_t)h;
    }
    if (a <= 0x33000000u) return sign;  // ≤ 2^-25: zero (2^-25 itself is a tie between 0 and 2^-24: even, 0)
    // Subnormal: the value in units of 2^-24 is the 24-bit significand shifted right by 126 − exponent (14 … 24).
    uint32_t significand = (a & 0x7fffffu) | 0x800000u, shift = 126u - (a >> 23);
    uint32_t h = significand >> shift, rest = significand & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1u))) h += 1;  // may become 0x400, the smallest normal: right
    return sign | (uint16_t)h;
}

static inline float f16_widen(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0x1fu) bits = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0);  // a NaN comes out quiet, as vcvtph2ps makes it
    else if (e != 0) bits = sign | ((e + 112u) << 23) | (m << 13);
    else if (m == 0) bits = sign;
    else {  // subnormal: normalise
        e = 113u;
        while (!(m & 0x400u)) { m <<= 1; e -= 1; }
        bits = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static int f16c = -1;

static int has_f16c(void) {
    if (f16c < 0) {
        __builtin_cpu_init();
        f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx") ? 1 : 0;
    }
    return f16c;
}

__attribute__((target("avx,f16c")))
static void f32_to_f16_f16c(const float *src, uint16_t *dst, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < count; i++) dst[i] = f16_one(src[i]);
}

__attribute__((target("avx,f16c")))
static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < count; i++) dst[i] = f16_widen(src[i]);
}

__attribute__((target("avx,f16c")))
static void round_f16_f16c(const float *src, float *dst, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    for (; i < count; i++) dst[i] = f16_widen(f16_one(src[i]));
}

void zt_f32_to_f16(const float *src, uint16_t *dst, size_t count) {
    if (has_f16c()) { f32_to_f16_f16c(src, dst, count); return; }
    for (size_t i = 0; i < count; i++) dst[i] = f16_one(src[i]);
}

void zt_f16_to_f32(const uint16_t *src, float *dst, size_t count) {
    if (has_f16c()) { f16_to_f32_f16c(src, dst, count); return; }
    for (size_t i = 0; i < count; i++) dst[i] = f16_widen(src[i]);
}

void zt_round_f16(const float *src, float *dst, size_t count) {
    if (has_f16c()) { round_f16_f16c(src, dst, count); return; }
    for (size_t i = 0; i < count; i++) dst[i] = f16_widen(f16_one(src[i]));
}
