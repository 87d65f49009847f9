// RMSNorm, `x / sqrt(mean(x^2) + eps) * w` over the last axis, as one CPU primitive, and its
// gradient as another.
//
// Why: MLX 0.32 has no CPU kernel for `fast::rms_norm`; on the CPU it falls back to composed ops
// (square, mean, add, rsqrt, two multiplies) and autodiff differentiates those (about ten more
// passes), each a pass over (tokens x hidden) floats on MLX's one CPU stream thread. A block has
// two norms (four more per head with Qwen3's q/k norms). Here each direction is one pass over
// the rows, AVX2, split across threads for large inputs.

#include <cmath>
#include <memory>
#include <sstream>

#include "bridge_util.h"
#include "mlx/primitives.h"

using namespace mlxb;

namespace {

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) float sum_squares_avx2(const float* x, int n, int* done) {
  __m256 acc = _mm256_setzero_ps();
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 v = _mm256_loadu_ps(x + j);
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  *done = j;
  return hsum8(acc);
}

// y = x * r * w over [0, n); returns where the scalar tail starts.
__attribute__((target("avx2,fma"))) int normalize_avx2(const float* x, const float* w, float r, float* y, int n) {
  const __m256 rv = _mm256_set1_ps(r);
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + j), rv);
    _mm256_storeu_ps(y + j, w ? _mm256_mul_ps(v, _mm256_loadu_ps(w + j)) : v);
  }
  return j;
}

// s = sum(g * w * x) over [0, n).
__attribute__((target("avx2,fma"))) float dot3_avx2(const float* g, const float* w, const float* x, int n, int* done) {
  __m256 acc = _mm256_setzero_ps();
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 gw = w ? _mm256_mul_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(w + j)) : _mm256_loadu_ps(g + j);
    acc = _mm256_fmadd_ps(gw, _mm256_loadu_ps(x + j), acc);
  }
  *done = j;
  return hsum8(acc);
}

// gx = r * g * w - c * x over [0, n).
__attribute__((target("avx2,fma"))) int dx_avx2(const float* g, const float* w, const float* x, float r, float c,
                                                float* gx, int n) {
  const __m256 rv = _mm256_set1_ps(r), cv = _mm256_set1_ps(c);
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 gw = w ? _mm256_mul_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(w + j)) : _mm256_loadu_ps(g + j);
    _mm256_storeu_ps(gx + j, _mm256_fnmadd_ps(cv, _mm256_loadu_ps(x + j), _mm256_mul_ps(rv, gw)));
  }
  return j;
}
#endif

// 1 / sqrt(mean(x^2) + eps) of one row.
float inv_rms(const float* x, int n, float eps) {
  int j = 0;
  float s = 0.f;
#if defined(__x86_64__)
  if (use_avx2()) s = sum_squares_avx2(x, n, &j);
#endif
  for (; j < n; j++) s += x[j] * x[j];
  return 1.f / std::sqrt(s / n + eps);
}

void forward_row(const float* x, const float* w, float eps, float* y, int n) {
  const float r = inv_rms(x, n, eps);
  int j = 0;
#if defined(__x86_64__)
  if (use_avx2()) j = normalize_avx2(x, w, r, y, n);
#endif
  for (; j < n; j++) y[j] = x[j] * r * (w ? w[j] : 1.f);
}

// d/dx of y = x r w with r = (mean(x^2) + eps)^-1/2: gx = r (g w) - x r^3 sum(g w x) / n.
void backward_row(const float* x, const float* w, const float* g, float eps, float* gx, int n) {
  const float r = inv_rms(x, n, eps);
  int j = 0;
  float s = 0.f;
#if defined(__x86_64__)
  if (use_avx2()) s = dot3_avx2(g, w, x, n, &j);
#endif
  for (; j < n; j++) s += g[j] * (w ? w[j] : 1.f) * x[j];
  const float c = r * r * r * s / n;
  j = 0;
#if defined(__x86_64__)
  if (use_avx2()) j = dx_avx2(g, w, x, r, c, gx, n);
#endif
  for (; j < n; j++) gx[j] = r * g[j] * (w ? w[j] : 1.f) - c * x[j];
}

class RmsNormGrad : public mx::Primitive {
 public:
  RmsNormGrad(mx::Stream s, float eps, bool weighted, bool want_gw)
      : mx::Primitive(s), eps_(eps), weighted_(weighted), want_gw_(want_gw) {}

