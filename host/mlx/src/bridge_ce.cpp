// =============================================================================================
// Fused cross-entropy: per-token NLL of `targets` under softmax(hidden @ weight^T), computed in
// vocabulary chunks with an online log-sum-exp, so the (N, V) logits never exist whole. The
// backward primitive recomputes each chunk's logits and turns them into the chunk's gradient in
// place. Matmuls go to cblas_sgemm (OpenBLAS when preloaded); exp and the per-row work run on
// std::threads over rows.
// =============================================================================================

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>

#include "bridge_bf16mm.h"
#include "bridge_util.h"
#include "mlx/primitives.h"

using namespace mlxb;

namespace {

// Row kernels of the fused cross-entropy: max, sum of exp(x - ref), and in-place
// scale * exp(x - ref). AVX2+FMA versions (8 lanes, a degree-7 polynomial exp with ~2 ulp error
// on [-87, 88]) are picked at run time; the scalar versions use std::exp.

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) float hmax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) float row_max_avx2(const float* x, int n) {
  __m256 m0 = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), m1 = m0;
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
  }
  float m = hmax8(_mm256_max_ps(m0, m1));
  for (; i < n; i++) m = std::max(m, x[i]);
  return m;
}

__attribute__((target("avx2,fma"))) float row_sum_exp_avx2(const float* x, int n, float ref) {
  __m256 r = _mm256_set1_ps(ref);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_add_ps(s0, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), r)));
    s1 = _mm256_add_ps(s1, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), r)));
  }
  float s = hsum8(_mm256_add_ps(s0, s1));
  for (; i < n; i++) s += std::exp(x[i] - ref);
  return s;
}

__attribute__((target("avx2,fma"))) void row_scaled_exp_avx2(float* x, int n, float ref,
                                                             float scale) {
  __m256 r = _mm256_set1_ps(ref), sc = _mm256_set1_ps(scale);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(x + i, _mm256_mul_ps(sc, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), r))));
  }
  for (; i < n; i++) x[i] = scale * std::exp(x[i] - ref);
}

#define MLXB_AVX2(call) \
  if (use_avx2()) return call
#else
#define MLXB_AVX2(call)
#endif

float row_max(const float* x, int n) {
  MLXB_AVX2(row_max_avx2(x, n));
  float m = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; i++) m = std::max(m, x[i]);
  return m;
}

float row_sum_exp(const float* x, int n, float ref) {
  MLXB_AVX2(row_sum_exp_avx2(x, n, ref));
  float s = 0.f;
  for (int i = 0; i < n; i++) s += std::exp(x[i] - ref);
  return s;
}

void row_scaled_exp(float* x, int n, float ref, float scale) {
  MLXB_AVX2(row_scaled_exp_avx2(x, n, ref, scale));
  for (int i = 0; i < n; i++) x[i] = scale * std::exp(x[i] - ref);
}

int env_chunk() {
  if (const char* e = std::getenv("BRAIN_MLX_CE_CHUNK")) {
    int v = std::atoi(e);
    if (v > 0) return v;
  }
  return 4096;
}

void check_row_contiguous(const mx::array& a, const char* what) {
  if (!a.flags().row_contiguous) {
    throw std::runtime_error(std::string("[fused_cross_entropy] ") + what + " not contiguous");
  }
}

// The output matrix (V, H): f32, or bf16 (a frozen matrix the model multiplies in bf16, by the
// bf16-product GEMM of bridge_bf16mm.cpp).
struct Weight {
  const float* f32;
  const uint16_t* bf16;

  static Weight of(const mx::array& a) {
    if (a.dtype() == mx::bfloat16) return {nullptr, reinterpret_cast<const uint16_t*>(a.data<mx::bfloat16_t>())};
    return {a.data<float>(), nullptr};
  }
};

// L (N, c) = h (N, H) @ W[v0 : v0 + c]^T.
void chunk_logits(const float* h, const Weight& w, int N, int H, int v0, int c, float* L) {
  if (w.bf16) {
    bf16_gemm_nt(h, N, w.bf16 + (size_t)v0 * H, c, H, L, false);
  } else {
    sgemm(false, true, N, c, H, 1.f, h, H, w.f32 + (size_t)v0 * H, H, 0.f, L, c);
  }
}

// out (N, H) += L (N, c) @ W[v0 : v0 + c].
void add_chunk_product(const float* L, const Weight& w, int N, int H, int v0, int c, float* out) {
  if (w.bf16) {
    bf16_gemm_nn(L, N, w.bf16 + (size_t)v0 * H, c, H, out, true);
  } else {
    sgemm(false, false, N, H, c, 1.f, L, c, w.f32 + (size_t)v0 * H, H, 1.f, out, H);
  }
}

