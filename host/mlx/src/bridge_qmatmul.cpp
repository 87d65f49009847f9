// Quantized matmul for the CPU: `x @ dequantize(W)^T` (a linear layer) and `x @ dequantize(W)`
// (its gradient w.r.t. x) over MLX's affine layout (packed uint32 rows, per-group scales and
// biases), without ever holding the whole float matrix.
//
// Why: MLX 0.32's CPU `quantized_matmul` is a scalar loop (~2 GFLOP/s here against ~150 for
// f32 OpenBLAS), and its `dequantize` is a chain of elementwise ops (~125 ms for 14M weights).
// For many rows (training, prompt processing) this kernel dequantizes a tile of W rows at a time
// into a small buffer and hands it to sgemm, so the cost is the BLAS matmul plus a fast unpack;
// for a few rows (decoding) it multiplies straight from the packed words, reading 4-bit weights
// instead of f32 ones (one row: the CPU-specific kernels of bridge_qrow.cpp). Gradients flow to x
// only: the base weights of LoRA are frozen.

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>

#include "bridge_bf16mm.h"
#include "bridge_qmatmul.h"
#include "bridge_util.h"
#include "mlx/primitives.h"

using namespace mlxb;

namespace {

template <int BITS>
__attribute__((always_inline)) inline void unpack_rows(const Packed& p, int n0, int n1, float* out) {
  constexpr int per = 32 / BITS;
  constexpr uint32_t mask = (1u << BITS) - 1;
  const int words = p.K / per, groups = p.K / p.group, wpg = p.group / per;
  for (int n = n0; n < n1; n++) {
    const uint32_t* wr = p.w + (size_t)n * words;
    const float* sr = p.scales + (size_t)n * groups;
    const float* br = p.biases + (size_t)n * groups;
    float* o = out + (size_t)(n - n0) * p.K;
    for (int g = 0; g < groups; g++) {
      const float s = sr[g], b = br[g];
      for (int i = 0; i < wpg; i++) {
        const uint32_t v = wr[g * wpg + i];
        float* oo = o + (size_t)(g * wpg + i) * per;
        for (int j = 0; j < per; j++) oo[j] = (float)((v >> (BITS * j)) & mask) * s + b;
      }
    }
  }
}

// y[m, n] = sum_k x[m, k] W[n, k] straight from the packed words, for the rows [n0, n1) and all
// M rows of x; xsum[m, g] is the sum of x over group g (the biases' share).
template <int BITS>
__attribute__((always_inline)) inline void direct_rows(const Packed& p, const float* x, const float* xsum, int M,
                                                       float* y, int n0, int n1) {
  constexpr int per = 32 / BITS;
  constexpr uint32_t mask = (1u << BITS) - 1;
  const int words = p.K / per, groups = p.K / p.group, wpg = p.group / per;
  for (int n = n0; n < n1; n++) {
    const uint32_t* wr = p.w + (size_t)n * words;
    const float* sr = p.scales + (size_t)n * groups;
    const float* br = p.biases + (size_t)n * groups;
    for (int m = 0; m < M; m++) {
      const float* xr = x + (size_t)m * p.K;
      float acc = 0.f;
      for (int g = 0; g < groups; g++) {
        float lanes[per] = {};
        for (int i = 0; i < wpg; i++) {
          const uint32_t v = wr[g * wpg + i];
          const float* xx = xr + (size_t)(g * wpg + i) * per;
          for (int j = 0; j < per; j++) lanes[j] += (float)((v >> (BITS * j)) & mask) * xx[j];
        }
        float dot = 0.f;
        for (int j = 0; j < per; j++) dot += lanes[j];
        acc += sr[g] * dot + br[g] * xsum[(size_t)m * groups + g];
      }
      y[(size_t)m * p.N + n] = acc;
    }
  }
}

#define MLXB_DISPATCH_BITS(bits, call) \
  switch (bits) {                      \
    case 2: { constexpr int B = 2; call; } break; \
    case 4: { constexpr int B = 4; call; } break; \
    default: { constexpr int B = 8; call; } break; \
  }

#if defined(__x86_64__)
// `unpack_rows` for 4 bits with explicit AVX2: one word into eight lanes per step.
__attribute__((target("avx2,fma"))) void unpack4_avx2(const Packed& p, int n0, int n1, float* out) {
  const int words = p.K / 8, groups = p.K / p.group, wpg = p.group / 8;
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i mask = _mm256_set1_epi32(15);
  for (int n = n0; n < n1; n++) {
    const uint32_t* wr = p.w + (size_t)n * words;
    float* o = out + (size_t)(n - n0) * p.K;
    for (int g = 0; g < groups; g++) {
      const __m256 sc = _mm256_set1_ps(p.scales[(size_t)n * groups + g]);
      const __m256 bi = _mm256_set1_ps(p.biases[(size_t)n * groups + g]);
      for (int i = g * wpg; i < (g + 1) * wpg; i++) {
        __m256i q = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)wr[i]), shifts), mask);
        _mm256_storeu_ps(o + (size_t)i * 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), sc, bi));
      }
    }
  }
}

