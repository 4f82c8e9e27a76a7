#ifndef ZEROTRAIN_CRC32C_H
#define ZEROTRAIN_CRC32C_H
#include <stddef.h>
#include <stdint.h>
/// 1 when the CPU has the SSE4.2 crc32 instruction.
int zt_crc32c_hw_available(void);
/// CRC-32C of len bytes at data, continuing from crc (0 to start). Call only when available.
uint32_t zt_crc32c_hw(uint32_t crc, const void *data, size_t len);
/// Fused receive passes (call only when available). Each returns the CRC-32C of the count·4 (len)
/// bytes at src, continuing from crc, while it
///   accumulate: dst[i] = src[i] + dst[i]                       (floats; src may be unaligned)
///   reduce:     dst[i] = (src[i] + dst[i]) / divisor, and *result_crc = CRC-32C of the new dst
///               (divisor 1: no division; result_crc NULL: not computed)
///   copy:       copies len bytes from src to dst.
uint32_t zt_crc32c_accumulate_f32(uint32_t crc, const void *src, float *dst, size_t count);
uint32_t zt_crc32c_reduce_f32(uint32_t crc, const void *src, float *dst, size_t count, float divisor,
                              uint32_t *result_crc);
uint32_t zt_crc32c_copy(uint32_t crc, const void *src, void *dst, size_t len);
#endif
