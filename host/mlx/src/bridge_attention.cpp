// Grouped-query attention, `softmax(scale q k^T + causal mask) v`, as one CPU primitive, and its
// gradient as another.
//
// Why: MLX's CPU `scaled_dot_product_attention` is composed from generic ops — a batched matmul,
// a `where` for the mask, a softmax whose exp the x86 wheel runs as a scalar loop calling libm's
// fmaf (~19 ns per score), another batched matmul — and autodiff keeps the (B, heads, L, S)
// probabilities for the backward pass. On a SmolLM2 LoRA step with rows of ~170 tokens this was
// ~24 ms per layer forward, a fifth of the step. Here the matmuls go to BLAS once per KV head
// (the query heads sharing it are stacked, so the backward's sums over them happen inside the
// GEMM; the KV heads run side by side on the threads, see for_units), the softmax is one AVX2
// pass, and only the row log-sum-exp is kept:
// the backward recomputes the probabilities from it (as flash attention does), so a 2,048-token
// sequence no longer keeps heads x 2,048^2 floats per layer alive.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>

#include "bridge_util.h"
#include "mlx/primitives.h"

using namespace mlxb;

namespace {

// Scratch for one chunk of KV-head units is kept under this many floats (64 MiB; a unit larger
// than that still runs, alone). BRAIN_MLX_ATTENTION_SCRATCH overrides it (floats), for tests.
size_t scratch_floats() {
  const char* e = std::getenv("BRAIN_MLX_ATTENTION_SCRATCH");
  long long v = e ? std::atoll(e) : 0;
  return v > 0 ? (size_t)v : size_t(16) << 20;
}

// The problem: q (B, H, L, D) contiguous; k, v (B, KV, S, D) with any strides whose last is 1.
struct Dims {
  int B, H, KV, L, S, D;
  float scale;
  bool causal;
  int rep() const { return H / KV; }
  int rows() const { return rep() * L; }  // query rows of one KV-head unit
  // Keys row r of a unit may see: causal masks are aligned to the end when L < S.
  int limit(int r) const { return causal ? std::min(S, r % L + 1 + (S - L)) : S; }
};

// A (B, heads, S, D) tensor as MLX strides it (elements), last stride 1.
struct Strided {
  const float* p;
  int64_t sb, sh, sl;
  const float* at(int b, int h) const { return p + b * sb + h * sh; }
};

// Copies a tensor whose rows are not contiguous and apart into `buf` (rare: what the kernel gets
// are views of caches and transposes, whose rows are; BLAS takes their row stride as is).
Strided packed_if_needed(const mx::array& a, std::vector<float>& buf) {
  auto& st = a.strides();
  const int64_t D = a.shape(3);
  if (st[3] == 1 && a.shape(2) == 1) return {a.data<float>(), (int64_t)st[0], (int64_t)st[1], D};
  if (st[3] == 1 && st[2] >= D) return {a.data<float>(), (int64_t)st[0], (int64_t)st[1], (int64_t)st[2]};
  const int B = a.shape(0), H = a.shape(1), S = a.shape(2);
  buf.resize((size_t)B * H * S * D);
  const float* p = a.data<float>();
  size_t o = 0;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int s = 0; s < S; s++)
        for (int d = 0; d < D; d++) buf[o++] = p[b * st[0] + h * st[1] + s * st[2] + d * st[3]];
  return {buf.data(), (int64_t)H * S * D, (int64_t)S * D, (int64_t)D};
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) float row_max_avx2(const float* x, int n, int* done) {
  __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int j = 0;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
  *done = j;
  return _mm_cvtss_f32(h);
}

// x[j] = exp(x[j] - shift) over [0, n); returns the sum of the AVX2 part, *done where it ends.
__attribute__((target("avx2,fma"))) float exp_shift_avx2(float* x, int n, float shift, int* done) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), s));
    _mm256_storeu_ps(x + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  *done = j;
  return hsum8(acc);
}