// Forward: inputs (hidden (N,H) f32, weight (V,H) f32 or bf16, targets (N) i32);
// outputs (nll (N) f32, lse (N) f32).
bool ce_profile() {
  static bool on = std::getenv("BRAIN_MLX_CE_PROFILE") != nullptr;
  return on;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Forward: per row, an online log-sum-exp over vocabulary chunks. With `ex` (N, H) given it
// also accumulates the softmax expectation of the weight rows, ex[n] = sum_v p[n, v] W[v] (same
// online rescaling), which makes d hidden a cheap O(N H) op in the backward pass.
void ce_forward(const float* h, const Weight& w, const int32_t* tg, float* nll, float* lse,
                float* ex, int N, int H, int V, int chunk) {
  std::vector<float> m(N, -std::numeric_limits<float>::infinity());
  std::vector<float> s(N, 0.f);
  std::vector<float> tl(N, std::numeric_limits<float>::quiet_NaN());
  std::vector<float> L((size_t)N * chunk);
  if (ex) std::fill(ex, ex + (size_t)N * H, 0.f);
  double t_gemm = 0, t_rows = 0;
  for (int v0 = 0; v0 < V; v0 += chunk) {
    int c = std::min(chunk, V - v0);
    double t0 = ce_profile() ? now_s() : 0;
    chunk_logits(h, w, N, H, v0, c, L.data());
    double t1 = ce_profile() ? now_s() : 0;
    parallel_rows(N, [&](int b, int e) {
      for (int n = b; n < e; n++) {
        float* row = L.data() + (size_t)n * c;
        int t = tg[n];
        if (t >= v0 && t < v0 + c) tl[n] = row[t - v0];
        float mx_ = std::max(row_max(row, c), m[n]);
        float alpha = std::exp(m[n] - mx_);  // 0 on the first chunk (m = -inf)
        if (ex) {
          if (alpha != 1.f) {
            float* er = ex + (size_t)n * H;
            for (int k = 0; k < H; k++) er[k] *= alpha;
          }
          row_scaled_exp(row, c, mx_, 1.f);
          float sum = 0.f;
          for (int j = 0; j < c; j++) sum += row[j];
          s[n] = s[n] * alpha + sum;
        } else {
          s[n] = s[n] * alpha + row_sum_exp(row, c, mx_);
        }
        m[n] = mx_;
      }
    });
    double t2 = ce_profile() ? now_s() : 0;
    if (ex) add_chunk_product(L.data(), w, N, H, v0, c, ex);
    if (ce_profile()) {
      t_gemm += (t1 - t0) + (now_s() - t2);
      t_rows += t2 - t1;
    }
  }
  if (ce_profile()) {
    std::fprintf(stderr, "[fused_ce] forward N=%d H=%d V=%d ex=%d: gemm %.1f ms, rows %.1f ms\n",
                 N, H, V, ex != nullptr, t_gemm * 1e3, t_rows * 1e3);
  }
  for (int n = 0; n < N; n++) {
    lse[n] = m[n] + std::log(s[n]);
    // A target outside [0, V) has no logit: its NLL is NaN, which training code reports.
    nll[n] = lse[n] - tl[n];
    if (ex) {
      float inv = 1.f / s[n];
      float* er = ex + (size_t)n * H;
      for (int k = 0; k < H; k++) er[k] *= inv;
    }
  }
}

// Backward: d_logits[n, v] = (g_nll[n] + g_lse[n]) * softmax[n, v] - g_nll[n] * [v == t_n].
void ce_backward(const float* h, const Weight& w, const int32_t* tg, const float* lse,
                 const float* g_nll, const float* g_lse, float* dh, float* dw, int N, int H,
                 int V, int chunk) {
  std::vector<float> L((size_t)N * chunk);
  double t_gemm = 0, t_rows = 0;
  if (dh) std::fill(dh, dh + (size_t)N * H, 0.f);
  for (int v0 = 0; v0 < V; v0 += chunk) {
    int c = std::min(chunk, V - v0);
    double t0 = ce_profile() ? now_s() : 0;
    chunk_logits(h, w, N, H, v0, c, L.data());
    double t1 = ce_profile() ? now_s() : 0;
    parallel_rows(N, [&](int b, int e) {
      for (int n = b; n < e; n++) {
        float* row = L.data() + (size_t)n * c;
        float g = g_nll[n] + (g_lse ? g_lse[n] : 0.f);
        if (g == 0.f && g_nll[n] == 0.f) {
          std::fill(row, row + c, 0.f);
          continue;
        }
        row_scaled_exp(row, c, lse[n], g);
        int t = tg[n];
        if (t >= v0 && t < v0 + c) row[t - v0] -= g_nll[n];
      }
    });
    double t2 = ce_profile() ? now_s() : 0;
    if (dh) add_chunk_product(L.data(), w, N, H, v0, c, dh);
    if (dw) sgemm(true, false, c, H, N, 1.f, L.data(), c, h, H, 0.f, dw + (size_t)v0 * H, H);
    if (ce_profile()) {
      t_gemm += (t1 - t0) + (now_s() - t2);
      t_rows += t2 - t1;
    }
  }
  if (ce_profile()) {
    std::fprintf(stderr, "[fused_ce] backward N=%d H=%d V=%d dh=%d dw=%d: gemm %.1f ms, rows %.1f ms\n",
                 N, H, V, dh != nullptr, dw != nullptr, t_gemm * 1e3, t_rows * 1e3);
  }
}

class FusedCEGrad : public mx::Primitive {
 public:
  FusedCEGrad(mx::Stream s, int chunk, bool need_dh, bool need_dw)
      : mx::Primitive(s), chunk_(chunk), need_dh_(need_dh), need_dw_(need_dw) {}

  // inputs: hidden, weight, targets, lse, g_nll, g_lse; outputs: [dh][, dw]
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    for (int i = 0; i < 6; i++) check_row_contiguous(in[i], "input");
    for (auto& o : out) o.set_data(mx::allocator::malloc(std::max<size_t>(o.nbytes(), 1)));
    int N = in[0].shape(0), H = in[0].shape(1), V = in[1].shape(0);
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& a : in) enc.set_input_array(a);
    for (auto& o : out) enc.set_output_array(o);
    float* dh = need_dh_ ? out[0].data<float>() : nullptr;
    float* dw = need_dw_ ? out[need_dh_ ? 1 : 0].data<float>() : nullptr;
    enc.dispatch([h = in[0].data<float>(), w = Weight::of(in[1]), t = in[2].data<int32_t>(),
                  lse = in[3].data<float>(), gn = in[4].data<float>(), gl = in[5].data<float>(),
                  dh, dw, N, H, V, chunk = chunk_]() {
      ce_backward(h, w, t, lse, gn, gl, dh, dw, N, H, V, chunk);
    });
  }
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[fused_cross_entropy] no GPU kernel; use the composed path");
  }
  const char* name() const override { return "FusedCrossEntropyVJP"; }

 private:
  int chunk_;
  bool need_dh_, need_dw_;
};

