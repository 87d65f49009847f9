// One row of x through a quantized matrix (decoding: one token, every weight read once per token).
// The kernels multiply straight from the packed words, picked by the CPU at run time, each with
// an environment switch down to the next for tests and A/B runs:
// - `vnni-int8` (AVX-512 VNNI, 4 bits, groups of 32+): x quantized to 8-bit integers per group, as
//   llama.cpp does for its 4-bit types; BRAIN_MLX_NO_VNNI=1 keeps x in f32;
// - `vbmi` (AVX-512 VBMI, 4 bits, groups of 64+): f32 x, no integer conversions; BRAIN_MLX_NO_VBMI=1;
// - `avx2-bytes` (AVX2, 4 bits in groups of 32+, or 8 bits): f32 x; BRAIN_MLX_NO_AVX2=1 leaves the
//   general loop of bridge_qmatmul.cpp.

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "bridge_qmatmul.h"
#include "bridge_util.h"

namespace mlxb {
namespace {

#if defined(__x86_64__)
// x reordered for direct_avx2_q4_row_bytes: in each block of 32 values, the values of the low
// nibbles of its 16 bytes (0, 2, .., 30) and then of the high nibbles (1, 3, .., 31).
std::vector<float> nibble_order(const float* x, int K) {
  std::vector<float> xp(K);
  for (int j = 0; j < K / 32; j++) {
    for (int b = 0; b < 16; b++) {
      xp[(size_t)j * 32 + b] = x[(size_t)j * 32 + 2 * b];
      xp[(size_t)j * 32 + 16 + b] = x[(size_t)j * 32 + 2 * b + 1];
    }
  }
  return xp;
}

// One row of x at 4 bits from the bytes, for groups of a multiple of 32 values: byte b of a row
// holds values 2b (low nibble) and 2b + 1 (high nibble), so 16 bytes split into their low and
// high nibbles are 32 values that only need zero-extending and converting — no per-lane shifts
// on the ports the multiplies use, about twice the values per cycle of shifting each word into
// lanes (direct_avx2_bits); four independent accumulator chains keep the FMA unit busy.
// `xp` is x with each block of 32 values reordered to match (evens 0-14, 16-30, odds 1-15,
// 17-31; see `nibble_order`).
__attribute__((target("avx2,fma"))) void direct_avx2_q4_row_bytes(const Packed& p, const float* xp,
                                                                  const float* xsum, float* y, int n0, int n1) {
  const int groups = p.K / p.group, blocks = p.group / 32;
  const __m128i m4 = _mm_set1_epi8(0x0F);
  for (int n = n0; n < n1; n++) {
    const uint8_t* wr = reinterpret_cast<const uint8_t*>(p.w + (size_t)n * (p.K / 8));
    const float* sr = p.scales + (size_t)n * groups;
    const float* br = p.biases + (size_t)n * groups;
    __m256 tot = _mm256_setzero_ps();
    float bias_part = 0.f;
    for (int g = 0; g < groups; g++) {
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
      for (int j = g * blocks; j < (g + 1) * blocks; j++) {
        // Decoding streams the matrix from memory once: asking for the bytes 2 KB ahead keeps more
        // reads in flight than the hardware prefetcher does (7.7-8.4 -> 11.5-12.5 GB/s measured).
        _mm_prefetch(reinterpret_cast<const char*>(wr + (size_t)j * 16 + 2048), _MM_HINT_T0);
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + (size_t)j * 16));
        const __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
        const float* xb = xp + (size_t)j * 32;
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), _mm256_loadu_ps(xb), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(lo, lo))),
                             _mm256_loadu_ps(xb + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), _mm256_loadu_ps(xb + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(hi, hi))),
                             _mm256_loadu_ps(xb + 24), a3);
      }
      tot = _mm256_fmadd_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), _mm256_set1_ps(sr[g]), tot);
      bias_part += br[g] * xsum[g];
    }
    y[n] = hsum8(tot) + bias_part;
  }
}

