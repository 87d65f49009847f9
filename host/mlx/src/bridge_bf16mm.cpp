// Matmul with bfloat16 products on the CPU: `x @ W^T` (a linear layer) and `x @ W` (its gradient
// w.r.t. x) for a bfloat16 weight W and float32 x, accumulated in float32 by AVX-512 BF16's
// `vdpbf16ps` (two bf16 products summed into each f32 lane per instruction).
//
// Why: a LoRA step on the CPU is ~80% sgemm over the frozen weights (BENCHMARKS.md), and sgemm
// runs at most one f32 multiply-add per lane per cycle. Real models ship their weights in
// bfloat16; multiplying them as bfloat16 against x rounded to bfloat16, summed in f32, is the
// mixed precision GPUs train in, at twice the multiply rate of sgemm on CPUs that have it. MLX
// 0.32's own CPU bf16 matmul is a scalar loop (~4 GFLOP/s here).
//
// How: W is packed per call into panels of 32 output columns, each a run of (k, k+1) pairs as
// 32-bit words (the layout `vdpbf16ps` multiplies), x is rounded to bf16 rows once; a 12 x 32
// register tile (24 accumulators) walks K in blocks of 512, the panels split across the bridge's
// threads. Packing is one pass over W: a few percent of a training-sized product. Up to
// GEMV_ROWS rows of x (decoding), `x @ W^T` reads W in place instead, with no packing pass.

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "bridge_bf16mm.h"
#include "bridge_util.h"
#include "mlx/primitives.h"

using namespace mlxb;