class FusedCE : public mx::Primitive {
 public:
  // expect: also output ex = E_softmax[W] (N, H), used for d hidden (see ce_forward).
  FusedCE(mx::Stream s, int chunk, bool expect)
      : mx::Primitive(s), chunk_(chunk), expect_(expect) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    for (int i = 0; i < 3; i++) check_row_contiguous(in[i], "input");
    for (auto& o : out) o.set_data(mx::allocator::malloc(std::max<size_t>(o.nbytes(), 1)));
    int N = in[0].shape(0), H = in[0].shape(1), V = in[1].shape(0);
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& a : in) enc.set_input_array(a);
    for (auto& o : out) enc.set_output_array(o);
    float* ex = expect_ ? out[2].data<float>() : nullptr;
    enc.dispatch([h = in[0].data<float>(), w = Weight::of(in[1]), t = in[2].data<int32_t>(),
                  nll = out[0].data<float>(), lse = out[1].data<float>(), ex, N, H, V,
                  chunk = chunk_]() { ce_forward(h, w, t, nll, lse, ex, N, H, V, chunk); });
  }
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[fused_cross_entropy] no GPU kernel; use the composed path");
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override {
    bool need_dh = false, need_dw = false;
    for (int a : argnums) {
      need_dh |= a == 0;
      need_dw |= a == 1;
    }
    const auto& h = primals[0];
    const auto& w = primals[1];
    const auto& t = primals[2];
    auto s = stream();
    auto g_nll = mx::contiguous(mx::astype(cotangents[0], mx::float32, s), false, s);
    auto g_lse = mx::contiguous(mx::astype(cotangents[1], mx::float32, s), false, s);
    std::optional<mx::array> dh, dw;
    if (need_dh && expect_) {
      // d h[n] = (g_nll + g_lse)[n] * E_p[W][n] - g_nll[n] * W[t_n]
      auto gsum = mx::expand_dims(mx::add(g_nll, g_lse, s), 1, s);
      auto wt = mx::take(w, t, 0, s);
      dh = mx::subtract(mx::multiply(gsum, outputs[2], s),
                        mx::multiply(mx::expand_dims(g_nll, 1, s), wt, s), s);
      need_dh = false;
    }
    std::vector<mx::Shape> shapes;
    if (need_dh) shapes.push_back(h.shape());
    if (need_dw) shapes.push_back(w.shape());
    if (!shapes.empty()) {
      std::vector<mx::Dtype> dtypes(shapes.size(), mx::float32);
      auto grads = mx::array::make_arrays(
          std::move(shapes), dtypes,
          std::make_shared<FusedCEGrad>(s, chunk_, need_dh, need_dw),
          {h, w, t, outputs[1], g_nll, g_lse});
      size_t gi = 0;
      if (need_dh) dh = grads[gi++];
      if (need_dw) dw = grads[gi++];
    }
    std::vector<mx::array> result;
    for (int a : argnums) {
      if (a == 0) {
        result.push_back(*dh);
      } else if (a == 1) {
        result.push_back(*dw);
      } else {
        result.push_back(mx::zeros_like(primals[a], s));
      }
    }
    return result;
  }

  const char* name() const override { return "FusedCrossEntropy"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto o = dynamic_cast<const FusedCE*>(&other);
    return o && o->chunk_ == chunk_ && o->expect_ == expect_;
  }

 private:
  int chunk_;
  bool expect_;
};

}  // namespace