__attribute__((target("avx2,fma"))) void unpack_avx2(const Packed& p, int n0, int n1, float* out) {
  if (p.bits == 4) return unpack4_avx2(p, n0, n1, out);
  MLXB_DISPATCH_BITS(p.bits, unpack_rows<B>(p, n0, n1, out));
}

// `direct_rows` for 4 and 8 bits with explicit AVX2: eight values per step (one 4-bit word or
// two 8-bit words) shifted into lanes, converted and multiplied into up to four rows of x; the
// group's scale is applied once per group, the horizontal sum once per output.
template <int BITS>
__attribute__((target("avx2,fma"))) void direct_avx2_bits(const Packed& p, const float* x, const float* xsum,
                                                          int M, float* y, int n0, int n1) {
  constexpr int per = 32 / BITS;
  const int words = p.K / per, groups = p.K / p.group, steps = p.group / 8;
  const __m256i shifts = BITS == 4 ? _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)
                                   : _mm256_setr_epi32(0, 8, 16, 24, 0, 8, 16, 24);
  const __m256i mask = _mm256_set1_epi32((1 << BITS) - 1);
  for (int n = n0; n < n1; n++) {
    const uint32_t* wr = p.w + (size_t)n * words;
    const float* sr = p.scales + (size_t)n * groups;
    const float* br = p.biases + (size_t)n * groups;
    __m256 tot[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float bias_part[4] = {0.f, 0.f, 0.f, 0.f};
    for (int g = 0; g < groups; g++) {
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      for (int i = 0; i < steps; i++) {
        const int k = g * p.group + i * 8;
        __m256i v = BITS == 4 ? _mm256_set1_epi32((int)wr[k / 8])
                              : _mm256_setr_epi32((int)wr[k / 4], (int)wr[k / 4], (int)wr[k / 4], (int)wr[k / 4],
                                                  (int)wr[k / 4 + 1], (int)wr[k / 4 + 1], (int)wr[k / 4 + 1], (int)wr[k / 4 + 1]);
        __m256 q = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(v, shifts), mask));
        for (int m = 0; m < M; m++) acc[m] = _mm256_fmadd_ps(q, _mm256_loadu_ps(x + (size_t)m * p.K + k), acc[m]);
      }
      const __m256 sc = _mm256_set1_ps(sr[g]);
      for (int m = 0; m < M; m++) {
        tot[m] = _mm256_fmadd_ps(acc[m], sc, tot[m]);
        bias_part[m] += br[g] * xsum[(size_t)m * groups + g];
      }
    }
    for (int m = 0; m < M; m++) y[(size_t)m * p.N + n] = hsum8(tot[m]) + bias_part[m];
  }
}

__attribute__((target("avx2,fma"))) void direct_avx2(const Packed& p, const float* x, const float* xs, int M,
                                                     float* y, int n0, int n1) {
  if (M <= 4 && p.bits == 4) return direct_avx2_bits<4>(p, x, xs, M, y, n0, n1);
  if (M <= 4 && p.bits == 8) return direct_avx2_bits<8>(p, x, xs, M, y, n0, n1);
  MLXB_DISPATCH_BITS(p.bits, direct_rows<B>(p, x, xs, M, y, n0, n1));
}
#endif

