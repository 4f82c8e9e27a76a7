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
#else
int zt_crc32c_hw_available(void) { return 0; }
uint32_t zt_crc32c_hw(uint32_t crc, const void *data, size_t len) { (void)data; (void)len; return crc; }
#endif