namespace {

constexpr int NR = 32;   // output columns per panel: two zmm of f32
constexpr int MR = 12;   // rows of x per register tile
constexpr int KCP = 256; // (k, k+1) pairs per block: a 32 KB slice of a panel

#if defined(__x86_64__)
#define BF16_TARGET __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16")))

bool cpu_has_bf16() {
  static const bool ok = [] {
    const char* off = std::getenv("BRAIN_MLX_NO_BF16_GEMM");
    if (off && std::strcmp(off, "1") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  }();
  return ok;
}

// Panels of a weight for y = x @ op(W): `n` output columns, `kp` pairs along the reduction.
// The buffer is left uninitialized where the packers write every word (zeroing it was ~3% of a
// quantized model's step).
struct Panels {
  int n, k, kp, count;
  std::unique_ptr<uint32_t[]> d;  // [panel][pair][32 columns]

  Panels(int n_, int k_) : n(n_), k(k_), kp((k_ + 1) / 2), count((n_ + NR - 1) / NR) {
    d.reset(new uint32_t[(size_t)count * kp * NR]);
  }
  uint32_t* panel(int j) const { return d.get() + (size_t)j * kp * NR; }
};

// o[t] = column t of the 16 x 16 words r (a transpose in registers).
BF16_TARGET inline void transpose16(const __m512i* r, __m512i* o) {
  __m512i a[16], b[16], c[16];
  for (int i = 0; i < 8; i++) {
    a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
    b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
    b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
    b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
  }
  for (int h = 0; h < 2; h++) {
    for (int k = 0; k < 4; k++) {
      c[8 * h + k] = _mm512_shuffle_i32x4(b[8 * h + k], b[8 * h + 4 + k], 0x88);
      c[8 * h + 4 + k] = _mm512_shuffle_i32x4(b[8 * h + k], b[8 * h + 4 + k], 0xdd);
    }
  }
  for (int k = 0; k < 8; k++) {
    o[k] = _mm512_shuffle_i32x4(c[k], c[8 + k], 0x88);
    o[8 + k] = _mm512_shuffle_i32x4(c[k], c[8 + k], 0xdd);
  }
}

// Panel j of W (N, K) for y = x @ W^T: column i is row 32j + i of W, its pairs along K. Whole
// blocks of 16 rows x 16 pairs are transposed in registers, the rest word by word.
BF16_TARGET void pack_transposed_panel(const uint16_t* w, int N, int K, int kp, int j, uint32_t* out) {
  const int cols = std::min(NR, N - j * NR), full = K % 2 == 0 ? kp / 16 * 16 : 0;
  for (int h = 0; h + 16 <= cols && full > 0; h += 16) {
    const uint16_t* rows = w + (size_t)(j * NR + h) * K;
    for (int q0 = 0; q0 < full; q0 += 16) {
      __m512i r[16], o[16];
      for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(rows + (size_t)i * K + 2 * q0);
      transpose16(r, o);
      for (int t = 0; t < 16; t++) _mm512_storeu_si512(out + (size_t)(q0 + t) * NR + h, o[t]);
    }
  }
  const int done_cols = full > 0 ? cols / 16 * 16 : 0;
  for (int i = 0; i < NR; i++) {
    const int q_from = i < done_cols ? full : 0;
    if (i >= cols) {
      for (int q = 0; q < kp; q++) out[(size_t)q * NR + i] = 0;
      continue;
    }
    const uint16_t* row = w + (size_t)(j * NR + i) * K;
    for (int q = q_from; q < K / 2; q++) {
      uint32_t v;
      std::memcpy(&v, row + 2 * q, 4);
      out[(size_t)q * NR + i] = v;
    }
    if (K & 1) out[(size_t)(K / 2) * NR + i] = row[K - 1];
  }
}

// The panels of an (n outputs, k reduced) product, panel(j, out) writing each, across threads.
template <class F>
Panels pack_panels(int n, int k, F&& panel) {
  Panels p(n, k);
  parallel_rows(p.count, [&](int j0, int j1) {
    for (int j = j0; j < j1; j++) panel(j, p.panel(j));
  }, 1);
  return p;
}

Panels pack_transposed(const uint16_t* w, int N, int K) {
  return pack_panels(N, K, [&](int j, uint32_t* out) { pack_transposed_panel(w, N, K, (K + 1) / 2, j, out); });
}

// W (K, N) for y = x @ W: column i of panel j is column 32j + i of W; pairs are rows (2q, 2q + 1).
BF16_TARGET void pack_plain_panel(const uint16_t* w, int K, int N, int kp, int j, uint32_t* out) {
  // Interleave two rows' 16-bit values: word i = (r0[i], r1[i]), 16 columns per zmm.
  const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6,
                                      37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
  const int c0 = j * NR, cols = std::min(NR, N - c0);
  const __mmask32 m = cols == 32 ? 0xffffffffu : ((1u << cols) - 1);
  for (int q = 0; q < kp; q++) {
    const __m512i r0 = _mm512_maskz_loadu_epi16(m, w + (size_t)(2 * q) * N + c0);
    const __m512i r1 =
        2 * q + 1 < K ? _mm512_maskz_loadu_epi16(m, w + (size_t)(2 * q + 1) * N + c0) : _mm512_setzero_si512();
    _mm512_storeu_si512(out + (size_t)q * NR, _mm512_permutex2var_epi16(r0, lo, r1));
    _mm512_storeu_si512(out + (size_t)q * NR + 16, _mm512_permutex2var_epi16(r0, hi, r1));
  }
}

Panels pack_plain(const uint16_t* w, int K, int N) {
  return pack_panels(N, K, [&](int j, uint32_t* out) { pack_plain_panel(w, K, N, (K + 1) / 2, j, out); });
}

// Row r of x (K values) rounded to bf16 (nearest even) into o, padded to an even length.
BF16_TARGET void round_row(const float* r, int K, uint16_t* o) {
  int k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(r + k + 16), _mm512_loadu_ps(r + k));
    _mm512_storeu_si512(o + k, (__m512i)v);
  }
  if (k < K) {
    const int n = K - k;
    const __mmask16 m_lo = (__mmask16)((1u << std::min(16, n)) - 1);
    const __mmask16 m_hi = n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m_hi, r + k + 16), _mm512_maskz_loadu_ps(m_lo, r + k));
    _mm512_mask_storeu_epi16(o + k, (__mmask32)(((uint64_t)1 << n) - 1), (__m512i)v);
  }
  if (K & 1) o[K] = 0;
}