void unpack(const Packed& p, int n0, int n1, float* out) {
#if defined(__x86_64__)
  if (use_avx2()) return unpack_avx2(p, n0, n1, out);
#endif
  MLXB_DISPATCH_BITS(p.bits, unpack_rows<B>(p, n0, n1, out));
}

void direct(const Packed& p, const float* x, const float* xs, int M, float* y, int n0, int n1) {
#if defined(__x86_64__)
  if (use_avx2()) return direct_avx2(p, x, xs, M, y, n0, n1);
#endif
  MLXB_DISPATCH_BITS(p.bits, direct_rows<B>(p, x, xs, M, y, n0, n1));
}

// Up to this many rows of x go through `direct` (decoding); more through tiles + sgemm.
int direct_max_rows() {
  static int n = [] {
    const char* e = std::getenv("BRAIN_MLX_QMM_DIRECT_ROWS");
    return e ? std::atoi(e) : 4;
  }();
  return n;
}

// W rows per tile: a tile of f32 rows stays around 8 MB (measured: 2 MB tiles cost ~15% more
// time at 512 rows; BRAIN_MLX_QMM_TILE_BYTES overrides), at least 64 rows.
int tile_rows(int K, int N) {
  static int bytes = [] {
    const char* e = std::getenv("BRAIN_MLX_QMM_TILE_BYTES");
    return e ? std::atoi(e) : (8 << 20);
  }();
  return std::min(N, std::max(64, bytes / (4 * K)));
}

// y (M, N) = x (M, K) @ W^T. bf16: the tiles' products in bf16 (bridge_bf16mm.cpp), not sgemm.
void qmm_t(const Packed& p, const float* x, float* y, int M, bool bf16) {
  if (M <= direct_max_rows()) {
    const int groups = p.K / p.group;
    std::vector<float> xs((size_t)M * groups);
    for (int m = 0; m < M; m++) {
      for (int g = 0; g < groups; g++) {
        float s = 0.f;
        for (int k = 0; k < p.group; k++) s += x[(size_t)m * p.K + g * p.group + k];
        xs[(size_t)m * groups + g] = s;
      }
    }
    if (M == 1 && qmm_row(p, x, xs.data(), y)) return;
    parallel_rows(p.N, [&](int b, int e) { direct(p, x, xs.data(), M, y, b, e); });
    return;
  }
  const int nb = tile_rows(p.K, p.N);
  std::vector<float> tile((size_t)nb * p.K);
  for (int n0 = 0; n0 < p.N; n0 += nb) {
    const int c = std::min(nb, p.N - n0);
    parallel_rows(c, [&](int b, int e) { unpack(p, n0 + b, n0 + e, tile.data() + (size_t)b * p.K); });
    if (bf16) {
      bf16_gemm_nt_f32w(x, p.K, M, tile.data(), c, p.K, y + n0, p.N, false);
    } else {
      sgemm(false, true, M, c, p.K, 1.f, x, p.K, tile.data(), p.K, 0.f, y + n0, p.N);
    }
  }
}

// y (M, K) = x (M, N) @ W.
void qmm_n(const Packed& p, const float* x, float* y, int M, bool bf16) {
  const int nb = tile_rows(p.K, p.N);
  std::vector<float> tile((size_t)nb * p.K);
  for (int n0 = 0; n0 < p.N; n0 += nb) {
    const int c = std::min(nb, p.N - n0);
    parallel_rows(c, [&](int b, int e) { unpack(p, n0 + b, n0 + e, tile.data() + (size_t)b * p.K); });
    if (bf16) {
      bf16_gemm_nn_f32w(x + n0, p.N, M, tile.data(), c, p.K, y, p.K, n0 > 0);
    } else {
      sgemm(false, false, M, p.K, c, 1.f, x + n0, p.N, tile.data(), p.K, n0 == 0 ? 0.f : 1.f, y, p.K);
    }
  }
}

mx::array make_qmm(const mx::array& x, const mx::array& w, const mx::array& s, const mx::array& b,
                   int group, int bits, bool transpose, bool bf16);