// Eight floats 1 + q/16 from the nibbles `ctl` picks out of `word`: (selected & nibble) | one.
__attribute__((target("avx2,fma,avx512vl,avx512vbmi"), always_inline)) inline __m256 vbmi_weights(
    __m256i ctl, __m256i word, __m256i nibble, __m256i one) {
  return _mm256_castsi256_ps(_mm256_ternarylogic_epi32(_mm256_multishift_epi64_epi8(ctl, word), nibble, one, 0xEA));
}

// One row of x at 4 bits with AVX-512 VBMI, for groups of a multiple of 64 values: no converting
// integers at all. `vpmultishiftqb` copies, for each 32-bit lane, the byte that puts one nibble of
// a broadcast 64-bit word (16 values) into bits 19-22, and one `vpternlogd` keeps those bits and
// sets the exponent of 1.0 around them: the lane is the float 1 + q/16, exactly. A group sums
// acc = sum (1 + q/16) x, so sum q x = 16 (acc - xsum) and y += 16 s (acc - xsum) + b xsum. Two
// vector ops per 8 weights besides the multiply-add, where the byte kernel takes three to four
// (split, shuffle, zero-extend, convert): 1.2-1.4x its rate on one core in cache on Zen 4, a few
// per cent streaming from memory on two cores (BENCHMARKS.md). x is in natural order.
__attribute__((target("avx2,fma,avx512vl,avx512vbmi"))) void direct_vbmi_q4_row(const Packed& p, const float* x,
                                                                                 const float* xsum, float* y,
                                                                                 int n0, int n1) {
  const int groups = p.K / p.group, words = p.group / 16;  // 64-bit words per group
  // Lane l takes bits [4 (i + l) - 3, 4 (i + l) + 5) of the word into its byte 2 (bits 16-23), so
  // nibble i + l lands on bits 19-22; i = 0 for the word's first eight values, 8 for the rest.
  alignas(32) uint8_t c0[32], c1[32];
  for (int l = 0; l < 8; l++) {
    for (int b = 0; b < 4; b++) {
      c0[l * 4 + b] = (uint8_t)((4 * l - 3) & 63);
      c1[l * 4 + b] = (uint8_t)((4 * (l + 8) - 3) & 63);
    }
  }
  const __m256i lo8 = _mm256_load_si256(reinterpret_cast<const __m256i*>(c0));
  const __m256i hi8 = _mm256_load_si256(reinterpret_cast<const __m256i*>(c1));
  const __m256i nibble = _mm256_set1_epi32(0x00780000), one = _mm256_set1_epi32(0x3F800000);
  for (int n = n0; n < n1; n++) {
    const uint64_t* wr = reinterpret_cast<const uint64_t*>(p.w + (size_t)n * (p.K / 8));
    const float* sr = p.scales + (size_t)n * groups;
    const float* br = p.biases + (size_t)n * groups;
    __m256 tot = _mm256_setzero_ps();
    float bias_part = 0.f;
    for (int g = 0; g < groups; g++) {
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
      for (int j = g * words; j < (g + 1) * words; j += 2) {
        _mm_prefetch(reinterpret_cast<const char*>(wr + j) + 2048, _MM_HINT_T0);
        const __m256i w0 = _mm256_set1_epi64x((long long)wr[j]), w1 = _mm256_set1_epi64x((long long)wr[j + 1]);
        const float* xb = x + (size_t)j * 16;
        a0 = _mm256_fmadd_ps(vbmi_weights(lo8, w0, nibble, one), _mm256_loadu_ps(xb), a0);
        a1 = _mm256_fmadd_ps(vbmi_weights(hi8, w0, nibble, one), _mm256_loadu_ps(xb + 8), a1);
        a2 = _mm256_fmadd_ps(vbmi_weights(lo8, w1, nibble, one), _mm256_loadu_ps(xb + 16), a2);
        a3 = _mm256_fmadd_ps(vbmi_weights(hi8, w1, nibble, one), _mm256_loadu_ps(xb + 24), a3);
      }
      const float s16 = 16.f * sr[g];
      tot = _mm256_fmadd_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), _mm256_set1_ps(s16), tot);
      bias_part += (br[g] - s16) * xsum[g];
    }
    y[n] = hsum8(tot) + bias_part;
  }
}