// Rows of x (M, K; row stride lda) as bf16 pairs, each row padded to an even length (every
// word written: no zeroing first).
std::unique_ptr<uint32_t[]> round_rows(const float* x, int lda, int M, int K) {
  const int kp = (K + 1) / 2;
  std::unique_ptr<uint32_t[]> out(new uint32_t[(size_t)M * kp]);
  for_rows(M, K, [&](int m0, int m1) {
    for (int m = m0; m < m1; m++) round_row(x + (size_t)m * lda, K, reinterpret_cast<uint16_t*>(out.get() + (size_t)m * kp));
  });
  return out;
}

// c[R rows, cols] (+)= a[R rows, kps pairs] · b[kps pairs, 32 columns].
template <int R>
BF16_TARGET void tile(const uint32_t* a, int lda, const uint32_t* b, int kps, float* c, int ldc, int cols, bool add) {
  __m512 c0[R], c1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  for (int q = 0; q < kps; q++) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (size_t)q * NR);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + (size_t)q * NR + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)r * lda + q]);
      c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
    }
  }
  const __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
#pragma GCC unroll 16
  for (int r = 0; r < R; r++) {
    float* cr = c + (size_t)r * ldc;
    if (add) {
      c0[r] = _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(m0, cr));
      c1[r] = _mm512_add_ps(c1[r], _mm512_maskz_loadu_ps(m1, cr + 16));
    }
    _mm512_mask_storeu_ps(cr, m0, c0[r]);
    _mm512_mask_storeu_ps(cr + 16, m1, c1[r]);
  }
}

using TileFn = void (*)(const uint32_t*, int, const uint32_t*, int, float*, int, int, bool);
template <int... R>
constexpr std::array<TileFn, sizeof...(R)> tiles(std::integer_sequence<int, R...>) {
  return {tile<R + 1>...};
}
const auto kTiles = tiles(std::make_integer_sequence<int, MR>{});

// y (M, p.n; row stride ldc) (+)= bf16(x) (M, p.k; row stride lda) @ panels.
void gemm(const float* x, int lda, int M, const Panels& p, float* y, int ldc, bool accumulate) {
  const auto a = round_rows(x, lda, M, p.k);
  parallel_rows(p.count, [&](int j0, int j1) {
    for (int j = j0; j < j1; j++) {
      const int cols = std::min(NR, p.n - j * NR);
      for (int q0 = 0; q0 < p.kp; q0 += KCP) {
        const int kps = std::min(KCP, p.kp - q0);
        const uint32_t* b = p.panel(j) + (size_t)q0 * NR;
        for (int m = 0; m < M; m += MR) {
          const int r = std::min(MR, M - m);
          kTiles[r - 1](a.get() + (size_t)m * p.kp + q0, p.kp, b, kps, y + (size_t)m * ldc + j * NR, ldc, cols,
                        accumulate || q0 > 0);
        }
      }
    }
  }, 1);
}

// Up to this many rows of x, `x @ W^T` reads W in place instead of packing it (decoding: one
// row per token, where packing would read and write the whole matrix once more than the product
// reads it). A row of W is already a run of (k, k+1) pairs.
constexpr int GEMV_ROWS = 4;
constexpr int GEMV_UNROLL = 4;  // 64-byte chunks of a row in flight: independent sums

