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

// fp32 -> IEEE binary16 (fp16), round to nearest even: values from 65520 up overflow to inf,
// values below 2^-14 become fp16 subnormals (multiples of 2^-24) or zero, NaN stays a quiet NaN.
// One result whatever the CPU: F16C's vcvtps2ph where the CPU has it, the same rounding in C elsewhere.
void zt_f32_to_f16(const float *src, uint16_t *dst, size_t count);
// fp16 -> fp32 (exact).
void zt_f16_to_f32(const uint16_t *src, float *dst, size_t count);
// dst[i] = src[i] rounded to the nearest fp16, as fp32 (src and dst may be the same).
void zt_round_f16(const float *src, float *dst, size_t count);
#endif