extern "C" {

// hidden (N, H), weight (V, H), targets (N) integer -> nll (N) f32 and lse (N) f32, both
// differentiable w.r.t. hidden and weight. chunk <= 0: the default (4096, or
// BRAIN_MLX_CE_CHUNK). Runs on the CPU stream; callers on a GPU use composed ops instead.
int mlxb_fused_cross_entropy(const arr hidden, const arr weight, const arr targets, int chunk,
                             arr* nll, arr* lse) {
  return guard([&] {
    if (hidden->ndim() != 2 || weight->ndim() != 2 || targets->ndim() != 1) {
      throw std::invalid_argument(
          "[fused_cross_entropy] expected hidden (N, H), weight (V, H), targets (N)");
    }
    if (hidden->shape(1) != weight->shape(1) || hidden->shape(0) != targets->shape(0)) {
      std::ostringstream os;
      os << "[fused_cross_entropy] shape mismatch: hidden " << hidden->shape() << ", weight "
         << weight->shape() << ", targets " << targets->shape();
      throw std::invalid_argument(os.str());
    }
    auto s = mx::default_stream(mx::Device::cpu);
    auto h = mx::contiguous(mx::astype(*hidden, mx::float32, s), false, s);
    // A bf16 matrix stays bf16 where the CPU multiplies bf16 pairs (bridge_bf16mm.cpp): the
    // products then round the hidden states to bf16 as the model's other frozen matrices do.
    const bool keep_bf16 = weight->dtype() == mx::bfloat16 && bf16_gemm_available();
    auto w = mx::contiguous(keep_bf16 ? *weight : mx::astype(*weight, mx::float32, s), false, s);
    auto t = mx::contiguous(mx::astype(*targets, mx::int32, s), false, s);
    int c = chunk > 0 ? chunk : env_chunk();
    int N = hidden->shape(0), H = hidden->shape(1);
    // Under a gradient transform w.r.t. the hidden states only (LoRA: the output projection is
    // frozen), the forward pass also produces E_softmax[W], so the backward pass needs no second
    // sweep over the vocabulary. With d weight wanted, the backward pass sweeps anyway.
    bool expect = hidden->is_tracer() && !weight->is_tracer() && std::getenv("BRAIN_MLX_CE_NO_EXPECT") == nullptr;
    std::vector<mx::Shape> shapes = {{N}, {N}};
    std::vector<mx::Dtype> dtypes = {mx::float32, mx::float32};
    if (expect) {
      shapes.push_back({N, H});
      dtypes.push_back(mx::float32);
    }
    auto outs = mx::array::make_arrays(std::move(shapes), dtypes,
                                       std::make_shared<FusedCE>(s, c, expect), {h, w, t});
    set_out(nll, outs[0]);
    set_out(lse, outs[1]);
  });
}

// 1 when cblas_sgemm resolves to a BLAS library (else the fused kernel uses plain loops).
int mlxb_has_sgemm() { return find_sgemm() ? 1 : 0; }

}  // extern "C"