// y[r, n] (+)= bf16(x) row r · W row n, for R rows of x (pairs, row stride kp). Each thread walks
// its rows of W front to back — one linear stream, which is what keeps the most reads in flight
// (four rows side by side, or a group's rows prefetched ahead, were both slower on small K).
template <int R>
BF16_TARGET void dot_row(const uint32_t* a, int kp, const uint16_t* w, int K, int n, float* y, int ldc, bool add) {
  constexpr int U = GEMV_UNROLL;
  __m512 acc[R][U];
#pragma GCC unroll 16
  for (int r = 0; r < R; r++)
    for (int u = 0; u < U; u++) acc[r][u] = _mm512_setzero_ps();
  const uint16_t* wr = w + (size_t)n * K;
  auto x_at = [a, kp](int r, int k) { return reinterpret_cast<const uint16_t*>(a + (size_t)r * kp) + k; };
  int k = 0;
  for (; k + 32 * U <= K; k += 32 * U) {
    __m512bh wv[U];
#pragma GCC unroll 4
    for (int u = 0; u < U; u++) {
      _mm_prefetch(reinterpret_cast<const char*>(wr + k + 32 * u) + 2048, _MM_HINT_T0);
      wv[u] = (__m512bh)_mm512_loadu_si512(wr + k + 32 * u);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
      for (int u = 0; u < U; u++) acc[r][u] = _mm512_dpbf16_ps(acc[r][u], (__m512bh)_mm512_loadu_si512(x_at(r, k + 32 * u)), wv[u]);
  }
  for (; k < K; k += 32) {
    // Masked lanes are not read: no reading past a row or x.
    const __mmask32 m = K - k >= 32 ? ~(__mmask32)0 : (__mmask32)(((uint64_t)1 << (K - k)) - 1);
    const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, wr + k);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r][0] = _mm512_dpbf16_ps(acc[r][0], (__m512bh)_mm512_maskz_loadu_epi16(m, x_at(r, k)), wv);
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; r++) {
    __m512 s = acc[r][0];
    for (int u = 1; u < U; u++) s = _mm512_add_ps(s, acc[r][u]);
    float* o = y + (size_t)r * ldc + n;
    const float v = _mm512_reduce_add_ps(s);
    *o = add ? *o + v : v;
  }
}

using DotFn = void (*)(const uint32_t*, int, const uint16_t*, int, int, float*, int, bool);
template <int... R>
constexpr std::array<DotFn, sizeof...(R)> dots(std::integer_sequence<int, R...>) {
  return {dot_row<R + 1>...};
}
const auto kDots = dots(std::make_integer_sequence<int, GEMV_ROWS>{});

// y (M, N) (+)= bf16(x) (M, K) @ w^T for 1 <= M <= GEMV_ROWS: W streamed once, rows across threads.
void gemv_nt(const float* x, int M, const uint16_t* w, int N, int K, float* y, bool accumulate) {
  const int kp = (K + 1) / 2;
  const auto a = round_rows(x, K, M, K);
  // A thread per ~64 KB of W at least: smaller products are not worth waking the others.
  parallel_rows(N, [&](int n0, int n1) {
    for (int n = n0; n < n1; n++) kDots[M - 1](a.get(), kp, w, K, n, y, N, accumulate);
  }, std::max(1, (1 << 15) / std::max(1, K)), /*spin=*/true);
}

// y_i (M, N_i) = bf16(x) (M, K) @ W_i^T for matrices that share x (q, k, v; gate, up), M <=
// GEMV_ROWS: x rounded once, and the rows of all W_i split across threads as one list — one
// hand-off to the workers instead of one per matrix, and each thread streams on from one matrix
// into the next.
void gemv_nt_group(const float* x, int M, const std::vector<const uint16_t*>& ws, const std::vector<int>& ns, int K,
                   const std::vector<float*>& ys) {
  const int kp = (K + 1) / 2;
  const auto a = round_rows(x, K, M, K);
  int total = 0;
  for (int n : ns) total += n;
  parallel_rows(total, [&](int r0, int r1) {
    size_t i = 0;
    int first = 0;  // the group row where matrix i starts
    for (int r = r0; r < r1; r++) {
      while (r >= first + ns[i]) first += ns[i++];
      kDots[M - 1](a.get(), kp, ws[i], K, r - first, ys[i], ns[i], false);
    }
  }, std::max(1, (1 << 15) / std::max(1, K)), /*spin=*/true);
}
#else
bool cpu_has_bf16() { return false; }
#endif

}  // namespace