__attribute__((target("avx2,fma"))) int scale_avx2(float* x, int n, float f) {
  const __m256 fv = _mm256_set1_ps(f);
  int j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), fv));
  return j;
}

// ds[j] = f * p[j] * (ds[j] - delta) over [0, n).
__attribute__((target("avx2,fma"))) int dscore_avx2(const float* p, float* ds, int n, float delta, float f) {
  const __m256 dv = _mm256_set1_ps(delta), fv = _mm256_set1_ps(f);
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 g = _mm256_sub_ps(_mm256_loadu_ps(ds + j), dv);
    _mm256_storeu_ps(ds + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(p + j), g), fv));
  }
  return j;
}
#endif

float row_max(const float* x, int n) {
  int j = 0;
  float m = -std::numeric_limits<float>::infinity();
#if defined(__x86_64__)
  if (use_avx2()) m = row_max_avx2(x, n, &j);
#endif
  for (; j < n; j++) m = std::max(m, x[j]);
  return m;
}

float exp_shift(float* x, int n, float shift) {
  int j = 0;
  float sum = 0.f;
#if defined(__x86_64__)
  if (use_avx2()) sum = exp_shift_avx2(x, n, shift, &j);
#endif
  for (; j < n; j++) sum += (x[j] = std::exp(x[j] - shift));
  return sum;
}

void scale_row(float* x, int n, float f) {
  int j = 0;
#if defined(__x86_64__)
  if (use_avx2()) j = scale_avx2(x, n, f);
#endif
  for (; j < n; j++) x[j] *= f;
}

void dscore_row(const float* p, float* ds, int n, float delta, float f) {
  int j = 0;
#if defined(__x86_64__)
  if (use_avx2()) j = dscore_avx2(p, ds, n, delta, f);
#endif
  for (; j < n; j++) ds[j] = f * p[j] * (ds[j] - delta);
}

