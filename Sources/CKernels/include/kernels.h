#ifndef ZEROTRAIN_KERNELS_H
#define ZEROTRAIN_KERNELS_H
#include <stddef.h>

// y[i] = expf(x[i]) for i < count (x and y may be the same). Every result equals glibc's expf
// on a CPU with FMA, bit for bit: with AVX-512, eight lanes at a time run the very arithmetic of
// glibc's __expf_fma (the same 32-entry table of 2^(i/32), the same degree-3 polynomial in
// double, the same fused multiply-adds, one rounding to float at the end); |x| >= 88, NaN and
// the tail go to libm's expf itself. Without AVX-512 every element goes to libm's expf.
void zt_exp_f32(const float *x, float *y, size_t count);

// One AdamW update of count elements (torch.optim.AdamW's arithmetic, see Optim's AdamW), each
// gradient multiplied by gradient_scale as it is read; step_size = lr / (1 - beta1^t),
// bc2_sqrt = sqrt(1 - beta2^t), decay = 1 - lr * weight_decay (1 where the tensor does not decay).
// Sixteen lanes at a time with AVX-512, the same operations in the same order as the portable
// loop (no fused multiply-adds), so every element's result is the same bits either way.
void zt_adamw_update(float *p, const float *g, float *m, float *v, size_t count,
                     float gradient_scale, float step_size, float bc2_sqrt, float decay,
                     float beta2, float one_minus_beta1, float one_minus_beta2, float eps);

// SwiGLU's elementwise parts, with σ(x) = 1 / (1 + expf(-x)) (expf as zt_exp_f32):
// forward h = gate · σ(gate) · up; backward dUp = dh · gate · σ(gate),
// dGate = dh · up · σ(gate) · (1 + gate · (1 - σ(gate))). AVX-512 or portable, the same bits.
void zt_swiglu_forward(const float *gate, const float *up, float *h, size_t count);
void zt_swiglu_backward(const float *dh, const float *gate, const float *up, float *d_gate, float *d_up, size_t count);

// 1 when the kernels above run their AVX-512 lanes.
int zt_kernels_vectorised(void);
// Tests: 0 makes every kernel take its portable loop (1 the AVX-512 lanes, where the CPU has
// them); returns the previous setting. Both give the same bits, so a switch mid-run is harmless.
int zt_kernels_set_vectorised(int on);
#endif