class QuantizedMatmulCpu : public mx::UnaryPrimitive {
 public:
  QuantizedMatmulCpu(mx::Stream st, int group, int bits, bool transpose, bool bf16)
      : mx::UnaryPrimitive(st), group_(group), bits_(bits), transpose_(transpose), bf16_(bf16) {}

  // inputs: x (M, Kx) f32 (any strides), w (N, K * bits / 32) uint32, scales, biases (N, K / group) f32.
  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    Packed p{in[1].data<uint32_t>(), in[2].data<float>(), in[3].data<float>(), (int)in[1].shape(0),
             (int)in[1].shape(1) * (32 / bits_), group_, bits_};
    int M = (int)(in[0].size() / in[0].shape(-1));
    enc.dispatch([p, xa = in[0], y = out.data<float>(), M, t = transpose_, bf16 = bf16_]() {
      std::vector<float> scratch;
      const float* x = row_major(xa, scratch);
      if (t) {
        qmm_t(p, x, y, M, bf16);
      } else {
        qmm_n(p, x, y, M, bf16);
      }
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[quantized_matmul_cpu] CPU only; use quantized_matmul on a GPU");
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cot,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    std::vector<mx::array> grads;
    for (int a : argnums) {
      if (a == 0) {
        grads.push_back(make_qmm(cot[0], primals[1], primals[2], primals[3], group_, bits_, !transpose_, bf16_));
      } else {
        // The packed weights are constants (frozen base of LoRA): no gradient flows to them.
        grads.push_back(mx::zeros_like(primals[a], stream()));
      }
    }
    return grads;
  }

  const char* name() const override { return "QuantizedMatmulCpu"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto o = dynamic_cast<const QuantizedMatmulCpu*>(&other);
    return o && o->group_ == group_ && o->bits_ == bits_ && o->transpose_ == transpose_ && o->bf16_ == bf16_;
  }

 private:
  int group_, bits_;
  bool transpose_, bf16_;
};

// The whole f32 matrix (N, K), written once: MLX's CPU `dequantize` is a chain of elementwise
// ops whose intermediates (unpacked integers, then products) each take as much memory as the
// result, which for a 151,936-row output projection adds ~1 GB to the peak.
class DequantizeCpu : public mx::UnaryPrimitive {
 public:
  DequantizeCpu(mx::Stream st, int group, int bits) : mx::UnaryPrimitive(st), group_(group), bits_(bits) {}

