// LD_PRELOAD shim for bench/sgemm_shapes.sh: times every cblas_sgemm call (MLX's matmuls and the
// bridge's own) and, at exit, writes one line per (transposes, M, N, K, calling thread):
//   trans_a trans_b m n k thread calls nanoseconds
// to $SGEMM_SHAPES_OUT. The real sgemm is the next one in the lookup order (OpenBLAS).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                         float, float*, int);

#define MAX_SHAPES 8192
static struct {
  int ta, tb, m, n, k, thread;
  long calls;
  double ns;
} shapes[MAX_SHAPES];
static int n_shapes;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static sgemm_fn real_sgemm;
static __thread int thread_id;

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (!real_sgemm) real_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
  if (!thread_id) thread_id = (int)syscall(SYS_gettid);
  double t0 = now_ns();
  real_sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  double dt = now_ns() - t0;
  pthread_mutex_lock(&lock);
  int i = 0;
  while (i < n_shapes && !(shapes[i].ta == ta && shapes[i].tb == tb && shapes[i].m == m &&
                           shapes[i].n == n && shapes[i].k == k && shapes[i].thread == thread_id))
    i++;
  if (i == n_shapes && n_shapes < MAX_SHAPES) {
    shapes[i].ta = ta, shapes[i].tb = tb, shapes[i].m = m, shapes[i].n = n, shapes[i].k = k;
    shapes[i].thread = thread_id;
    n_shapes++;
  }
  if (i < MAX_SHAPES) shapes[i].calls++, shapes[i].ns += dt;
  pthread_mutex_unlock(&lock);
}

__attribute__((destructor)) static void write_shapes(void) {
  const char* path = getenv("SGEMM_SHAPES_OUT");
  // Only a process that called sgemm writes (not, say, /usr/bin/time around it).
  FILE* f = path && n_shapes ? fopen(path, "w") : NULL;
  if (!f) return;
  for (int i = 0; i < n_shapes; i++)
    fprintf(f, "%d %d %d %d %d %d %ld %.0f\n", shapes[i].ta, shapes[i].tb, shapes[i].m, shapes[i].n,
            shapes[i].k, shapes[i].thread, shapes[i].calls, shapes[i].ns);
  fclose(f);
}