float dot(const float* a, const float* b, int n) {
  float s = 0.f;
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

// Scratch matrices of the calling thread (MLX's stream thread), kept between calls up to the
// budget: a fresh 4 MB buffer per layer costs ~1,000 page faults, a visible share of the kernel.
struct Scratch {
  std::vector<float> a, b;
  float* get(std::vector<float>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
};
thread_local Scratch t_scratch;

// Frees scratch over the budget once a call is done (one long sequence should not pin it).
void trim_scratch() {
  for (auto* v : {&t_scratch.a, &t_scratch.b}) {
    if (v->size() > scratch_floats()) std::vector<float>().swap(*v);
  }
}

// Units (b, g) — one KV head of one batch row with its `rep` query heads — in chunks whose
// score matrices fit the scratch budget; `per_chunk(first, count)` runs each chunk.
template <typename F>
void for_chunks(const Dims& d, size_t mats_per_unit, F&& per_chunk) {
  const size_t per_unit = std::max<size_t>(1, mats_per_unit * d.rows() * d.S);
  const int units = d.B * d.KV;
  const int chunk = (int)std::max<size_t>(1, scratch_floats() / per_unit);
  for (int u0 = 0; u0 < units; u0 += chunk) per_chunk(u0, std::min(chunk, units - u0));
}

// A block of a unit's query rows [r0, r0 + n) and the keys [0, keys) any of them may see.
struct RowBlock {
  int r0, n, keys;
};

// The row blocks of a unit. Without a mask, or for short causal rows, one block: the group's
// stacked query heads in one GEMM each way. Long causal rows go in blocks of kCausalRows per
// head, each multiplied only against the keys its last row sees: at 2,048 tokens that skips
// ~45% of the work (the masked upper triangle).
constexpr int kCausalRows = 256;
std::vector<RowBlock> row_blocks(const Dims& d) {
  if (!d.causal || d.L <= kCausalRows) return {{0, d.rows(), d.S}};
  std::vector<RowBlock> blocks;
  for (int h = 0; h < d.rep(); h++) {
    for (int i0 = 0; i0 < d.L; i0 += kCausalRows) {
      const int n = std::min(kCausalRows, d.L - i0);
      blocks.push_back({h * d.L + i0, n, d.limit(i0 + n - 1)});
    }
  }
  return blocks;
}

// Runs unit(i, rows_in_parallel) for the units i in [0, n) of a chunk. With a unit for every
// thread, the threads take contiguous runs of units, each unit's GEMMs on its own thread (BLAS
// single-threaded meanwhile): a unit's products are small (a few hundred rows by 64 to 256),
// and split across threads their hand-offs cost more than side-by-side runs, which also keep a
// unit's scores in its core's cache from one GEMM to the next. Otherwise the units run one after
// another, BLAS and the row loops using every thread.
template <typename F>
void for_units(int n, F&& unit) {
  const int t = std::min(num_threads(), n);
  // Whole runs of units per thread, or enough units that an uneven split costs little.
  if (t > 1 && (n % t == 0 || n >= 4 * t) && SingleThreadedBlas::available()) {
    SingleThreadedBlas one;
    parallel_rows(n, [&](int b, int e) {
      for (int i = b; i < e; i++) unit(i, false);
    }, 1);
    return;
  }
  for (int i = 0; i < n; i++) unit(i, true);
}

template <typename F>
void over_rows(int rows, bool in_parallel, F&& fn) {
  if (in_parallel) {
    parallel_rows(rows, fn);
  } else {
    fn(0, rows);
  }
}

// Forward: o (B, H, L, D) and the log-sum-exp of each query row, lse (B, H, L).
void attention_forward(const Dims& d, const float* q, Strided k, Strided v, float* o, float* lse) {
  const int M = d.rows(), S = d.S, D = d.D;
  const auto blocks = row_blocks(d);
  for_chunks(d, 1, [&](int u0, int n) {
    float* scores_all = t_scratch.get(t_scratch.a, (size_t)n * M * S);
    for_units(n, [&](int i, bool rows_in_parallel) {
      const int u = u0 + i, b = u / d.KV, g = u % d.KV;
      const float* qg = q + (size_t)u * M * D;
      float* scores = scores_all + (size_t)i * M * S;
      for (auto& bl : blocks) {
        sgemm(false, true, bl.n, bl.keys, D, d.scale, qg + (size_t)bl.r0 * D, D, k.at(b, g), (int)k.sl, 0.f,
              scores + (size_t)bl.r0 * S, S);
      }
      over_rows(M, rows_in_parallel, [&](int r0, int r1) {
        for (int r = r0; r < r1; r++) {
          float* x = scores + (size_t)r * S;
          const int lim = d.limit(r);
          const float m = row_max(x, lim);
          const float sum = exp_shift(x, lim, m);
          scale_row(x, lim, 1.f / sum);
          std::memset(x + lim, 0, sizeof(float) * (S - lim));
          lse[(size_t)u * M + r] = m + std::log(sum);
        }
      });
      float* og = o + (size_t)u * M * D;
      for (auto& bl : blocks) {
        sgemm(false, false, bl.n, D, bl.keys, 1.f, scores + (size_t)bl.r0 * S, S, v.at(b, g), (int)v.sl, 0.f,
              og + (size_t)bl.r0 * D, D);
      }
    });
  });
  trim_scratch();
}

// Backward: dq, dk, dv (contiguous) from the forward's o and lse and the cotangent `dout`.
void attention_backward(const Dims& d, const float* q, Strided k, Strided v, const float* o, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv) {
  const int M = d.rows(), S = d.S, D = d.D;
  const auto blocks = row_blocks(d);
  // dk and dv sum over the blocks (and, inside each GEMM, over the group's query heads).
  const float beta = blocks.size() == 1 ? 0.f : 1.f;
  if (beta != 0.f) {
    std::fill(dk, dk + (size_t)d.B * d.KV * S * D, 0.f);
    std::fill(dv, dv + (size_t)d.B * d.KV * S * D, 0.f);
  }
  for_chunks(d, 2, [&](int u0, int n) {
    float* probs_all = t_scratch.get(t_scratch.a, (size_t)n * M * S);
    float* dscores_all = t_scratch.get(t_scratch.b, (size_t)n * M * S);
    for_units(n, [&](int i, bool rows_in_parallel) {
      const int u = u0 + i, b = u / d.KV, g = u % d.KV;
      const size_t qo = (size_t)u * M * D, kvo = (size_t)u * S * D;
      float* probs = probs_all + (size_t)i * M * S;
      float* dscores = dscores_all + (size_t)i * M * S;
      for (auto& bl : blocks) {
        const size_t so = (size_t)bl.r0 * S, ro = qo + (size_t)bl.r0 * D;
        sgemm(false, true, bl.n, bl.keys, D, d.scale, q + ro, D, k.at(b, g), (int)k.sl, 0.f, probs + so, S);
        sgemm(false, true, bl.n, bl.keys, D, 1.f, dout + ro, D, v.at(b, g), (int)v.sl, 0.f, dscores + so, S);
      }
      // The probabilities again from the saved log-sum-exp; then the score gradient in place of dP.
      over_rows(M, rows_in_parallel, [&](int r0, int r1) {
        for (int r = r0; r < r1; r++) {
          float* p = probs + (size_t)r * S;
          float* ds = dscores + (size_t)r * S;
          const int lim = d.limit(r);
          const size_t row = (size_t)u * M + r;
          exp_shift(p, lim, lse[row]);
          const float delta = dot(dout + row * D, o + row * D, D);
          dscore_row(p, ds, lim, delta, d.scale);
          std::memset(p + lim, 0, sizeof(float) * (S - lim));
          std::memset(ds + lim, 0, sizeof(float) * (S - lim));
        }
      });
      for (auto& bl : blocks) {
        const float* p = probs + (size_t)bl.r0 * S;
        const float* ds = dscores + (size_t)bl.r0 * S;
        const size_t ro = qo + (size_t)bl.r0 * D;
        sgemm(true, false, bl.keys, D, bl.n, 1.f, p, S, dout + ro, D, beta, dv + kvo, D);
        sgemm(false, false, bl.n, D, bl.keys, 1.f, ds, S, k.at(b, g), (int)k.sl, 0.f, dq + ro, D);
        sgemm(true, false, bl.keys, D, bl.n, 1.f, ds, S, q + ro, D, beta, dk + kvo, D);
      }
    });
  });
  trim_scratch();
}

Dims dims_of(const mx::array& q, const mx::array& k, float scale, bool causal) {
  return {(int)q.shape(0), (int)q.shape(1), (int)k.shape(1), (int)q.shape(2), (int)k.shape(2), (int)q.shape(3),
          scale, causal};
}

class AttentionGrad : public mx::Primitive {
 public:
  AttentionGrad(mx::Stream s, float scale, bool causal) : mx::Primitive(s), scale_(scale), causal_(causal) {}

  // inputs: q, k, v, o, lse, cotangent of o; outputs: dq, dk, dv.
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    enc.dispatch([in, d = dims_of(in[0], in[1], scale_, causal_), dq = out[0].data<float>(),
                  dk = out[1].data<float>(), dv = out[2].data<float>()]() {
      if (d.L == 0 || d.S == 0) {
        std::fill(dk, dk + (size_t)d.B * d.KV * d.S * d.D, 0.f);
        std::fill(dv, dv + (size_t)d.B * d.KV * d.S * d.D, 0.f);
        return;
      }
      std::vector<float> kbuf, vbuf;
      attention_backward(d, in[0].data<float>(), packed_if_needed(in[1], kbuf), packed_if_needed(in[2], vbuf),
                         in[3].data<float>(), in[4].data<float>(), in[5].data<float>(), dq, dk, dv);
    });
  }
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[attention_cpu] CPU only; use scaled_dot_product_attention on a GPU");
  }
  const char* name() const override { return "AttentionCpuVJP"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto o = dynamic_cast<const AttentionGrad*>(&other);
    return o && o->scale_ == scale_ && o->causal_ == causal_;
  }

 private:
  float scale_;
  bool causal_;
};

