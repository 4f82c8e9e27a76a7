#include "crc32c.h"
#include <string.h>
#if defined(__x86_64__)
#include <nmmintrin.h>

static uint32_t mul_mod_p(uint32_t a, uint32_t b) {
    uint32_t m = 1u << 31, p = 0;
    while (m) {
        if (a & m) p ^= b;
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ 0x82F63B78u : b >> 1;
    }
    return p;
}

/* x^(8n) mod P, reflected. */
static uint32_t x8n_mod_p(size_t n) {
    uint32_t result = 1u << 31, power = 1u << 30; /* x^1 */
    for (int k = 0; k < 3; k++) power = mul_mod_p(power, power); /* x^8 */
    while (n) {
        if (n & 1) result = mul_mod_p(power, result);
        power = mul_mod_p(power, power);
        n >>= 1;
    }
    return result;
}

int zt_crc32c_hw_available(void) { return __builtin_cpu_supports("sse4.2"); }

__attribute__((target("sse4.2")))
uint32_t zt_crc32c_hw(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = (const uint8_t *)data;
    uint64_t c = (uint32_t)~crc;
    while (len && ((uintptr_t)p & 7)) { c = _mm_crc32_u8((uint32_t)c, *p++); len--; }
    if (len >= 3 * 4096) {
        /* Three independent streams hide the instruction's 3-cycle latency. */
        size_t stretch = (len / 3) & ~(size_t)7;
        uint64_t c1 = 0xFFFFFFFFu, c2 = 0xFFFFFFFFu;
        const uint8_t *p1 = p + stretch, *p2 = p + 2 * stretch;
        for (size_t i = 0; i < stretch; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p + i, 8); memcpy(&w1, p1 + i, 8); memcpy(&w2, p2 + i, 8);
            c = _mm_crc32_u64(c, w0); c1 = _mm_crc32_u64(c1, w1); c2 = _mm_crc32_u64(c2, w2);
        }
        uint32_t shift = x8n_mod_p(stretch);
        uint32_t f = mul_mod_p(shift, mul_mod_p(shift, ~(uint32_t)c) ^ ~(uint32_t)c1) ^ ~(uint32_t)c2;
        c = (uint32_t)~f;
        p += 3 * stretch; len -= 3 * stretch;
    }
    while (len >= 8) { uint64_t w; memcpy(&w, p, 8); c = _mm_crc32_u64(c, w); p += 8; len -= 8; }
    while (len) { c = _mm_crc32_u8((uint32_t)c, *p++); len--; }
    return ~(uint32_t)c;
}

/* Fused passes: the CRC-32C of the incoming bytes (and of the result) computed while the floats are
 * added or copied, so the payload is read once. The buffer is cut into three stretches as above
 * (a multiple of 4 floats each) whose CRCs are stitched together; the arithmetic is the same IEEE
 * single-precision add (and divide) as the Swift loops, element by element, so results are bitwise
 * the same. SSE only: the crc32 instruction, not the vector add, is the bottleneck. */

/* One 16-byte block: dst = src + dst (÷ divisor when scale), CRC of src into c, of the result into o. */
#define ZT_BLOCK(c, o, s, d) do {                                                               \
        __m128i raw = _mm_loadu_si128((const __m128i *)(s));                                    \
        c = _mm_crc32_u64(c, (uint64_t)_mm_cvtsi128_si64(raw));                                 \
        c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(raw, 1));                              \
        __m128 sum = _mm_add_ps(_mm_castsi128_ps(raw), _mm_loadu_ps(d));                        \
        if (scale) sum = _mm_div_ps(sum, vdiv);                                                 \
        _mm_storeu_ps(d, sum);                                                                  \
        if (want_out) {                                                                         \
            __m128i r = _mm_castps_si128(sum);                                                  \
            o = _mm_crc32_u64(o, (uint64_t)_mm_cvtsi128_si64(r));                               \
            o = _mm_crc32_u64(o, (uint64_t)_mm_extract_epi64(r, 1));                            \
        }                                                                                       \
    } while (0)

static inline uint32_t zt_stitch(uint32_t c0, uint32_t c1, uint32_t c2, size_t stretch_bytes) {
    /* c0..c2 are finished (inverted) CRCs of three consecutive stretches. */
    uint32_t shift = x8n_mod_p(stretch_bytes);
    return mul_mod_p(shift, mul_mod_p(shift, c0) ^ c1) ^ c2;
}

