// The bf16-product GEMMs of bridge_bf16mm.cpp, for the other kernels that multiply by a frozen
// matrix in bf16 (the fused cross-entropy's output matrix, the quantized kernel's tiles).
#pragma once

#include <cstdint>

namespace mlxb {

// This CPU has AVX-512 BF16 and BRAIN_MLX_NO_BF16_GEMM is not "1".
bool bf16_gemm_available();

// y (M, N) = bf16(x) (M, K) @ w^T for w (N, K) row-major bf16, or y += ... when `accumulate`.
// Sums in f32; the bridge's threads split the columns. Only where bf16_gemm_available().
void bf16_gemm_nt(const float* x, int M, const uint16_t* w, int N, int K, float* y, bool accumulate);

// y (M, N) = bf16(x) (M, K) @ w for w (K, N) row-major bf16, or y += ... when `accumulate`.
void bf16_gemm_nn(const float* x, int M, const uint16_t* w, int K, int N, float* y, bool accumulate);

// The same for an f32 w (rounded to bf16 first: the quantized kernel's dequantized tiles; an
// even row width), x with row stride lda and y with row stride ldc.
void bf16_gemm_nt_f32w(const float* x, int lda, int M, const float* w, int N, int K, float* y, int ldc, bool accumulate);
void bf16_gemm_nn_f32w(const float* x, int lda, int M, const float* w, int K, int N, float* y, int ldc, bool accumulate);

}  // namespace mlxb