namespace mlxb {

[[maybe_unused]] constexpr const char* kNoBf16 = "[bf16 gemm] needs an x86-64 CPU with AVX-512 BF16";

bool bf16_gemm_available() { return cpu_has_bf16(); }

#if defined(__x86_64__)
void bf16_gemm_nt(const float* x, int M, const uint16_t* w, int N, int K, float* y, bool accumulate) {
  if (M >= 1 && M <= GEMV_ROWS) {
    gemv_nt(x, M, w, N, K, y, accumulate);
  } else {
    gemm(x, K, M, pack_transposed(w, N, K), y, N, accumulate);
  }
}

void bf16_gemm_nn(const float* x, int M, const uint16_t* w, int K, int N, float* y, bool accumulate) {
  gemm(x, K, M, pack_plain(w, K, N), y, N, accumulate);
}

// An f32 matrix's rows rounded to bf16 (an even width: the rows are then back to back).
std::unique_ptr<uint32_t[]> bf16_matrix(const float* w, int rows, int cols) {
  if (cols % 2) throw std::invalid_argument("[bf16 gemm] an f32 matrix needs an even number of columns");
  return round_rows(w, cols, rows, cols);
}

void bf16_gemm_nt_f32w(const float* x, int lda, int M, const float* w, int N, int K, float* y, int ldc, bool accumulate) {
  const auto wb = bf16_matrix(w, N, K);
  gemm(x, lda, M, pack_transposed(reinterpret_cast<const uint16_t*>(wb.get()), N, K), y, ldc, accumulate);
}

void bf16_gemm_nn_f32w(const float* x, int lda, int M, const float* w, int K, int N, float* y, int ldc, bool accumulate) {
  const auto wb = bf16_matrix(w, K, N);
  gemm(x, lda, M, pack_plain(reinterpret_cast<const uint16_t*>(wb.get()), K, N), y, ldc, accumulate);
}
#else
void bf16_gemm_nt(const float*, int, const uint16_t*, int, int, float*, bool) { throw std::runtime_error(kNoBf16); }
void bf16_gemm_nn(const float*, int, const uint16_t*, int, int, float*, bool) { throw std::runtime_error(kNoBf16); }
void bf16_gemm_nt_f32w(const float*, int, int, const float*, int, int, float*, int, bool) { throw std::runtime_error(kNoBf16); }
void bf16_gemm_nn_f32w(const float*, int, int, const float*, int, int, float*, int, bool) { throw std::runtime_error(kNoBf16); }
#endif

}  // namespace mlxb

namespace {

mx::array make_bf16mm(const mx::array& x, const mx::array& w, bool transpose);

// The gradient of a bf16 weight w in y = x @ w^T (transpose) or x @ w, given y's cotangent g. A
// trained weight (full fine-tuning) gets it in f32 by MLX's matmul: rare on this path (LoRA's
// base weights are frozen), so correct rather than fast.
mx::array weight_grad(const mx::array& x, const mx::array& g, const mx::array& w, bool transpose, mx::Stream st) {
  const int inner = x.shape(-1), outer = g.shape(-1);
  auto x2 = mx::reshape(x, {-1, inner}, st);
  auto g2 = mx::reshape(mx::astype(g, mx::float32, st), {-1, outer}, st);
  auto dw = transpose ? mx::matmul(mx::transpose(g2, st), x2, st) : mx::matmul(mx::transpose(x2, st), g2, st);
  return mx::astype(dw, w.dtype(), st);
}

class Bf16MatmulCpu : public mx::UnaryPrimitive {
 public:
  Bf16MatmulCpu(mx::Stream st, bool transpose) : mx::UnaryPrimitive(st), transpose_(transpose) {}

