// What the quantized matmul (bridge_qmatmul.cpp) shares with its one-row decoding kernels
// (bridge_qrow.cpp): the packed layout, and the entry point that picks a kernel by the CPU.
#pragma once

#include <cstdint>

namespace mlxb {

// The packed matrix: N rows of K values, `bits` each, `32 / bits` per uint32 word, lowest bits
// first; value k of row n is q * scales[n, k / group] + biases[n, k / group].
struct Packed {
  const uint32_t* w;
  const float* scales;
  const float* biases;
  int N, K, group, bits;
};

// y (1, N) = x (1, K) @ W^T by the fastest one-row kernel this CPU has for W's width and group,
// over the bridge's threads; xsum[g] is the sum of x over group g. False when none applies (the
// caller's general loop then runs).
bool qmm_row(const Packed& p, const float* x, const float* xsum, float* y);

// The name of the kernel `qmm_row` runs for (bits, group): "vnni-int8", "vbmi", "avx2-bytes",
// or "general" when it declines.
const char* qmm_row_kernel(int bits, int group);

}  // namespace mlxb
