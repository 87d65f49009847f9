// SwiGLU's gate, `silu(g) * u`, as one CPU primitive, and its gradient as another.
//
// Why: composed from MLX ops this is sigmoid, two multiplies forward and five more elementwise
// ops backward, each a pass over (tokens x intermediate) floats on MLX's one CPU stream thread,
// and the wheel's x86 sigmoid is a scalar exp calling libm's fmaf. Profiled on a SmolLM2 LoRA
// step, sigmoid alone took ~20% of the wall time. Here each direction is one pass, AVX2 exp,
// split across threads.

#include <cmath>
#include <cstdlib>
#include <memory>

#include "bridge_util.h"
#include "mlx/primitives.h"

using namespace mlxb;

namespace {

inline float sigmoid1(float x) {
  return 1.f / (1.f + std::exp(-x));
}

#if defined(__x86_64__)
// The AVX2 parts of the two ranges below; they return where the scalar tail starts.
__attribute__((target("avx2,fma"))) size_t forward_avx2(const float* g, const float* u, float* y, size_t b,
                                                        size_t e) {
  const __m256 one = _mm256_set1_ps(1.f);
  size_t j = b;
  for (; j + 8 <= e; j += 8) {
    __m256 gv = _mm256_loadu_ps(g + j);
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
    _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_mul_ps(gv, s), _mm256_loadu_ps(u + j)));
  }
  return j;
}

__attribute__((target("avx2,fma"))) size_t backward_avx2(const float* g, const float* u, const float* c,
                                                         float* dg, float* du, size_t b, size_t e) {
  const __m256 one = _mm256_set1_ps(1.f);
  size_t j = b;
  for (; j + 8 <= e; j += 8) {
    __m256 gv = _mm256_loadu_ps(g + j), cv = _mm256_loadu_ps(c + j);
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
    __m256 cs = _mm256_mul_ps(cv, s);
    __m256 dsilu = _mm256_fmadd_ps(gv, _mm256_sub_ps(one, s), one);
    _mm256_storeu_ps(dg + j, _mm256_mul_ps(_mm256_mul_ps(cs, _mm256_loadu_ps(u + j)), dsilu));
    _mm256_storeu_ps(du + j, _mm256_mul_ps(cs, gv));
  }
  return j;
}
#endif

// y = silu(g) * u over [b, e).
void forward_range(const float* g, const float* u, float* y, size_t b, size_t e) {
  size_t i = b;
#if defined(__x86_64__)
  if (use_avx2()) i = forward_avx2(g, u, y, b, e);
#endif
  for (; i < e; i++) y[i] = g[i] * sigmoid1(g[i]) * u[i];
}

// dg = c * u * s * (1 + g * (1 - s)), du = c * g * s, s = sigmoid(g), over [b, e).
void backward_range(const float* g, const float* u, const float* c, float* dg, float* du, size_t b,
                    size_t e) {
  size_t i = b;
#if defined(__x86_64__)
  if (use_avx2()) i = backward_avx2(g, u, c, dg, du, b, e);
#endif
  for (; i < e; i++) {
    float s = sigmoid1(g[i]);
    dg[i] = c[i] * u[i] * s * (1.f + g[i] * (1.f - s));
    du[i] = c[i] * g[i] * s;
  }
}

// Runs fn(begin, end) over [0, n) split across threads, at least 32k elements each (fewer
// are not worth a thread: decoding one token runs this on a few thousand).
template <typename F>
void parallel_elems(size_t n, F&& fn) {
  constexpr size_t kPerThread = 1 << 15;
  const int parts = (int)std::min<size_t>((size_t)num_threads(), (n + kPerThread - 1) / kPerThread);
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  const size_t per = ((n + parts - 1) / parts + 7) / 8 * 8;
  run_tasks(parts, [&](int i) {
    const size_t b = i * per, e = std::min(n, b + per);
    if (b < e) fn(b, e);
  });
}

class SwigluGrad : public mx::Primitive {
 public:
  explicit SwigluGrad(mx::Stream s) : mx::Primitive(s) {}

  // inputs: g, u, cotangent (same shape, f32, contiguous); outputs: dg, du.
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    enc.dispatch([g = in[0].data<float>(), u = in[1].data<float>(), c = in[2].data<float>(),
                  dg = out[0].data<float>(), du = out[1].data<float>(), n = in[0].size()]() {
      parallel_elems(n, [&](size_t b, size_t e) { backward_range(g, u, c, dg, du, b, e); });
    });
  }
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[swiglu] no GPU kernel; use the composed ops");
  }
  const char* name() const override { return "SwigluVJP"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return dynamic_cast<const SwigluGrad*>(&other) != nullptr;
  }
};

class Swiglu : public mx::UnaryPrimitive {
 public:
  explicit Swiglu(mx::Stream s) : mx::UnaryPrimitive(s) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    enc.dispatch([g = in[0].data<float>(), u = in[1].data<float>(), y = out.data<float>(), n = out.size()]() {
      parallel_elems(n, [&](size_t b, size_t e) { forward_range(g, u, y, b, e); });
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[swiglu] no GPU kernel; use the composed ops");
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cot,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    auto s = stream();
    auto c = mx::contiguous(mx::astype(cot[0], mx::float32, s), false, s);
    auto grads = mx::array::make_arrays({primals[0].shape(), primals[0].shape()}, {mx::float32, mx::float32},
                                        std::make_shared<SwigluGrad>(s), {primals[0], primals[1], c});
    std::vector<mx::array> out;
    for (int a : argnums) out.push_back(grads[a == 0 ? 0 : 1]);
    return out;
  }

  const char* name() const override { return "Swiglu"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    return dynamic_cast<const Swiglu*>(&other) != nullptr;
  }
};

}  // namespace

extern "C" {

// silu(g) * u on the CPU for f32 g and u of one shape (other dtypes: cast in, cast back).
// Differentiable w.r.t. both.
int mlxb_swiglu(const arr g, const arr u, arr* out) {
  return guard([&] {
    if (g->shape() != u->shape()) {
      throw std::invalid_argument("[swiglu] gate and up projections differ in shape");
    }
    auto s = mx::default_stream(mx::Device::cpu);
    auto f32 = [&](const mx::array& a) { return mx::contiguous(mx::astype(a, mx::float32, s), false, s); };
    auto y = mx::array(g->shape(), mx::float32, std::make_shared<Swiglu>(s), {f32(*g), f32(*u)});
    set_out(out, g->dtype() == mx::float32 ? y : mx::astype(y, g->dtype(), s));
  });
}

}  // extern "C"
