// Rotary position embedding (the rotate-half layout of Llama and Qwen) as one CPU primitive; its
// gradient is the same primitive rotating the other way.
//
// Why: MLX 0.32 has no CPU kernel for `fast::rope`. Its fallback builds the angles, their cos
// and sin, slices the two halves, multiplies, adds and concatenates — about ten passes over q and
// k per layer, twice that in the backward pass through autodiff — and the input is usually a
// transposed view (B, L, H, D) -> (B, H, L, D), which costs another copy. Here one pass reads
// the view as it is strided and writes the rotated rows contiguous, so the attention kernel gets
// q and k without a copy.

#include <cmath>
#include <memory>
#include <sstream>

#include "bridge_util.h"
#include "mlx/primitives.h"

using namespace mlxb;

namespace {

// The rotation of one call: the first `dims` features of the last axis in pairs (i, i + dims/2),
// row r of the second-to-last axis at position offset + r, angle (position * scale) / period_i.
struct Rotation {
  int dims;
  float base;  // periods base^(2i/dims) when there are no explicit periods
  float scale;
  int offset;
  bool inverse;  // rotate by minus the angle (the gradient)
};

// cos and sin of every (position, pair), computed as MLX does: f32 angles from f32 inverse
// periods, so values match its rope to rounding.
void angle_table(const Rotation& r, const float* periods, int L, std::vector<float>& cs, std::vector<float>& sn) {
  const int half = r.dims / 2;
  std::vector<float> inv(half);
  const float step = -std::log(r.base) / half;
  for (int i = 0; i < half; i++) inv[i] = periods ? 1.f / periods[i] : std::exp((float)i * step);
  cs.resize((size_t)L * half);
  sn.resize((size_t)L * half);
  for (int l = 0; l < L; l++) {
    const float pos = (float)(r.offset + l) * r.scale;
    for (int i = 0; i < half; i++) {
      const double theta = (double)(pos * inv[i]);
      cs[(size_t)l * half + i] = (float)std::cos(theta);
      sn[(size_t)l * half + i] = (float)(r.inverse ? -std::sin(theta) : std::sin(theta));
    }
  }
}

// One row: y1 = x1 c - x2 s, y2 = x1 s + x2 c over the pairs; features past `dims` are copied.
void rotate_row(const float* x, const float* c, const float* s, float* y, int half, int D) {
  for (int i = 0; i < half; i++) {
    const float a = x[i], b = x[i + half];
    y[i] = a * c[i] - b * s[i];
    y[i + half] = a * s[i] + b * c[i];
  }
  for (int j = 2 * half; j < D; j++) y[j] = x[j];
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void rotate_row_avx2(const float* x, const float* c, const float* s, float* y,
                                                         int half, int D) {
  int i = 0;
  for (; i + 8 <= half; i += 8) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + half);
    const __m256 cv = _mm256_loadu_ps(c + i), sv = _mm256_loadu_ps(s + i);
    _mm256_storeu_ps(y + i, _mm256_fmsub_ps(a, cv, _mm256_mul_ps(b, sv)));
    _mm256_storeu_ps(y + i + half, _mm256_fmadd_ps(a, sv, _mm256_mul_ps(b, cv)));
  }
  for (; i < half; i++) {
    const float a = x[i], b = x[i + half];
    y[i] = a * c[i] - b * s[i];
    y[i + half] = a * s[i] + b * c[i];
  }
  for (int j = 2 * half; j < D; j++) y[j] = x[j];
}
#endif

class RopeCpu : public mx::UnaryPrimitive {
 public:
  RopeCpu(mx::Stream st, Rotation r, bool has_periods) : mx::UnaryPrimitive(st), r_(r), has_periods_(has_periods) {}

