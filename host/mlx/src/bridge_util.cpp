// =============================================================================================
// Shared CPU infrastructure of the bridge's primitives (bridge_util.h): the last error, the BLAS
// MLX resolved, threads.
// =============================================================================================

#include <dlfcn.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "bridge_util.h"

namespace mlxb {

thread_local std::string g_last_error;

namespace {
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

}  // namespace

namespace {
// A symbol of the BLAS MLX resolved, or null. libmlx.so is loaded RTLD_LOCAL with its BLAS, so
// after the global scope its dependency tree is searched.
void* find_blas_symbol(const char* name) {
  if (void* p = dlsym(RTLD_DEFAULT, name)) return p;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&mx::version), &info) && info.dli_fname) {
    if (void* h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD)) return dlsym(h, name);
  }
  return nullptr;
}
}  // namespace

sgemm_fn find_sgemm() {
  static sgemm_fn fn = reinterpret_cast<sgemm_fn>(find_blas_symbol("cblas_sgemm"));
  return fn;
}

namespace {
using set_threads_fn = void (*)(int);
using get_threads_fn = int (*)();

struct OpenBlasThreads {
  set_threads_fn set = nullptr;
  get_threads_fn get = nullptr;
};

const OpenBlasThreads& openblas_threads() {
  static OpenBlasThreads t = [] {
    OpenBlasThreads o;
    if (std::getenv("BRAIN_MLX_NO_SIDE_BY_SIDE_BLAS")) return o;
    o.set = reinterpret_cast<set_threads_fn>(find_blas_symbol("openblas_set_num_threads"));
    o.get = reinterpret_cast<get_threads_fn>(find_blas_symbol("openblas_get_num_threads"));
    if (!o.set || !o.get) o = {};
    return o;
  }();
  return t;
}
}  // namespace

bool SingleThreadedBlas::available() { return openblas_threads().set != nullptr && find_sgemm() != nullptr; }

SingleThreadedBlas::SingleThreadedBlas() {
  if (!available()) return;
  saved_ = openblas_threads().get();
  if (saved_ != 1) openblas_threads().set(1);
}

SingleThreadedBlas::~SingleThreadedBlas() {
  if (saved_ > 1) openblas_threads().set(saved_);
}

void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (auto f = find_sgemm()) {
    f(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, M, N, K, alpha, A, lda, B, ldb,
      beta, C, ldc);
    return;
  }
  for (int i = 0; i < M; i++) {
    for (int j = 0; j < N; j++) {
      float acc = 0.f;
      for (int k = 0; k < K; k++) {
        float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
        acc += a * b;
      }
      float& c = C[(size_t)i * ldc + j];
      c = alpha * acc + (beta == 0.f ? 0.f : beta * c);
    }
  }
}

bool use_avx2() {
#if defined(__x86_64__)
  static bool on = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                   std::getenv("BRAIN_MLX_NO_AVX2") == nullptr;
  return on;
#else
  return false;
#endif
}

namespace {
// How long a thread waits by spinning before it sleeps, after a run of decoding's one-row products:
// BRAIN_MLX_SPIN_US, else 100 µs. Decoding hands the workers ~200 small products per token, a few
// µs of other ops apart; a sleeping worker is woken through the kernel (an inter-processor
// interrupt on a VM: tens of µs, as long as a small product itself), a spinning one sees the next
// product at once (~10% more tokens/s measured). After other runs (a prompt's GEMMs, norms) the
// threads sleep at once: spinning there took a core from MLX's own BLAS threads (~10% slower
// prompts). 0 turns spinning off.
int64_t spin_ns() {
  static int64_t ns = [] {
    if (const char* e = std::getenv("BRAIN_MLX_SPIN_US")) return (int64_t)std::max(0, std::atoi(e)) * 1000;
    return (int64_t)100 * 1000;
  }();
  return ns;
}

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// Spins until ready() or spin_ns() has passed; true when ready.
template <typename F>
bool spin_until(F&& ready) {
  const int64_t budget = spin_ns();
  if (budget <= 0) return ready();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0;; i++) {
    if (ready()) return true;
    cpu_relax();
    if ((i & 63) == 63 && std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count() > budget)
      return ready();
  }
}