// One row of x at 8 bits: byte k is value k; eight bytes zero-extended and converted per step.
__attribute__((target("avx2,fma"))) void direct_avx2_q8_row_bytes(const Packed& p, const float* x,
                                                                  const float* xsum, float* y, int n0, int n1) {
  const int groups = p.K / p.group, steps = p.group / 8;
  for (int n = n0; n < n1; n++) {
    const uint8_t* wr = reinterpret_cast<const uint8_t*>(p.w + (size_t)n * (p.K / 4));
    const float* sr = p.scales + (size_t)n * groups;
    const float* br = p.biases + (size_t)n * groups;
    __m256 tot = _mm256_setzero_ps();
    float bias_part = 0.f;
    for (int g = 0; g < groups; g++) {
      __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      const uint8_t* wg = wr + (size_t)g * p.group;
      const float* xg = x + (size_t)g * p.group;
      for (int i = 0; i < steps; i++) {
        _mm_prefetch(reinterpret_cast<const char*>(wg + i * 8 + 2048), _MM_HINT_T0);
        const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(wg + i * 8));
        a[i & 3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), _mm256_loadu_ps(xg + i * 8), a[i & 3]);
      }
      tot = _mm256_fmadd_ps(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])), _mm256_set1_ps(sr[g]), tot);
      bias_part += br[g] * xsum[g];
    }
    y[n] = hsum8(tot) + bias_part;
  }
}



// x as 8-bit integers for the VNNI kernels: per group g, d[g] = max |x| / 127 and q = round(x / d)
// (ties to even), each chunk of `chunk` values (32 or 64, the bytes one step of the kernel takes)
// in nibble order: the values of the chunk's low nibbles (0, 2, ..), then of its high ones. Each
// value's rounding error is at most d / 2, so a row's is at most sum_g |s_g| d_g / 2 sum_k q_k.
struct Int8Row {
  std::vector<int8_t> q;
  std::vector<float> d;
};

Int8Row int8_row(const float* x, int K, int group, int chunk) {
  Int8Row r{std::vector<int8_t>(K), std::vector<float>(K / group)};
  const int half = chunk / 2;
  for (int g = 0; g < K / group; g++) {
    const float* xg = x + (size_t)g * group;
    float amax = 0.f;
    for (int k = 0; k < group; k++) amax = std::max(amax, std::fabs(xg[k]));
    r.d[g] = amax / 127.f;
    const float inv = amax > 0.f ? 127.f / amax : 0.f;
    auto q = [&](float v) { return (int8_t)std::max(-127.f, std::min(127.f, std::nearbyint(v * inv))); };
    for (int j = 0; j < group; j += chunk) {
      int8_t* o = r.q.data() + (size_t)g * group + j;
      for (int b = 0; b < half; b++) {
        o[b] = q(xg[j + 2 * b]);
        o[half + b] = q(xg[j + 2 * b + 1]);
      }
    }
  }
  return r;
}

// What both VNNI kernels need per row besides the weights: each group's factor s_g d_g (in
// `sd`), and the biases' share sum_g b_g xsum_g (returned).
__attribute__((target("avx2,fma"))) float row_factors(const float* sr, const float* br, const Int8Row& x,
                                                      const float* xsum, int groups, float* sd) {
  __m256 acc = _mm256_setzero_ps();
  int g = 0;
  for (; g + 8 <= groups; g += 8) {
    _mm256_storeu_ps(sd + g, _mm256_mul_ps(_mm256_loadu_ps(sr + g), _mm256_loadu_ps(x.d.data() + g)));
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(br + g), _mm256_loadu_ps(xsum + g), acc);
  }
  float bias_part = hsum8(acc);
  for (; g < groups; g++) {
    sd[g] = sr[g] * x.d[g];
    bias_part += br[g] * xsum[g];
  }
  return bias_part;
}

