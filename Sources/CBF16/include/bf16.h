#ifndef ZEROTRAIN_BF16_H
#define ZEROTRAIN_BF16_H
#include <stddef.h>
#include <stdint.h>

// fp32 -> bf16, round to nearest even, NaN stays a (quiet) NaN. One result whatever the CPU:
// AVX512_BF16's vcvtneps2bf16 where the CPU has it, the same rounding in plain C elsewhere.
void zt_f32_to_bf16(const float *src, uint16_t *dst, size_t count);
// Rows of a strided matrix: rows x cols from src (row stride src_ld) to dst (row stride dst_ld).
void zt_f32_to_bf16_rows(const float *src, size_t src_ld, uint16_t *dst, size_t dst_ld, size_t rows, size_t cols);
// bf16 -> fp32 (exact).
void zt_bf16_to_f32(const uint16_t *src, float *dst, size_t count);
// 1 when the CPU converts with AVX512_BF16 instructions.
int zt_bf16_native(void);
#endif