  // inputs: x (..., inner) f32 (any strides), w (R, C) bf16 row-major; transpose: y = x @ w^T (inner C), else x @ w (inner R).
  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    const int R = (int)in[1].shape(0), C = (int)in[1].shape(1);
    const int M = (int)(in[0].size() / in[0].shape(-1));
    enc.dispatch([xa = in[0], w = reinterpret_cast<const uint16_t*>(in[1].data<mx::bfloat16_t>()),
                  y = out.data<float>(), M, R, C, t = transpose_]() {
      std::vector<float> scratch;
      const float* x = row_major(xa, scratch);
      if (t) {
        bf16_gemm_nt(x, M, w, R, C, y, false);
      } else {
        bf16_gemm_nn(x, M, w, R, C, y, false);
      }
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[bf16_matmul_cpu] CPU only; use matmul on a GPU");
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cot,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    std::vector<mx::array> grads;
    const auto& x = primals[0];
    const auto& w = primals[1];
    for (int a : argnums) {
      if (a == 0) {
        grads.push_back(make_bf16mm(cot[0], w, !transpose_));
      } else {
        grads.push_back(weight_grad(x, cot[0], w, transpose_, stream()));
      }
    }
    return grads;
  }

  const char* name() const override { return "Bf16MatmulCpu"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto o = dynamic_cast<const Bf16MatmulCpu*>(&other);
    return o && o->transpose_ == transpose_;
  }

 private:
  bool transpose_;
};

mx::array make_bf16mm(const mx::array& x, const mx::array& w, bool transpose) {
  auto st = mx::default_stream(mx::Device::cpu);
  if (w.dtype() != mx::bfloat16 || w.ndim() != 2) {
    std::ostringstream os;
    os << "[bf16_matmul_cpu] w must be a 2-D bfloat16 matrix, not " << w.shape() << " " << w.dtype();
    throw std::invalid_argument(os.str());
  }
  const int inner = transpose ? w.shape(1) : w.shape(0), outer = transpose ? w.shape(0) : w.shape(1);
  if (x.ndim() < 1 || x.shape(-1) != inner) {
    std::ostringstream os;
    os << "[bf16_matmul_cpu] x " << x.shape() << " does not match w " << w.shape()
       << (transpose ? " (transposed)" : "");
    throw std::invalid_argument(os.str());
  }
  mx::Shape shape = x.shape();
  shape.back() = outer;
  // x as it is (the kernel reads a strided one through row_major), w without a node when it is an
  // evaluated contiguous matrix.
  return mx::array(shape, mx::float32, std::make_shared<Bf16MatmulCpu>(st, transpose),
                   {mx::astype(x, mx::float32, st), row_contiguous(w, st)});
}

// x @ W_i^T for several bf16 W_i (N_i, K) sharing x, as one op with one output per W_i.
class Bf16MatmulGroupCpu : public mx::Primitive {
 public:
  explicit Bf16MatmulGroupCpu(mx::Stream st) : mx::Primitive(st) {}

  // inputs: x (..., K) f32 (any strides), then the W_i row-major; outputs: y_i (..., N_i) f32.
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    const int K = (int)in[0].shape(-1);
    const int M = (int)(in[0].size() / std::max(1, K));
    std::vector<const uint16_t*> ws;
    std::vector<int> ns;
    std::vector<float*> ys;
    for (size_t i = 1; i < in.size(); i++) {
      ws.push_back(reinterpret_cast<const uint16_t*>(in[i].data<mx::bfloat16_t>()));
      ns.push_back((int)in[i].shape(0));
      ys.push_back(out[i - 1].data<float>());
    }
    enc.dispatch([xa = in[0], ws = std::move(ws), ns = std::move(ns), ys = std::move(ys), M, K]() {
      std::vector<float> scratch;
      const float* x = row_major(xa, scratch);
#if defined(__x86_64__)
      if (M >= 1 && M <= GEMV_ROWS) {
        gemv_nt_group(x, M, ws, ns, K, ys);
        return;
      }
#endif
      for (size_t i = 0; i < ws.size(); i++) bf16_gemm_nt(x, M, ws[i], ns[i], K, ys[i], false);
    });
  }
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[bf16_matmul_group_cpu] CPU only; use matmul on a GPU");
  }