// A group's integer dot product as floats, from its `steps` chunks of 64 weights starting at chunk
// `c0` of the row: 32 bytes broadcast to both halves of a 512-bit register, the upper half shifted
// down 4 bits, masked, and multiplied into x by `vpdpbusd` (unsigned weight bytes times signed x
// bytes, four products summed per 32-bit lane: at most 4 * 15 * 127 per step, no overflow).
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni"), always_inline)) inline __m512 vnni512_group(
    const uint8_t* wr, const int8_t* xq, int c0, int steps) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
  __m512i acc = _mm512_setzero_si512();
  for (int c = c0; c < c0 + steps; c++) {
    _mm_prefetch(reinterpret_cast<const char*>(wr + (size_t)c * 32) + 2048, _MM_HINT_T0);
    const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + (size_t)c * 32)));
    const __m512i q = _mm512_and_si512(_mm512_srlv_epi64(v, shift), m4);
    acc = _mm512_dpbusd_epi32(acc, q, _mm512_loadu_si512(xq + (size_t)c * 64));
  }
  return _mm512_cvtepi32_ps(acc);
}

// The same with chunks of 32 weights (16 bytes) in a 256-bit register.
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni"), always_inline)) inline __m256 vnni256_group(
    const uint8_t* wr, const int8_t* xq, int c0, int steps) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), shift = _mm256_setr_epi64x(0, 0, 4, 4);
  __m256i acc = _mm256_setzero_si256();
  for (int c = c0; c < c0 + steps; c++) {
    _mm_prefetch(reinterpret_cast<const char*>(wr + (size_t)c * 16) + 2048, _MM_HINT_T0);
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + (size_t)c * 16)));
    const __m256i q = _mm256_and_si256(_mm256_srlv_epi64(v, shift), m4);
    acc = _mm256_dpbusd_epi32(acc, q, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + (size_t)c * 32)));
  }
  return _mm256_cvtepi32_ps(acc);
}

// One row of x at 4 bits with AVX-512 VNNI, from x as 8-bit integers (`int8_row`): a group's dot
// product is exact in integers — `vpdpbusd` multiplies unsigned weight bytes by signed x bytes and
// sums four products per 32-bit lane — then scaled once by s_g d_g:
// y = sum_g s_g d_g sum_k q_k xq_k + b_g xsum_g. One step takes 32 bytes (64 weights) broadcast to
// both halves of a 512-bit register, the upper half shifted down 4 bits, masked: ~8 instructions
// per 64 weights where the f32 kernels, compute-bound on two cores, take 20-30. Measured on Zen 4
// streaming 48 matrices: 18-26 GB/s vs 13-16 for the f32 kernels (BENCHMARKS.md). Groups of a
// multiple of 64 (mlx-community's layout); x in chunks of 64.
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni"))) void direct_vnni_q4_row(
    const Packed& p, const Int8Row& x, const float* xsum, float* y, int n0, int n1) {
  const int groups = p.K / p.group, steps = p.group / 64;
  std::vector<float> sd(groups);
  for (int n = n0; n < n1; n++) {
    const uint8_t* wr = reinterpret_cast<const uint8_t*>(p.w + (size_t)n * (p.K / 8));
    const float bias_part =
        row_factors(p.scales + (size_t)n * groups, p.biases + (size_t)n * groups, x, xsum, groups, sd.data());
    // Two sums for alternate groups, so one group's multiply-add does not wait on the last one's.
    __m512 t0 = _mm512_setzero_ps(), t1 = _mm512_setzero_ps();
    int g = 0;
    for (; g + 1 < groups; g += 2) {
      t0 = _mm512_fmadd_ps(vnni512_group(wr, x.q.data(), g * steps, steps), _mm512_set1_ps(sd[g]), t0);
      t1 = _mm512_fmadd_ps(vnni512_group(wr, x.q.data(), (g + 1) * steps, steps), _mm512_set1_ps(sd[g + 1]), t1);
    }
    if (g < groups) t0 = _mm512_fmadd_ps(vnni512_group(wr, x.q.data(), g * steps, steps), _mm512_set1_ps(sd[g]), t0);
    y[n] = _mm512_reduce_add_ps(_mm512_add_ps(t0, t1)) + bias_part;
  }
}

