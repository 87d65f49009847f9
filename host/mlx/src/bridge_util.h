// What the bridge's translation units share: error reporting across the C boundary, output
// handles, and the CPU helpers the custom primitives use (BLAS sgemm, a row-parallel loop).
#pragma once

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"

namespace mx = mlx::core;

using arr = mx::array*;

// A vector of arrays across the C boundary (multi-output ops, callbacks, lists of parameters).
struct mlxb_vec {
  std::vector<mx::array> v;
};

namespace mlxb {

// The message of the last error on this thread (read by `mlxb_last_error`).
extern thread_local std::string g_last_error;

// Thrown when a Rust callback reported failure; its own message is kept on the Rust side.
struct CallbackError : std::runtime_error {
  CallbackError() : std::runtime_error("callback into Rust failed") {}
};

inline void set_out(arr* out, mx::array a) {
  *out = new mx::array(std::move(a));
}

// Runs `f`, turning every exception into a status: 0 ok, 1 error, 2 a Rust callback failed.
template <typename F>
int guard(F&& f) {
  try {
    f();
    return 0;
  } catch (const CallbackError& e) {
    g_last_error = e.what();
    return 2;
  } catch (const std::exception& e) {
    g_last_error = e.what();
    return 1;
  } catch (...) {
    g_last_error = "unknown C++ exception";
    return 1;
  }
}

// What every custom primitive's eval_cpu does first: allocate its outputs and register its arrays
// with the stream's CPU command encoder (which keeps them alive until the dispatched task has run).
// Returns the encoder to dispatch the task on.
inline mx::cpu::CommandEncoder& prepare(mx::Stream s, const std::vector<mx::array>& in,
                                        std::vector<mx::array>& out) {
  for (auto& o : out) o.set_data(mx::allocator::malloc(std::max<size_t>(o.nbytes(), 1)));
  auto& enc = mx::cpu::get_command_encoder(s);
  for (auto& a : in) enc.set_input_array(a);
  for (auto& o : out) enc.set_output_array(o);
  return enc;
}

inline mx::cpu::CommandEncoder& prepare(mx::Stream s, const std::vector<mx::array>& in, mx::array& out) {
  out.set_data(mx::allocator::malloc(std::max<size_t>(out.nbytes(), 1)));
  auto& enc = mx::cpu::get_command_encoder(s);
  for (auto& a : in) enc.set_input_array(a);
  enc.set_output_array(out);
  return enc;
}

// `a` for a kernel that reads it row-major: as it is when already evaluated and row-contiguous (a
// model's weights), else through a Contiguous node. Each node is one more scheduled op, and
// decoding a small model is ~600 ops per token whose count, not bytes, sets the pace.
inline mx::array row_contiguous(const mx::array& a, mx::Stream s) {
  if (a.is_available() && a.flags().row_contiguous) return a;
  return mx::contiguous(a, false, s);
}

// The elements of an f32 array in row-major order: its own data when row-contiguous, else a copy
// in `scratch`. Called inside a dispatched task (where the input's data is ready) by primitives
// that take an activation as it is instead of through a Contiguous node.
const float* row_major(const mx::array& a, std::vector<float>& scratch);

using sgemm_fn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*,
                          int, float, float*, int);

// cblas_sgemm as MLX resolved it (OpenBLAS when preloaded), or null.
sgemm_fn find_sgemm();

// C[M,N] = alpha * op(A) op(B) + beta * C, row-major; falls back to plain loops without BLAS.
void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

// While alive, BLAS calls run on the calling thread alone (OpenBLAS: openblas_set_num_threads(1),
// restored after), so several of the bridge's threads can each run their own small GEMMs side by
// side: on these shapes that beats each GEMM split across all threads, whose hand-offs cost more
// than the work. Only from MLX's CPU stream thread, inside one primitive (no other BLAS call runs
// meanwhile). Without OpenBLAS (or with BRAIN_MLX_NO_SIDE_BY_SIDE_BLAS set) `available()` is false.
class SingleThreadedBlas {
 public:
  static bool available();
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int saved_ = 0;
};

// Whether the AVX2 + FMA kernels may run (the CPU has them and BRAIN_MLX_NO_AVX2 is unset).
bool use_avx2();

#if defined(__x86_64__)
// exp of 8 floats: a degree-7 polynomial after range reduction, ~2 ulp on [-87, 88].
__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// Sum of the 8 lanes.
__attribute__((target("avx2,fma"))) inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
#endif

// Threads for the bridge's own loops: BRAIN_MLX_THREADS, else the hardware's (at most 64).
int num_threads();

// Runs task(i) for every i in [0, n) on the bridge's worker threads, the calling thread taking
// its share, and returns when all are done. The workers are started once and wait between calls:
// a thread started per call costs more than the work of a decoding step's kernels (~200 calls per
// token for a 1.5B model, each a clone, page faults of a new stack, and a join). A call made
// while the workers are busy (from a worker, or from another MLX stream's thread) runs its tasks
// on the calling thread. `spin`: decoding's one-row products, back to back — the threads then wait
// for the next run spinning for a moment before they sleep (bridge_util.cpp's spin_ns).
void run_tasks(int n, const std::function<void(int)>& task, bool spin = false);

// Runs fn(begin, end) over [0, n) split in contiguous blocks across threads, each block at least
// `min_per_thread` long; `spin` as for run_tasks.
template <typename F>
void parallel_rows(int n, F&& fn, int min_per_thread = 4, bool spin = false) {
  const int t = std::min(num_threads(), std::max(1, n / min_per_thread));
  if (t <= 1) {
    fn(0, n);
    return;
  }
  const int per = (n + t - 1) / t;
  run_tasks(t, [&](int i) {
    const int b = i * per, e = std::min(n, b + per);
    if (b < e) fn(b, e);
  }, spin);
}

// parallel_rows when the rows hold enough floats (n each) to pay for starting threads, else one
// call on this thread (decoding has one row).
template <typename F>
void for_rows(int rows, int n, F&& fn) {
  if ((size_t)rows * n < (1u << 15)) {
    fn(0, rows);
  } else {
    parallel_rows(rows, fn);
  }
}

}  // namespace mlxb