__attribute__((target("sse4.2"), always_inline))
static inline uint32_t zt_reduce_impl(uint32_t crc, const void *src, float *dst, size_t count,
                                      int scale, float divisor, int want_out, uint32_t *result_crc) {
    const uint8_t *s = (const uint8_t *)src;
    const __m128 vdiv = _mm_set1_ps(divisor);
    uint64_t c = (uint32_t)~crc, o = 0xFFFFFFFFu;
    size_t done = 0;
    if (count >= 3 * 1024) {
        size_t stretch = (count / 3) & ~(size_t)3;   /* floats per stretch */
        uint64_t c1 = 0xFFFFFFFFu, c2 = 0xFFFFFFFFu, o1 = 0xFFFFFFFFu, o2 = 0xFFFFFFFFu;
        const uint8_t *s1 = s + 4 * stretch, *s2 = s + 8 * stretch;
        float *d1 = dst + stretch, *d2 = dst + 2 * stretch;
        for (size_t i = 0; i < stretch; i += 4) {
            ZT_BLOCK(c, o, s + 4 * i, dst + i);
            ZT_BLOCK(c1, o1, s1 + 4 * i, d1 + i);
            ZT_BLOCK(c2, o2, s2 + 4 * i, d2 + i);
        }
        c = (uint32_t)~zt_stitch(~(uint32_t)c, ~(uint32_t)c1, ~(uint32_t)c2, 4 * stretch);
        if (want_out) o = (uint32_t)~zt_stitch(~(uint32_t)o, ~(uint32_t)o1, ~(uint32_t)o2, 4 * stretch);
        done = 3 * stretch;
    }
    for (; done + 4 <= count; done += 4) ZT_BLOCK(c, o, s + 4 * done, dst + done);
    for (; done < count; done++) {
        uint32_t bits; float x;
        memcpy(&bits, s + 4 * done, 4);
        c = _mm_crc32_u32((uint32_t)c, bits);
        memcpy(&x, &bits, 4);
        float sum = x + dst[done];
        if (scale) sum = sum / divisor;
        dst[done] = sum;
        if (want_out) { memcpy(&bits, &sum, 4); o = _mm_crc32_u32((uint32_t)o, bits); }
    }
    if (want_out) *result_crc = ~(uint32_t)o;
    return ~(uint32_t)c;
}
#undef ZT_BLOCK

__attribute__((target("sse4.2")))
uint32_t zt_crc32c_accumulate_f32(uint32_t crc, const void *src, float *dst, size_t count) {
    return zt_reduce_impl(crc, src, dst, count, 0, 1.0f, 0, NULL);
}

__attribute__((target("sse4.2")))
uint32_t zt_crc32c_reduce_f32(uint32_t crc, const void *src, float *dst, size_t count, float divisor,
                              uint32_t *result_crc) {
    if (result_crc == NULL) {
        if (divisor != 1.0f) return zt_reduce_impl(crc, src, dst, count, 1, divisor, 0, NULL);
        return zt_reduce_impl(crc, src, dst, count, 0, 1.0f, 0, NULL);
    }
    if (divisor != 1.0f) return zt_reduce_impl(crc, src, dst, count, 1, divisor, 1, result_crc);
    return zt_reduce_impl(crc, src, dst, count, 0, 1.0f, 1, result_crc);
}

__attribute__((target("sse4.2")))
uint32_t zt_crc32c_copy(uint32_t crc, const void *src, void *dst, size_t len) {
    const uint8_t *s = (const uint8_t *)src;
    uint8_t *d = (uint8_t *)dst;
    uint64_t c = (uint32_t)~crc;
    size_t done = 0;
#define ZT_COPY16(c, s, d) do {                                                                 \
        __m128i raw = _mm_loadu_si128((const __m128i *)(s));                                    \
        c = _mm_crc32_u64(c, (uint64_t)_mm_cvtsi128_si64(raw));                                 \
        c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(raw, 1));                              \
        _mm_storeu_si128((__m128i *)(d), raw);                                                  \
    } while (0)
    if (len >= 3 * 4096) {
        size_t stretch = (len / 3) & ~(size_t)15;
        uint64_t c1 = 0xFFFFFFFFu, c2 = 0xFFFFFFFFu;
        for (size_t i = 0; i < stretch; i += 16) {
            ZT_COPY16(c, s + i, d + i);
            ZT_COPY16(c1, s + stretch + i, d + stretch + i);
            ZT_COPY16(c2, s + 2 * stretch + i, d + 2 * stretch + i);
        }
        c = (uint32_t)~zt_stitch(~(uint32_t)c, ~(uint32_t)c1, ~(uint32_t)c2, stretch);
        done = 3 * stretch;
    }
    for (; done + 16 <= len; done += 16) ZT_COPY16(c, s + done, d + done);
#undef ZT_COPY16
    for (; done < len; done++) { d[done] = s[done]; c = _mm_crc32_u8((uint32_t)c, s[done]); }
    return ~(uint32_t)c;
}
#else
int zt_crc32c_hw_available(void) { return 0; }
uint32_t zt_crc32c_accumulate_f32(uint32_t crc, const void *src, float *dst, size_t count) {
    (void)src; (void)dst; (void)count; return crc;
}
uint32_t zt_crc32c_reduce_f32(uint32_t crc, const void *src, float *dst, size_t count, float divisor,
                              uint32_t *result_crc) {
    (void)src; (void)dst; (void)count; (void)divisor; (void)result_crc; return crc;
}
uint32_t zt_crc32c_copy(uint32_t crc, const void *src, void *dst, size_t len) {
    (void)src; (void)dst; (void)len; return crc;
}
uint32_t zt_crc32c_hw(uint32_t crc, const void *data, size_t len) { (void)data; (void)len; return crc; }
#endif