// The same 16 bytes (32 weights) at a time, broadcast to both halves of a 256-bit register, for
// groups of any multiple of 32 (llama.cpp's Q4_0 / Q4_1 blocks in GGUF files are 32); x in chunks of 32.
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512bw,avx512vnni"))) void direct_vnni_q4_row32(
    const Packed& p, const Int8Row& x, const float* xsum, float* y, int n0, int n1) {
  const int groups = p.K / p.group, steps = p.group / 32;
  std::vector<float> sd(groups);
  for (int n = n0; n < n1; n++) {
    const uint8_t* wr = reinterpret_cast<const uint8_t*>(p.w + (size_t)n * (p.K / 8));
    const float bias_part =
        row_factors(p.scales + (size_t)n * groups, p.biases + (size_t)n * groups, x, xsum, groups, sd.data());
    __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
    int g = 0;
    for (; g + 1 < groups; g += 2) {
      t0 = _mm256_fmadd_ps(vnni256_group(wr, x.q.data(), g * steps, steps), _mm256_set1_ps(sd[g]), t0);
      t1 = _mm256_fmadd_ps(vnni256_group(wr, x.q.data(), (g + 1) * steps, steps), _mm256_set1_ps(sd[g + 1]), t1);
    }
    if (g < groups) t0 = _mm256_fmadd_ps(vnni256_group(wr, x.q.data(), g * steps, steps), _mm256_set1_ps(sd[g]), t0);
    y[n] = hsum8(_mm256_add_ps(t0, t1)) + bias_part;
  }
}

#endif

// The kernels one row may take, best first.
enum class RowKernel { Vnni, Vbmi, Bytes, General };

RowKernel pick(int bits, int group) {
#if defined(__x86_64__)
  static const bool vnni = use_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni") &&
                           std::getenv("BRAIN_MLX_NO_VNNI") == nullptr;
  static const bool vbmi = use_avx2() && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vl") &&
                           std::getenv("BRAIN_MLX_NO_VBMI") == nullptr;
  if (bits == 4 && group % 32 == 0 && vnni) return RowKernel::Vnni;
  if (bits == 4 && group % 64 == 0 && vbmi) return RowKernel::Vbmi;
  if (((bits == 4 && group % 32 == 0) || (bits == 8 && group % 8 == 0)) && use_avx2()) return RowKernel::Bytes;
#endif
  return RowKernel::General;
}

}  // namespace

const char* qmm_row_kernel(int bits, int group) {
  switch (pick(bits, group)) {
    case RowKernel::Vnni: return "vnni-int8";
    case RowKernel::Vbmi: return "vbmi";
    case RowKernel::Bytes: return "avx2-bytes";
    default: return "general";
  }
}

bool qmm_row(const Packed& p, const float* x, const float* xsum, float* y) {
#if defined(__x86_64__)
  constexpr bool kSpin = true;  // decoding: the next product follows at once (run_tasks)
  switch (pick(p.bits, p.group)) {
    case RowKernel::Vnni: {
      const bool wide = p.group % 64 == 0;
      const auto xq = int8_row(x, p.K, p.group, wide ? 64 : 32);
      parallel_rows(p.N, [&](int b, int e) {
        wide ? direct_vnni_q4_row(p, xq, xsum, y, b, e) : direct_vnni_q4_row32(p, xq, xsum, y, b, e);
      }, 4, kSpin);
      return true;
    }
    case RowKernel::Vbmi:
      parallel_rows(p.N, [&](int b, int e) { direct_vbmi_q4_row(p, x, xsum, y, b, e); }, 4, kSpin);
      return true;
    case RowKernel::Bytes:
      if (p.bits == 8) {
        parallel_rows(p.N, [&](int b, int e) { direct_avx2_q8_row_bytes(p, x, xsum, y, b, e); }, 4, kSpin);
      } else {
        const auto xp = nibble_order(x, p.K);
        parallel_rows(p.N, [&](int b, int e) { direct_avx2_q4_row_bytes(p, xp.data(), xsum, y, b, e); }, 4, kSpin);
      }
      return true;
    default: break;
  }
#endif
  return false;
}

}  // namespace mlxb