// The workers behind run_tasks: num_threads() - 1 threads, started on first use and kept (never
// joined). Between runs they sleep on a condition variable, after a decoding run spinning first
// for a moment (spin_ns).
class Workers {
 public:
  explicit Workers(int n) {
    for (int i = 0; i < n; i++) std::thread([this] { loop(); }).detach();
  }

  // false when another run is in progress (the caller then runs its tasks itself).
  bool run(int n, const std::function<void(int)>& task, bool spin) {
    if (t_is_worker) return false;
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lk(m_);
      task_ = &task;
      n_ = n;
      next_.store(0);
      pending_.store(n);
      spin_ = spin;
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    const int ran = claim(task, n);
    pending_.fetch_sub(ran);
    if (spin) spin_until([&] { return pending_.load() == 0; });
    std::unique_lock<std::mutex> lk(m_);
    // Every task done and every worker that took this run's task back out of it, so none can
    // claim a later run's indices with this task.
    done_.wait(lk, [&] { return pending_.load() == 0 && active_ == 0; });
    task_ = nullptr;
    return true;
  }

 private:
  // Claims and runs tasks until none are left; returns how many this thread ran.
  int claim(const std::function<void(int)>& task, int n) {
    int ran = 0;
    for (int i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) {
      task(i);
      ran++;
    }
    return ran;
  }

  void loop() {
    t_is_worker = true;
    uint64_t seen = 0;
    bool spin = false;
    for (;;) {
      if (spin) spin_until([&] { return generation_.load() != seen; });
      const std::function<void(int)>* task;
      int n;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        task = task_;
        n = n_;
        spin = spin_;
        if (!task) continue;
        active_++;
      }
      const int ran = claim(*task, n);
      std::lock_guard<std::mutex> lk(m_);
      active_--;
      pending_.fetch_sub(ran);
      if (pending_.load() == 0 && active_ == 0) done_.notify_all();
    }
  }

  static thread_local bool t_is_worker;
  std::mutex busy_, m_;
  std::condition_variable cv_, done_;
  const std::function<void(int)>* task_ = nullptr;
  int n_ = 0, active_ = 0;
  bool spin_ = false;  // this run's threads spin for the next (decoding)
  std::atomic<int> next_{0}, pending_{0};
  std::atomic<uint64_t> generation_{0};
};
thread_local bool Workers::t_is_worker = false;
}  // namespace

void run_tasks(int n, const std::function<void(int)>& task, bool spin) {
  static Workers* workers = num_threads() > 1 ? new Workers(num_threads() - 1) : nullptr;
  if (n > 1 && workers && workers->run(n, task, spin)) return;
  for (int i = 0; i < n; i++) task(i);
}

int num_threads() {
  static int n = [] {
    if (const char* e = std::getenv("BRAIN_MLX_THREADS")) {
      int v = std::atoi(e);
      if (v > 0) return v;
    }
    unsigned h = std::thread::hardware_concurrency();
    return (int)std::max(1u, std::min(h, 64u));
  }();
  return n;
}

const float* row_major(const mx::array& a, std::vector<float>& scratch) {
  if (a.flags().row_contiguous) return a.data<float>();
  // A strided view (a transpose, a broadcast, a slice): gather it row by row.
  scratch.resize(a.size());
  const int nd = a.ndim();
  const auto& shape = a.shape();
  const auto& strides = a.strides();
  const int64_t inner = shape[nd - 1], step = strides[nd - 1];
  const size_t rows = inner ? a.size() / inner : 0;
  const float* base = a.data<float>();
  std::vector<int> idx(nd, 0);
  float* o = scratch.data();
  for (size_t r = 0; r < rows; r++) {
    int64_t off = 0;
    for (int d = 0; d + 1 < nd; d++) off += (int64_t)idx[d] * strides[d];
    for (int64_t j = 0; j < inner; j++) *o++ = base[off + j * step];
    for (int d = nd - 2; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return scratch.data();
}

}  // namespace mlxb