  // inputs: x (f32, any strides), periods (dims/2 f32, or a placeholder).
  // Output: contiguous, x's shape.
  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    enc.dispatch([x = in[0], periods = has_periods_ ? in[1].data<float>() : nullptr, y = out.data<float>(),
                  r = r_]() {
      const int nd = x.ndim(), D = x.shape(-1), L = x.shape(-2), half = r.dims / 2;
      const int rows = L && D ? (int)(x.size() / D) : 0;
      std::vector<float> cs, sn;
      angle_table(r, periods, L, cs, sn);
      const float* xp = x.data<float>();
      auto& st = x.strides();
      const bool avx2 = use_avx2();
      for_rows(rows, D, [&](int r0, int r1) {
        std::vector<float> gathered(st[nd - 1] == 1 ? 0 : D);
        for (int row = r0; row < r1; row++) {
          // Offset of the row in x: its position l along axis -2, the rest over the leading axes.
          const int l = row % L;
          int64_t off = (int64_t)l * st[nd - 2];
          for (int a = nd - 3, rest = row / L; a >= 0; a--) {
            off += (int64_t)(rest % x.shape(a)) * st[a];
            rest /= x.shape(a);
          }
          const float* xr = xp + off;
          if (!gathered.empty()) {  // a strided last axis (rare): its row gathered first
            for (int j = 0; j < D; j++) gathered[j] = xr[(int64_t)j * st[nd - 1]];
            xr = gathered.data();
          }
          const float *c = cs.data() + (size_t)l * half, *s = sn.data() + (size_t)l * half;
          float* yr = y + (size_t)row * D;
#if defined(__x86_64__)
          if (avx2) {
            rotate_row_avx2(xr, c, s, yr, half, D);
            continue;
          }
#endif
          rotate_row(xr, c, s, yr, half, D);
        }
      });
      (void)avx2;
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[rope_cpu] CPU only; use fast::rope on a GPU");
  }

  // The rotation is orthogonal: the cotangent rotates back by the same angles.
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cot,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    auto s = stream();
    Rotation back = r_;
    back.inverse = !r_.inverse;
    auto c = mx::astype(cot[0], mx::float32, s);
    auto g = mx::array(c.shape(), mx::float32, std::make_shared<RopeCpu>(s, back, has_periods_), {c, primals[1]});
    std::vector<mx::array> out;
    for (int a : argnums) out.push_back(a == 0 ? g : mx::zeros_like(primals[1], s));
    return out;
  }

  const char* name() const override { return "RopeCpu"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto o = dynamic_cast<const RopeCpu*>(&other);
    return o && o->r_.dims == r_.dims && o->r_.base == r_.base && o->r_.scale == r_.scale &&
           o->r_.offset == r_.offset && o->r_.inverse == r_.inverse && o->has_periods_ == has_periods_;
  }

 private:
  Rotation r_;
  bool has_periods_;
};

}  // namespace

extern "C" {

// Rotate-half RoPE of the first `dims` features of x's last axis, positions along its
// second-to-last axis from `offset`, on the CPU: periods base^(2i/dims), or `periods` (dims/2 of
// them) when given, positions times `scale`. Other dtypes are computed in f32 and cast back.
// Differentiable w.r.t. x.
int mlxb_rope_cpu(const arr x, int dims, float base, float scale, int offset, const arr periods, arr* out) {
  return guard([&] {
    if (x->ndim() < 2) throw std::invalid_argument("[rope_cpu] x needs at least two axes (positions, features)");
    if (dims <= 0 || dims % 2 != 0 || dims > x->shape(-1)) {
      std::ostringstream os;
      os << "[rope_cpu] dims " << dims << " must be even, positive and at most the last axis of x " << x->shape();
      throw std::invalid_argument(os.str());
    }
    if (periods && (periods->ndim() != 1 || periods->shape(0) != dims / 2)) {
      std::ostringstream os;
      os << "[rope_cpu] periods " << periods->shape() << " must have dims / 2 = " << dims / 2 << " entries";
      throw std::invalid_argument(os.str());
    }
    if (!periods && !(base > 0.f)) throw std::invalid_argument("[rope_cpu] base must be positive");
    auto s = mx::default_stream(mx::Device::cpu);
    // f32 as it is: a transposed view is read in place.
    auto xf = x->dtype() == mx::float32 ? *x : mx::astype(*x, mx::float32, s);
    auto pv = periods ? mx::contiguous(mx::astype(*periods, mx::float32, s), false, s) : mx::zeros({1}, mx::float32, s);
    Rotation r{dims, base, scale, offset, false};
    auto y = mx::array(x->shape(), mx::float32, std::make_shared<RopeCpu>(s, r, periods != nullptr), {xf, pv});
    set_out(out, x->dtype() == mx::float32 ? y : mx::astype(y, x->dtype(), s));
  });
}

}  // extern "C"