class Attention : public mx::Primitive {
 public:
  Attention(mx::Stream s, float scale, bool causal) : mx::Primitive(s), scale_(scale), causal_(causal) {}

  // inputs: q (contiguous), k, v; outputs: o, lse.
  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    enc.dispatch([in, d = dims_of(in[0], in[1], scale_, causal_), o = out[0].data<float>(),
                  lse = out[1].data<float>()]() {
      if (d.L == 0) return;
      if (d.S == 0) {
        std::fill(o, o + (size_t)d.B * d.H * d.L * d.D, 0.f);
        std::fill(lse, lse + (size_t)d.B * d.H * d.L, -std::numeric_limits<float>::infinity());
        return;
      }
      std::vector<float> kbuf, vbuf;
      attention_forward(d, in[0].data<float>(), packed_if_needed(in[1], kbuf), packed_if_needed(in[2], vbuf), o, lse);
    });
  }
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[attention_cpu] CPU only; use scaled_dot_product_attention on a GPU");
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cot,
                             const std::vector<int>& argnums, const std::vector<mx::array>& outputs) override {
    auto s = stream();
    // The log-sum-exp is internal (the C API returns only o), so its cotangent is always zero.
    auto c = mx::contiguous(mx::astype(cot[0], mx::float32, s), false, s);
    auto grads = mx::array::make_arrays({primals[0].shape(), primals[1].shape(), primals[2].shape()},
                                        {mx::float32, mx::float32, mx::float32},
                                        std::make_shared<AttentionGrad>(s, scale_, causal_),
                                        {primals[0], primals[1], primals[2], outputs[0], outputs[1], c});
    std::vector<mx::array> picked;
    for (int a : argnums) picked.push_back(grads[a]);
    return picked;
  }

  const char* name() const override { return "AttentionCpu"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto o = dynamic_cast<const Attention*>(&other);
    return o && o->scale_ == scale_ && o->causal_ == causal_;
  }

 private:
  float scale_;
  bool causal_;
};

}  // namespace