  // inputs: w (N, K * bits / 32) uint32, scales, biases (N, K / group) f32.
  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    Packed p{in[0].data<uint32_t>(), in[1].data<float>(), in[2].data<float>(), (int)in[0].shape(0),
             (int)in[0].shape(1) * (32 / bits_), group_, bits_};
    enc.dispatch([p, y = out.data<float>()]() {
      parallel_rows(p.N, [&](int n0, int n1) { unpack(p, n0, n1, y + (size_t)n0 * p.K); });
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[dequantize_cpu] CPU only; use dequantize on a GPU");
  }
  const char* name() const override { return "DequantizeCpu"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto o = dynamic_cast<const DequantizeCpu*>(&other);
    return o && o->group_ == group_ && o->bits_ == bits_;
  }

 private:
  int group_, bits_;
};

// The packing checks both entry points share.
void check_packed(const char* op, const arr w, const arr scales, const arr biases, int group, int bits) {
  const std::string tag = std::string("[") + op + "] ";
  if (bits != 2 && bits != 4 && bits != 8) {
    throw std::invalid_argument(tag + "bits must be 2, 4 or 8, not " + std::to_string(bits));
  }
  if (w->dtype() != mx::uint32 || w->ndim() != 2 || scales->ndim() != 2 || biases == nullptr) {
    throw std::invalid_argument(tag + "expected packed uint32 w (N, K*bits/32), scales and biases (N, K/group)");
  }
  const int K = w->shape(1) * (32 / bits);
  if (group <= 0 || group % (32 / bits) != 0 || K % group != 0 || scales->shape(1) != K / group ||
      scales->shape(0) != w->shape(0) || biases->shape() != scales->shape()) {
    std::ostringstream os;
    os << tag << "group " << group << " does not fit w " << w->shape() << ", scales " << scales->shape()
       << ", biases " << biases->shape();
    throw std::invalid_argument(os.str());
  }
}

mx::array make_qmm(const mx::array& x, const mx::array& w, const mx::array& s, const mx::array& b,
                   int group, int bits, bool transpose, bool bf16) {
  auto st = mx::default_stream(mx::Device::cpu);
  const int N = w.shape(0), K = w.shape(1) * (32 / bits);
  const int inner = transpose ? K : N, outer = transpose ? N : K;
  if (x.shape(-1) != inner) {
    std::ostringstream os;
    os << "[quantized_matmul_cpu] x " << x.shape() << " does not match a " << N << "x" << K
       << " matrix" << (transpose ? " (transposed)" : "");
    throw std::invalid_argument(os.str());
  }
  // x as it is (read through row_major), the packed matrix without nodes when evaluated and contiguous.
  auto f32 = [&](const mx::array& a) { return row_contiguous(mx::astype(a, mx::float32, st), st); };
  mx::Shape shape = x.shape();
  shape.back() = outer;
  auto y = mx::array(shape, mx::float32, std::make_shared<QuantizedMatmulCpu>(st, group, bits, transpose, bf16),
                     {mx::astype(x, mx::float32, st), row_contiguous(w, st), f32(s), f32(b)});
  return x.dtype() == mx::float32 ? y : mx::astype(y, x.dtype(), st);
}

}  // namespace

extern "C" {

// dequantize(w) as f32 (N, K) on the CPU for MLX's affine layout with bits 2, 4 or 8 and biases,
// computed in f32 whatever the scales' dtype. Not differentiable (frozen weights).
int mlxb_dequantize_cpu(const arr w, const arr scales, const arr biases, int group, int bits, arr* out) {
  return guard([&] {
    check_packed("dequantize_cpu", w, scales, biases, group, bits);
    auto st = mx::default_stream(mx::Device::cpu);
    auto f32 = [&](const mx::array& a) { return mx::contiguous(mx::astype(a, mx::float32, st), false, st); };
    mx::Shape shape = {w->shape(0), w->shape(1) * (32 / bits)};
    set_out(out, mx::array(shape, mx::float32, std::make_shared<DequantizeCpu>(st, group, bits),
                           {mx::contiguous(*w, false, st), f32(*scales), f32(*biases)}));
  });
}

// x (..., K) @ dequantize(w)^T (transpose = 1) or x (..., N) @ dequantize(w) (transpose = 0) on
// the CPU, for MLX's affine layout with bits 2, 4 or 8 and biases. Differentiable w.r.t. x.
int mlxb_quantized_matmul_cpu(const arr x, const arr w, const arr scales, const arr biases,
                              int transpose, int group, int bits, arr* out) {
  return guard([&] {
    check_packed("quantized_matmul_cpu", w, scales, biases, group, bits);
    set_out(out, make_qmm(*x, *w, *scales, *biases, group, bits, transpose != 0, false));
  });
}

// mlxb_quantized_matmul_cpu with the dequantized tiles multiplied in bf16 (x rounded to bf16,
// sums in f32) by the AVX-512 BF16 kernel; a few rows of x (decoding) take the same direct
// kernels as there. Refused where the CPU lacks the instructions.
int mlxb_quantized_matmul_cpu_bf16(const arr x, const arr w, const arr scales, const arr biases,
                                   int transpose, int group, int bits, arr* out) {
  return guard([&] {
    check_packed("quantized_matmul_cpu_bf16", w, scales, biases, group, bits);
    if (!bf16_gemm_available()) {
      throw std::runtime_error("[quantized_matmul_cpu_bf16] this CPU lacks AVX-512 BF16 (or BRAIN_MLX_NO_BF16_GEMM=1)");
    }
    const int K = w->shape(1) * (32 / bits);
    if (K % 2) {
      throw std::invalid_argument("[quantized_matmul_cpu_bf16] needs an even number of columns");
    }
    set_out(out, make_qmm(*x, *w, *scales, *biases, group, bits, transpose != 0, true));
  });
}

// The one-row kernel a decoding step takes for (bits, group) on this CPU, as a static string.
const char* mlxb_qmm_row_kernel(int bits, int group) { return qmm_row_kernel(bits, group); }

}  // extern "C"