  // The same gradients as the separate products: x's is the sum of each output's.
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cot,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    std::vector<mx::array> grads;
    auto st = stream();
    for (int a : argnums) {
      if (a == 0) {
        std::optional<mx::array> dx;
        for (size_t i = 0; i < cot.size(); i++) {
          auto g = make_bf16mm(cot[i], primals[i + 1], false);
          dx = dx ? mx::add(*dx, g, st) : g;
        }
        grads.push_back(*dx);
      } else {
        grads.push_back(weight_grad(primals[0], cot[a - 1], primals[a], true, st));
      }
    }
    return grads;
  }

  const char* name() const override { return "Bf16MatmulGroupCpu"; }
  bool is_equivalent(const mx::Primitive& other) const override { return dynamic_cast<const Bf16MatmulGroupCpu*>(&other) != nullptr; }
};

}  // namespace

extern "C" {

// 1 when this CPU multiplies bf16 pairs in hardware (AVX-512 BF16) and BRAIN_MLX_NO_BF16_GEMM is
// not "1": bf16_matmul_cpu then runs; otherwise it is refused.
int mlxb_has_bf16_gemm() { return cpu_has_bf16() ? 1 : 0; }

// x (..., K) @ w^T for w (N, K) (transpose = 1), or x (..., K) @ w for w (K, N) (transpose = 0):
// bf16 products of x rounded to bf16 and w, summed in f32; f32 out. Differentiable w.r.t. both.
int mlxb_bf16_matmul_cpu(const arr x, const arr w, int transpose, arr* out) {
  return guard([&] {
    if (!cpu_has_bf16()) {
      throw std::runtime_error("[bf16_matmul_cpu] this CPU lacks AVX-512 BF16 (or BRAIN_MLX_NO_BF16_GEMM=1)");
    }
    set_out(out, make_bf16mm(*x, *w, transpose != 0));
  });
}


// x (..., K) @ w_i^T for n bf16 matrices w_i (N_i, K): one op, n f32 outputs (decoding's q, k, v
// and gate, up). Differentiable as the separate products are.
int mlxb_bf16_matmul_group_cpu(const arr x, const arr* ws, int n, mlxb_vec** out) {
  return guard([&] {
    if (!cpu_has_bf16()) {
      throw std::runtime_error("[bf16_matmul_group_cpu] this CPU lacks AVX-512 BF16 (or BRAIN_MLX_NO_BF16_GEMM=1)");
    }
    if (n < 1) throw std::invalid_argument("[bf16_matmul_group_cpu] needs at least one matrix");
    if (x->ndim() < 1) throw std::invalid_argument("[bf16_matmul_group_cpu] x must have at least one axis");
    auto st = mx::default_stream(mx::Device::cpu);
    const int K = x->shape(-1);
    std::vector<mx::array> inputs{mx::astype(*x, mx::float32, st)};
    std::vector<mx::Shape> shapes;
    for (int i = 0; i < n; i++) {
      const mx::array& w = *ws[i];
      if (w.dtype() != mx::bfloat16 || w.ndim() != 2 || w.shape(1) != K) {
        std::ostringstream os;
        os << "[bf16_matmul_group_cpu] matrix " << i << " must be a 2-D bfloat16 (N, " << K << ") matrix, not " << w.shape() << " "
           << w.dtype();
        throw std::invalid_argument(os.str());
      }
      inputs.push_back(row_contiguous(w, st));
      mx::Shape shape = x->shape();
      shape.back() = w.shape(0);
      shapes.push_back(shape);
    }
    std::vector<mx::Dtype> dtypes(n, mx::float32);
    *out = new mlxb_vec{mx::array::make_arrays(std::move(shapes), dtypes, std::make_shared<Bf16MatmulGroupCpu>(st), inputs)};
  });
}

}  // extern "C"