  // inputs: x, w (or a 1-element placeholder), cotangent; outputs: gx, and gw when asked for.
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    const int n = in[0].shape(-1), rows = n ? (int)(in[0].size() / n) : 0;
    enc.dispatch([x = in[0].data<float>(), w = weighted_ ? in[1].data<float>() : nullptr, g = in[2].data<float>(),
                  gx = out[0].data<float>(), gw = want_gw_ ? out[1].data<float>() : nullptr, eps = eps_, n, rows]() {
      for_rows(rows, n, [&](int r0, int r1) {
        for (int r = r0; r < r1; r++) backward_row(x + (size_t)r * n, w, g + (size_t)r * n, eps, gx + (size_t)r * n, n);
      });
      if (gw) {
        // The weight's gradient, sum over rows of g * x * r (full fine-tuning only: LoRA freezes it).
        std::fill(gw, gw + n, 0.f);
        for (int r = 0; r < rows; r++) {
          const float* xr = x + (size_t)r * n;
          const float* gr = g + (size_t)r * n;
          const float ir = inv_rms(xr, n, eps);
          for (int j = 0; j < n; j++) gw[j] += gr[j] * xr[j] * ir;
        }
      }
    });
  }
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[rms_norm_cpu] CPU only; use fast::rms_norm on a GPU");
  }
  const char* name() const override { return "RmsNormCpuVJP"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto o = dynamic_cast<const RmsNormGrad*>(&other);
    return o && o->eps_ == eps_ && o->weighted_ == weighted_ && o->want_gw_ == want_gw_;
  }

 private:
  float eps_;
  bool weighted_, want_gw_;
};

class RmsNorm : public mx::UnaryPrimitive {
 public:
  RmsNorm(mx::Stream s, float eps, bool weighted) : mx::UnaryPrimitive(s), eps_(eps), weighted_(weighted) {}

  // inputs: x (contiguous), w (or a placeholder).
  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    const int n = in[0].shape(-1), rows = n ? (int)(in[0].size() / n) : 0;
    enc.dispatch([x = in[0].data<float>(), w = weighted_ ? in[1].data<float>() : nullptr, y = out.data<float>(),
                  eps = eps_, n, rows]() {
      for_rows(rows, n, [&](int r0, int r1) {
        for (int r = r0; r < r1; r++) forward_row(x + (size_t)r * n, w, eps, y + (size_t)r * n, n);
      });
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[rms_norm_cpu] CPU only; use fast::rms_norm on a GPU");
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cot,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    auto s = stream();
    auto c = mx::contiguous(mx::astype(cot[0], mx::float32, s), false, s);
    bool want_w = false;
    for (int a : argnums) want_w |= a == 1;
    const bool gw = weighted_ && want_w;
    std::vector<mx::Shape> shapes = {primals[0].shape()};
    std::vector<mx::Dtype> types = {mx::float32};
    if (gw) {
      shapes.push_back(primals[1].shape());
      types.push_back(mx::float32);
    }
    auto grads = mx::array::make_arrays(shapes, types, std::make_shared<RmsNormGrad>(s, eps_, weighted_, gw),
                                        {primals[0], primals[1], c});
    std::vector<mx::array> out;
    for (int a : argnums) {
      if (a == 0) {
        out.push_back(grads[0]);
      } else {
        out.push_back(gw ? grads[1] : mx::zeros_like(primals[1], s));
      }
    }
    return out;
  }

  const char* name() const override { return "RmsNormCpu"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto o = dynamic_cast<const RmsNorm*>(&other);
    return o && o->eps_ == eps_ && o->weighted_ == weighted_;
  }

 private:
  float eps_;
  bool weighted_;
};

}  // namespace

extern "C" {

// RMSNorm over the last axis of x, times w (shape (D,)) when given, on the CPU; other dtypes are
// computed in f32 and cast back. Differentiable w.r.t. x and w.
int mlxb_rms_norm_cpu(const arr x, const arr w, float eps, arr* out) {
  return guard([&] {
    if (x->ndim() == 0) throw std::invalid_argument("[rms_norm_cpu] x must have at least one axis");
    if (w && (w->ndim() != 1 || w->shape(0) != x->shape(-1))) {
      std::ostringstream os;
      os << "[rms_norm_cpu] weight " << w->shape() << " does not match the last axis of x " << x->shape();
      throw std::invalid_argument(os.str());
    }
    auto s = mx::default_stream(mx::Device::cpu);
    auto f32 = [&](const mx::array& a) { return row_contiguous(mx::astype(a, mx::float32, s), s); };
    auto wv = w ? f32(*w) : mx::zeros({1}, mx::float32, s);
    auto y = mx::array(x->shape(), mx::float32, std::make_shared<RmsNorm>(s, eps, w != nullptr), {f32(*x), wv});
    set_out(out, x->dtype() == mx::float32 ? y : mx::astype(y, x->dtype(), s));
  });
}

}  // extern "C"