extern "C" {

// softmax(scale q k^T [+ causal mask]) v on the CPU for q (B, H, L, D), k and v (B, KV, S, D),
// H a multiple of KV; the causal mask is aligned to the end when L < S (the cached-decoding
// case). Other dtypes are cast to f32 and the result back. Differentiable w.r.t. q, k and v.
int mlxb_attention_cpu(const arr q, const arr k, const arr v, float scale, int causal, arr* out) {
  return guard([&] {
    auto fail = [&](const std::string& why) {
      std::ostringstream os;
      os << "[attention_cpu] " << why << ": q " << q->shape() << ", k " << k->shape() << ", v " << v->shape();
      throw std::invalid_argument(os.str());
    };
    if (q->ndim() != 4 || k->ndim() != 4 || v->ndim() != 4) fail("expected (B, heads, L, D) arrays");
    if (k->shape() != v->shape()) fail("k and v differ in shape");
    if (k->shape(0) != q->shape(0) || k->shape(3) != q->shape(3)) fail("batch or head size differ");
    if (k->shape(1) == 0 || q->shape(1) % k->shape(1) != 0) fail("query heads are not a multiple of KV heads");
    if (causal && q->shape(2) > k->shape(2)) fail("a causal mask needs at least as many keys as queries");
    auto s = mx::default_stream(mx::Device::cpu);
    auto f32 = [&](const mx::array& a) { return mx::astype(a, mx::float32, s); };
    auto qc = mx::contiguous(f32(*q), false, s);
    mx::Shape lse_shape = {q->shape(0), q->shape(1), q->shape(2)};
    auto outs = mx::array::make_arrays({q->shape(), lse_shape}, {mx::float32, mx::float32},
                                       std::make_shared<Attention>(s, scale, causal != 0), {qc, f32(*k), f32(*v)});
    set_out(out, q->dtype() == mx::float32 ? outs[0] : mx::astype(outs[0], q->dtype(), s));
  });
}

}  // extern "C"
