// SAM Brain's bridge over MLX's C++ API.
//
// Only `extern "C"` functions cross this boundary. Every one of them catches every C++
// exception and returns a status (0 = ok, 1 = error); the message of the last error on the
// calling thread is read with `mlxb_last_error`. Arrays cross as opaque handles: a heap-allocated
// `mlx::core::array` (a reference-counted handle itself), freed by the Rust side's Drop.
//
// The CPU primitives the bridge owns live beside it: the fused cross-entropy (bridge_ce.cpp:
// hidden states x output projection -> per-token NLL without materializing the logits), AdamW,
// attention, RMSNorm, RoPE, SwiGLU and the quantized matmuls (bridge_*.cpp).

#include <dlfcn.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/compile_impl.h"
#include "mlx/distributed/distributed.h"
#include "mlx/distributed/ops.h"
#include "mlx/graph_utils.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

#include "bridge_util.h"

using namespace mlxb;

// Bumped whenever a signature below changes; the Rust side refuses a bridge of another ABI.
#define MLXB_ABI 11

struct mlxb_st {
  std::vector<std::string> names;
  std::vector<mx::array> arrays;
  std::vector<std::string> meta_keys;
  std::vector<std::string> meta_vals;
};

typedef int (*mlxb_closure_fn)(void* ctx, const mlxb_vec* inputs, mlxb_vec* outputs);

namespace {

const mx::Dtype kDtypes[] = {
    mx::bool_,   mx::uint8,   mx::uint16,  mx::uint32,  mx::uint64,
    mx::int8,    mx::int16,   mx::int32,   mx::int64,   mx::float16,
    mx::float32, mx::float64, mx::bfloat16, mx::complex64};

mx::Dtype to_dtype(int d) {
  if (d < 0 || d >= (int)(sizeof(kDtypes) / sizeof(kDtypes[0]))) {
    throw std::invalid_argument("[bridge] unknown dtype code " + std::to_string(d));
  }
  return kDtypes[d];
}

int from_dtype(mx::Dtype d) {
  return static_cast<int>(d.val());
}

mx::Shape to_shape(const int* shape, int ndim) {
  return mx::Shape(shape, shape + ndim);
}

std::vector<int> to_ints(const int* p, int n) {
  return std::vector<int>(p, p + n);
}

std::optional<mx::array> opt(const arr a) {
  if (a == nullptr) return std::nullopt;
  return *a;
}

mx::Device to_device(int type, int index) {
  return mx::Device(type == 1 ? mx::Device::gpu : mx::Device::cpu, index);
}

std::function<std::vector<mx::array>(const std::vector<mx::array>&)> wrap_closure(
    mlxb_closure_fn f, void* ctx) {
  return [f, ctx](const std::vector<mx::array>& xs) {
    mlxb_vec in{xs};
    mlxb_vec out;
    if (f(ctx, &in, &out) != 0) {
      throw CallbackError();
    }
    return std::move(out.v);
  };
}

// Named arrays into `st`, sorted by name (the loaders' maps are unordered).
template <typename Map>
void add_sorted(mlxb_st& st, const Map& arrays) {
  std::vector<std::string> keys;
  for (auto& kv : arrays) keys.push_back(kv.first);
  std::sort(keys.begin(), keys.end());
  for (auto& k : keys) {
    st.names.push_back(k);
    st.arrays.push_back(arrays.at(k));
  }
}

}  // namespace

extern "C" {

// ---------------------------------------------------------------------------------------------
// Meta, errors, strings
// ---------------------------------------------------------------------------------------------

int mlxb_abi_version() { return MLXB_ABI; }

const char* mlxb_mlx_version() { return mx::version(); }

const char* mlxb_last_error() { return g_last_error.c_str(); }

void mlxb_string_free(char* s) { std::free(s); }

// ---------------------------------------------------------------------------------------------
// Array handles
// ---------------------------------------------------------------------------------------------

void mlxb_array_free(arr a) { delete a; }

int mlxb_array_clone(const arr a, arr* out) {
  return guard([&] { set_out(out, *a); });
}

int mlxb_array_ndim(const arr a) { return (int)a->ndim(); }

void mlxb_array_shape(const arr a, int* out) {
  for (size_t i = 0; i < a->ndim(); i++) out[i] = a->shape(i);
}

int mlxb_array_dtype(const arr a) { return from_dtype(a->dtype()); }

size_t mlxb_array_size(const arr a) { return a->size(); }

size_t mlxb_array_nbytes(const arr a) { return a->nbytes(); }

size_t mlxb_array_itemsize(const arr a) { return a->itemsize(); }

// Raw bytes (row-major, `dtype`'s layout) -> a new array owning a copy.
int mlxb_array_from_data(const void* data, const int* shape, int ndim, int dtype, arr* out) {
  return guard([&] {
    auto dt = to_dtype(dtype);
    mx::Shape sh = to_shape(shape, ndim);
    size_t n = 1;
    for (auto d : sh) {
      if (d < 0) throw std::invalid_argument("[bridge] negative dimension in shape");
      n *= (size_t)d;
    }
    size_t nbytes = n * dt.size();
    auto buf = mx::allocator::malloc(std::max<size_t>(nbytes, 1));
    if (nbytes) std::memcpy(buf.buffer().raw_ptr(), data, nbytes);
    set_out(out, mx::array(std::move(buf), std::move(sh), dt));
  });
}

// Evaluates `a` and copies its elements (row-major) into `dst` of `nbytes` bytes.
int mlxb_array_to_host(const arr a, void* dst, size_t nbytes) {
  return guard([&] {
    if (nbytes != a->nbytes()) {
      throw std::invalid_argument("[bridge] to_host: destination has " + std::to_string(nbytes) +
                                  " bytes, array has " + std::to_string(a->nbytes()));
    }
    mx::array c = mx::contiguous(*a, false);
    mx::eval(c);
    if (!c.flags().row_contiguous) throw std::runtime_error("[bridge] to_host: not contiguous");
    if (nbytes) std::memcpy(dst, c.data<char>(), nbytes);
  });
}

int mlxb_array_to_string(const arr a, char** out) {
  return guard([&] {
    std::ostringstream os;
    os << *a;
    *out = strdup(os.str().c_str());
  });
}

// Writes the graph that computes `arrays` (left unevaluated) to `path`: Graphviz DOT as Python's
// mx.export_to_dot does (`dot` = 1), or MLX's print_graph text, one line per op with its inputs'
// and output's shapes and dtypes (0). bench/step_graph.sh compares a step's ops with mlx-lm's.
int mlxb_export_graph(const char* path, const arr* arrays, int n, int dot) {
  return guard([&] {
    std::ofstream f(path);
    if (!f) throw std::runtime_error(std::string("cannot write ") + path);
    std::vector<mx::array> v;
    for (int i = 0; i < n; i++) v.push_back(*arrays[i]);
    if (dot) {
      mx::export_to_dot(f, v);
    } else {
      mx::print_graph(f, v);
    }
  });
}

int mlxb_eval(const arr* arrays, int n) {
  return guard([&] {
    std::vector<mx::array> v;
    v.reserve(n);
    for (int i = 0; i < n; i++) v.push_back(*arrays[i]);
    mx::eval(std::move(v));
  });
}

int mlxb_async_eval(const arr* arrays, int n) {
  return guard([&] {
    std::vector<mx::array> v;
    for (int i = 0; i < n; i++) v.push_back(*arrays[i]);
    mx::async_eval(std::move(v));
  });
}

// ---------------------------------------------------------------------------------------------
// Vectors of arrays (multi-output ops, callbacks)
// ---------------------------------------------------------------------------------------------

mlxb_vec* mlxb_vec_new() { return new mlxb_vec(); }
void mlxb_vec_free(mlxb_vec* v) { delete v; }
size_t mlxb_vec_len(const mlxb_vec* v) { return v->v.size(); }
int mlxb_vec_get(const mlxb_vec* v, size_t i, arr* out) {
  return guard([&] { set_out(out, v->v.at(i)); });
}
int mlxb_vec_push(mlxb_vec* v, const arr a) {
  return guard([&] { v->v.push_back(*a); });
}

// ---------------------------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------------------------

int mlxb_full(const int* shape, int ndim, double value, int dtype, arr* out) {
  return guard([&] {
    auto dt = to_dtype(dtype);
    bool fl = mx::issubdtype(dt, mx::floating) || mx::issubdtype(dt, mx::complexfloating);
    if (fl) {
      set_out(out, mx::full(to_shape(shape, ndim), mx::array((float)value, dt), dt));
    } else if (dt == mx::bool_) {
      set_out(out, mx::full(to_shape(shape, ndim), mx::array(value != 0.0), dt));
    } else {
      set_out(out, mx::full(to_shape(shape, ndim), mx::array((int64_t)value, dt), dt));
    }
  });
}

int mlxb_full_like_array(const int* shape, int ndim, const arr value, arr* out) {
  return guard([&] { set_out(out, mx::full(to_shape(shape, ndim), *value)); });
}

int mlxb_arange(double start, double stop, double step, int dtype, arr* out) {
  return guard([&] { set_out(out, mx::arange(start, stop, step, to_dtype(dtype))); });
}

int mlxb_tri(int n, int m, int k, int dtype, arr* out) {
  return guard([&] { set_out(out, mx::tri(n, m, k, to_dtype(dtype))); });
}

int mlxb_astype(const arr a, int dtype, arr* out) {
  return guard([&] { set_out(out, mx::astype(*a, to_dtype(dtype))); });
}

// ---------------------------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------------------------

int mlxb_unary(int op, const arr a, arr* out) {
  return guard([&] {
    const mx::array& x = *a;
    switch (op) {
      case 0: set_out(out, mx::negative(x)); break;
      case 1: set_out(out, mx::exp(x)); break;
      case 2: set_out(out, mx::log(x)); break;
      case 3: set_out(out, mx::sqrt(x)); break;
      case 4: set_out(out, mx::rsqrt(x)); break;
      case 5: set_out(out, mx::square(x)); break;
      case 6: set_out(out, mx::abs(x)); break;
      case 7: set_out(out, mx::sigmoid(x)); break;
      case 8: set_out(out, mx::tanh(x)); break;
      case 9: set_out(out, mx::sin(x)); break;
      case 10: set_out(out, mx::cos(x)); break;
      case 11: set_out(out, mx::logical_not(x)); break;
      case 12: set_out(out, mx::isnan(x)); break;
      case 13: set_out(out, mx::isinf(x)); break;
      case 14: set_out(out, mx::stop_gradient(x)); break;
      case 15: set_out(out, mx::floor(x)); break;
      case 16: set_out(out, mx::ceil(x)); break;
      case 17: set_out(out, mx::round(x)); break;
      case 18: set_out(out, mx::reciprocal(x)); break;
      case 19: set_out(out, mx::sign(x)); break;
      case 20: set_out(out, mx::log1p(x)); break;
      case 21: set_out(out, mx::erf(x)); break;
      case 22: set_out(out, mx::copy(x)); break;
      case 23: set_out(out, mx::contiguous(x)); break;
      case 24: set_out(out, mx::isfinite(x)); break;
      case 25: set_out(out, mx::transpose(x)); break;
      case 26: set_out(out, mx::flatten(x)); break;
      case 27: set_out(out, mx::expm1(x)); break;
      case 28: set_out(out, mx::multiply(x, mx::sigmoid(x))); break;  // silu
      case 29: set_out(out, mx::zeros_like(x)); break;
      case 30: set_out(out, mx::ones_like(x)); break;
      case 31: set_out(out, mx::log2(x)); break;
      default: throw std::invalid_argument("[bridge] unknown unary op " + std::to_string(op));
    }
  });
}

int mlxb_binary(int op, const arr a, const arr b, arr* out) {
  return guard([&] {
    const mx::array& x = *a;
    const mx::array& y = *b;
    switch (op) {
      case 0: set_out(out, mx::add(x, y)); break;
      case 1: set_out(out, mx::subtract(x, y)); break;
      case 2: set_out(out, mx::multiply(x, y)); break;
      case 3: set_out(out, mx::divide(x, y)); break;
      case 4: set_out(out, mx::maximum(x, y)); break;
      case 5: set_out(out, mx::minimum(x, y)); break;
      case 6: set_out(out, mx::power(x, y)); break;
      case 7: set_out(out, mx::equal(x, y)); break;
      case 8: set_out(out, mx::not_equal(x, y)); break;
      case 9: set_out(out, mx::less(x, y)); break;
      case 10: set_out(out, mx::less_equal(x, y)); break;
      case 11: set_out(out, mx::greater(x, y)); break;
      case 12: set_out(out, mx::greater_equal(x, y)); break;
      case 13: set_out(out, mx::logical_and(x, y)); break;
      case 14: set_out(out, mx::logical_or(x, y)); break;
      case 15: set_out(out, mx::matmul(x, y)); break;
      case 16: set_out(out, mx::remainder(x, y)); break;
      case 17: set_out(out, mx::floor_divide(x, y)); break;
      case 18: set_out(out, mx::logaddexp(x, y)); break;
      case 19: set_out(out, mx::outer(x, y)); break;
      default: throw std::invalid_argument("[bridge] unknown binary op " + std::to_string(op));
    }
  });
}

int mlxb_select(const arr c, const arr x, const arr y, arr* out) {
  return guard([&] { set_out(out, mx::where(*c, *x, *y)); });
}

int mlxb_clip(const arr a, const arr lo, const arr hi, arr* out) {
  return guard([&] { set_out(out, mx::clip(*a, opt(lo), opt(hi))); });
}

// ---------------------------------------------------------------------------------------------
// Reductions. naxes < 0: over all axes.
// ---------------------------------------------------------------------------------------------

int mlxb_reduce(int op, const arr a, const int* axes_p, int naxes, int keepdims, arr* out) {
  return guard([&] {
    const mx::array& x = *a;
    bool kd = keepdims != 0;
    std::vector<int> axes;
    if (naxes < 0) {
      for (int i = 0; i < (int)x.ndim(); i++) axes.push_back(i);
    } else {
      axes = to_ints(axes_p, naxes);
    }
    switch (op) {
      case 0: set_out(out, mx::sum(x, axes, kd)); break;
      case 1: set_out(out, mx::mean(x, axes, kd)); break;
      case 2: set_out(out, mx::max(x, axes, kd)); break;
      case 3: set_out(out, mx::min(x, axes, kd)); break;
      case 4: set_out(out, mx::prod(x, axes, kd)); break;
      case 5: set_out(out, mx::logsumexp(x, axes, kd)); break;
      case 6: set_out(out, mx::all(x, axes, kd)); break;
      case 7: set_out(out, mx::any(x, axes, kd)); break;
      case 8: set_out(out, mx::softmax(x, axes, false)); break;
      case 9: set_out(out, mx::softmax(x, axes, true)); break;
      case 10: set_out(out, mx::var(x, axes, kd, 0)); break;
      default: throw std::invalid_argument("[bridge] unknown reduction " + std::to_string(op));
    }
  });
}

// op 0 argmax, 1 argmin; has_axis == 0: over the flattened array.
int mlxb_arg_reduce(int op, const arr a, int has_axis, int axis, int keepdims, arr* out) {
  return guard([&] {
    bool kd = keepdims != 0;
    if (op == 0) {
      set_out(out, has_axis ? mx::argmax(*a, axis, kd) : mx::argmax(*a, kd));
    } else {
      set_out(out, has_axis ? mx::argmin(*a, axis, kd) : mx::argmin(*a, kd));
    }
  });
}

// op 0 cumsum, 1 cumprod, 2 cummax, 3 logcumsumexp
int mlxb_scan(int op, const arr a, int axis, int reverse, int inclusive, arr* out) {
  return guard([&] {
    bool r = reverse != 0, inc = inclusive != 0;
    switch (op) {
      case 0: set_out(out, mx::cumsum(*a, axis, r, inc)); break;
      case 1: set_out(out, mx::cumprod(*a, axis, r, inc)); break;
      case 2: set_out(out, mx::cummax(*a, axis, r, inc)); break;
      case 3: set_out(out, mx::logcumsumexp(*a, axis, r, inc)); break;
      default: throw std::invalid_argument("[bridge] unknown scan " + std::to_string(op));
    }
  });
}

int mlxb_sort(const arr a, int axis, int arg, arr* out) {
  return guard([&] { set_out(out, arg ? mx::argsort(*a, axis) : mx::sort(*a, axis)); });
}

int mlxb_topk(const arr a, int k, int axis, arr* out) {
  return guard([&] { set_out(out, mx::topk(*a, k, axis)); });
}

// ---------------------------------------------------------------------------------------------
// Shape ops
// ---------------------------------------------------------------------------------------------

int mlxb_reshape(const arr a, const int* shape, int ndim, arr* out) {
  return guard([&] { set_out(out, mx::reshape(*a, to_shape(shape, ndim))); });
}

int mlxb_transpose(const arr a, const int* axes, int naxes, arr* out) {
  return guard([&] { set_out(out, mx::transpose(*a, to_ints(axes, naxes))); });
}

int mlxb_swapaxes(const arr a, int i, int j, arr* out) {
  return guard([&] { set_out(out, mx::swapaxes(*a, i, j)); });
}

int mlxb_expand_dims(const arr a, const int* axes, int naxes, arr* out) {
  return guard([&] { set_out(out, mx::expand_dims(*a, to_ints(axes, naxes))); });
}

// naxes < 0: all singleton axes.
int mlxb_squeeze(const arr a, const int* axes, int naxes, arr* out) {
  return guard([&] {
    set_out(out, naxes < 0 ? mx::squeeze(*a) : mx::squeeze(*a, to_ints(axes, naxes)));
  });
}

int mlxb_flatten(const arr a, int start, int end, arr* out) {
  return guard([&] { set_out(out, mx::flatten(*a, start, end)); });
}

int mlxb_broadcast_to(const arr a, const int* shape, int ndim, arr* out) {
  return guard([&] { set_out(out, mx::broadcast_to(*a, to_shape(shape, ndim))); });
}

int mlxb_concatenate(const arr* arrays, int n, int axis, arr* out) {
  return guard([&] {
    std::vector<mx::array> v;
    for (int i = 0; i < n; i++) v.push_back(*arrays[i]);
    set_out(out, mx::concatenate(std::move(v), axis));
  });
}

int mlxb_stack(const arr* arrays, int n, int axis, arr* out) {
  return guard([&] {
    std::vector<mx::array> v;
    for (int i = 0; i < n; i++) v.push_back(*arrays[i]);
    set_out(out, mx::stack(v, axis));
  });
}

// nindices < 0: split into `sections` equal parts; else at the given indices.
int mlxb_split(const arr a, int sections, const int* indices, int nindices, int axis,
               mlxb_vec** out) {
  return guard([&] {
    auto parts = nindices < 0 ? mx::split(*a, sections, axis)
                              : mx::split(*a, to_shape(indices, nindices), axis);
    *out = new mlxb_vec{std::move(parts)};
  });
}

int mlxb_slice(const arr a, const int* start, const int* stop, const int* strides, int n,
               arr* out) {
  return guard([&] {
    set_out(out, mx::slice(*a, to_shape(start, n), to_shape(stop, n), to_shape(strides, n)));
  });
}

int mlxb_slice_update(const arr a, const arr update, const int* start, const int* stop,
                      const int* strides, int n, arr* out) {
  return guard([&] {
    set_out(out, mx::slice_update(*a, *update, to_shape(start, n), to_shape(stop, n),
                                  to_shape(strides, n)));
  });
}

int mlxb_repeat(const arr a, int repeats, int axis, arr* out) {
  return guard([&] { set_out(out, mx::repeat(*a, repeats, axis)); });
}

int mlxb_tile(const arr a, const int* reps, int n, arr* out) {
  return guard([&] { set_out(out, mx::tile(*a, to_ints(reps, n))); });
}

int mlxb_pad(const arr a, const int* axes, int naxes, const int* lo, const int* hi,
             const arr value, arr* out) {
  return guard([&] {
    set_out(out, mx::pad(*a, to_ints(axes, naxes), to_shape(lo, naxes), to_shape(hi, naxes),
                         *value));
  });
}

// ---------------------------------------------------------------------------------------------
// Indexing
// ---------------------------------------------------------------------------------------------

// has_axis == 0: index the flattened array.
int mlxb_take(const arr a, const arr indices, int has_axis, int axis, arr* out) {
  return guard([&] {
    set_out(out, has_axis ? mx::take(*a, *indices, axis) : mx::take(*a, *indices));
  });
}

int mlxb_take_along_axis(const arr a, const arr indices, int axis, arr* out) {
  return guard([&] { set_out(out, mx::take_along_axis(*a, *indices, axis)); });
}

int mlxb_put_along_axis(const arr a, const arr indices, const arr values, int axis, arr* out) {
  return guard([&] { set_out(out, mx::put_along_axis(*a, *indices, *values, axis)); });
}

int mlxb_scatter_add_axis(const arr a, const arr indices, const arr values, int axis, arr* out) {
  return guard([&] { set_out(out, mx::scatter_add_axis(*a, *indices, *values, axis)); });
}

// ---------------------------------------------------------------------------------------------
// Linear algebra, masks
// ---------------------------------------------------------------------------------------------

int mlxb_addmm(const arr c, const arr a, const arr b, float alpha, float beta, arr* out) {
  return guard([&] { set_out(out, mx::addmm(*c, *a, *b, alpha, beta)); });
}

int mlxb_tril(const arr a, int k, arr* out) {
  return guard([&] { set_out(out, mx::tril(*a, k)); });
}

int mlxb_triu(const arr a, int k, arr* out) {
  return guard([&] { set_out(out, mx::triu(*a, k)); });
}

// ---------------------------------------------------------------------------------------------
// fast::
// ---------------------------------------------------------------------------------------------

int mlxb_rms_norm(const arr x, const arr w, float eps, arr* out) {
  return guard([&] { set_out(out, mx::fast::rms_norm(*x, opt(w), eps)); });
}

int mlxb_layer_norm(const arr x, const arr w, const arr b, float eps, arr* out) {
  return guard([&] { set_out(out, mx::fast::layer_norm(*x, opt(w), opt(b), eps)); });
}

// has_base == 0: `freqs` must be given. offset_arr != null overrides `offset`.
int mlxb_rope(const arr x, int dims, int traditional, int has_base, float base, float scale,
              int offset, const arr offset_arr, const arr freqs, arr* out) {
  return guard([&] {
    std::optional<float> b = has_base ? std::optional<float>(base) : std::nullopt;
    if (offset_arr) {
      set_out(out, mx::fast::rope(*x, dims, traditional != 0, b, scale, *offset_arr, opt(freqs)));
    } else {
      set_out(out, mx::fast::rope(*x, dims, traditional != 0, b, scale, offset, opt(freqs)));
    }
  });
}

// mask_mode: "" (none or array mask) or "causal".
int mlxb_sdpa(const arr q, const arr k, const arr v, float scale, const char* mask_mode,
              const arr mask, arr* out) {
  return guard([&] {
    set_out(out, mx::fast::scaled_dot_product_attention(*q, *k, *v, scale,
                                                        std::string(mask_mode), opt(mask)));
  });
}

// ---------------------------------------------------------------------------------------------
// Quantization (affine mode unless `mode` says otherwise)
// ---------------------------------------------------------------------------------------------

int mlxb_quantize(const arr w, int group_size, int bits, const char* mode, mlxb_vec** out) {
  return guard([&] {
    auto parts = mx::quantize(*w, group_size, bits, std::string(mode));
    *out = new mlxb_vec{std::move(parts)};
  });
}

int mlxb_dequantize(const arr w, const arr scales, const arr biases, int group_size, int bits,
                    const char* mode, arr* out) {
  return guard([&] {
    set_out(out,
            mx::dequantize(*w, *scales, opt(biases), group_size, bits, std::string(mode)));
  });
}

int mlxb_quantized_matmul(const arr x, const arr w, const arr scales, const arr biases,
                          int transpose, int group_size, int bits, const char* mode,
                          arr* out) {
  return guard([&] {
    set_out(out, mx::quantized_matmul(*x, *w, *scales, opt(biases), transpose != 0, group_size,
                                      bits, std::string(mode)));
  });
}

// ---------------------------------------------------------------------------------------------
// Random
// ---------------------------------------------------------------------------------------------

int mlxb_random_seed(uint64_t seed) {
  return guard([&] { mx::random::seed(seed); });
}

int mlxb_random_key(uint64_t seed, arr* out) {
  return guard([&] { set_out(out, mx::random::key(seed)); });
}

int mlxb_random_split(const arr key, int num, arr* out) {
  return guard([&] { set_out(out, mx::random::split(*key, num)); });
}

int mlxb_random_normal(const int* shape, int ndim, int dtype, float loc, float scale,
                       const arr key, arr* out) {
  return guard([&] {
    set_out(out, mx::random::normal(to_shape(shape, ndim), to_dtype(dtype), loc, scale,
                                    opt(key)));
  });
}

int mlxb_random_uniform(const arr low, const arr high, const int* shape, int ndim, int dtype,
                        const arr key, arr* out) {
  return guard([&] {
    set_out(out, mx::random::uniform(*low, *high, to_shape(shape, ndim), to_dtype(dtype),
                                     opt(key)));
  });
}

int mlxb_random_bernoulli(const arr p, const int* shape, int ndim, const arr key, arr* out) {
  return guard([&] {
    set_out(out, mx::random::bernoulli(*p, to_shape(shape, ndim), opt(key)));
  });
}

int mlxb_random_categorical(const arr logits, int axis, int num_samples, const arr key,
                            arr* out) {
  return guard([&] {
    if (num_samples > 0) {
      set_out(out, mx::random::categorical(*logits, axis, num_samples, opt(key)));
    } else {
      set_out(out, mx::random::categorical(*logits, axis, opt(key)));
    }
  });
}

int mlxb_random_randint(const arr low, const arr high, const int* shape, int ndim, int dtype,
                        const arr key, arr* out) {
  return guard([&] {
    set_out(out, mx::random::randint(*low, *high, to_shape(shape, ndim), to_dtype(dtype),
                                     opt(key)));
  });
}

// ---------------------------------------------------------------------------------------------
// Transforms
// ---------------------------------------------------------------------------------------------

int mlxb_value_and_grad(mlxb_closure_fn f, void* ctx, const mlxb_vec* inputs,
                        const int* argnums, int nargnums, mlxb_vec** values, mlxb_vec** grads) {
  return guard([&] {
    auto vg = mx::value_and_grad(wrap_closure(f, ctx), to_ints(argnums, nargnums));
    auto [vals, gs] = vg(inputs->v);
    *values = new mlxb_vec{std::move(vals)};
    *grads = new mlxb_vec{std::move(gs)};
  });
}

int mlxb_vjp(mlxb_closure_fn f, void* ctx, const mlxb_vec* primals, const mlxb_vec* cotangents,
             mlxb_vec** outputs, mlxb_vec** vjps) {
  return guard([&] {
    auto [outs, vs] = mx::vjp(wrap_closure(f, ctx), primals->v, cotangents->v);
    *outputs = new mlxb_vec{std::move(outs)};
    *vjps = new mlxb_vec{std::move(vs)};
  });
}

// Calls `f` compiled: MLX traces it the first time it meets inputs of these shapes and dtypes,
// keeps the simplified, fused graph under `id`, and replays it on later calls without calling
// `f`. So `f` must compute the same function for one `id` every time: what varies between calls
// must be among the inputs (what it captures is baked in). A failed trace leaves no entry.
int mlxb_compiled_call(mlxb_closure_fn f, void* ctx, uint64_t id, const mlxb_vec* inputs, mlxb_vec** outputs) {
  return guard([&] {
    try {
      auto fun = mx::detail::compile(wrap_closure(f, ctx), static_cast<std::uintptr_t>(id), false);
      *outputs = new mlxb_vec{fun(inputs->v)};
    } catch (...) {
      mx::detail::compile_erase(mx::detail::compile_cache(), static_cast<std::uintptr_t>(id));
      throw;
    }
  });
}

// Forgets the graphs compiled under `id` (and what they hold on to).
int mlxb_compile_erase(uint64_t id) {
  return guard([&] { mx::detail::compile_erase(mx::detail::compile_cache(), static_cast<std::uintptr_t>(id)); });
}

// Calls `f` under gradient checkpointing: its intermediates are not kept for the backward pass
// but recomputed by calling `f` again. `ctx` must therefore stay valid until `drop(ctx)`, which is
// called when MLX no longer holds the function (after the graph using it is gone).
int mlxb_checkpoint(mlxb_closure_fn f, void* ctx, void (*drop)(void*), const mlxb_vec* inputs,
                    mlxb_vec** outputs) {
  return guard([&] {
    std::shared_ptr<void> keep(ctx, drop);
    auto inner = [f, keep](const std::vector<mx::array>& xs) {
      mlxb_vec in{xs};
      mlxb_vec out;
      if (f(keep.get(), &in, &out) != 0) throw CallbackError();
      return std::move(out.v);
    };
    auto fun = mx::checkpoint(inner);
    *outputs = new mlxb_vec{fun(inputs->v)};
  });
}

// ---------------------------------------------------------------------------------------------
// Safetensors, GGUF
// ---------------------------------------------------------------------------------------------

int mlxb_safetensors_load(const char* path, mlxb_st** out) {
  return guard([&] {
    auto [arrays, meta] = mx::load_safetensors(std::string(path));
    auto st = std::make_unique<mlxb_st>();
    add_sorted(*st, arrays);
    std::vector<std::string> mkeys;
    for (auto& kv : meta) mkeys.push_back(kv.first);
    std::sort(mkeys.begin(), mkeys.end());
    for (auto& k : mkeys) {
      st->meta_keys.push_back(k);
      st->meta_vals.push_back(meta.at(k));
    }
    *out = st.release();
  });
}

// MLX's own GGUF reader (tensors only; the metadata is read by brain-train's reader). Measured on
// 0.32.4: F32/F16 as stored, BF16 -> f16, Q4_0/Q4_1/Q8_0 -> (X.weight u32, X.scales, X.biases)
// affine triples with group size 32, Q2_K/Q4_K/Q6_K -> f16 (Q4_K wrongly: odd sub-blocks get the
// scale/min of the even ones), others throw. It opens the file O_RDWR and maps it shared.
int mlxb_gguf_load(const char* path, mlxb_st** out) {
  return guard([&] {
    auto loaded = mx::load_gguf(std::string(path));
    auto& arrays = loaded.first;
    auto st = std::make_unique<mlxb_st>();
    add_sorted(*st, arrays);
    *out = st.release();
  });
}

void mlxb_st_free(mlxb_st* st) { delete st; }
size_t mlxb_st_len(const mlxb_st* st) { return st->names.size(); }
const char* mlxb_st_name(const mlxb_st* st, size_t i) { return st->names.at(i).c_str(); }
int mlxb_st_array(const mlxb_st* st, size_t i, arr* out) {
  return guard([&] { set_out(out, st->arrays.at(i)); });
}
size_t mlxb_st_meta_len(const mlxb_st* st) { return st->meta_keys.size(); }
const char* mlxb_st_meta_key(const mlxb_st* st, size_t i) { return st->meta_keys.at(i).c_str(); }
const char* mlxb_st_meta_val(const mlxb_st* st, size_t i) { return st->meta_vals.at(i).c_str(); }

int mlxb_safetensors_save(const char* path, const char** names, const arr* arrays, int n,
                          const char** meta_keys, const char** meta_vals, int nmeta) {
  return guard([&] {
    std::unordered_map<std::string, mx::array> m;
    for (int i = 0; i < n; i++) {
      if (!m.emplace(std::string(names[i]), *arrays[i]).second) {
        throw std::invalid_argument(std::string("[bridge] duplicate tensor name ") + names[i]);
      }
    }
    std::unordered_map<std::string, std::string> meta;
    for (int i = 0; i < nmeta; i++) meta[meta_keys[i]] = meta_vals[i];
    mx::save_safetensors(std::string(path), std::move(m), std::move(meta));
  });
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

size_t mlxb_get_active_memory() { return mx::get_active_memory(); }
size_t mlxb_get_peak_memory() { return mx::get_peak_memory(); }
void mlxb_reset_peak_memory() { mx::reset_peak_memory(); }
size_t mlxb_get_cache_memory() { return mx::get_cache_memory(); }
size_t mlxb_get_memory_limit() { return mx::get_memory_limit(); }
int mlxb_set_memory_limit(size_t limit, size_t* previous) {
  return guard([&] { *previous = mx::set_memory_limit(limit); });
}
int mlxb_set_cache_limit(size_t limit, size_t* previous) {
  return guard([&] { *previous = mx::set_cache_limit(limit); });
}
int mlxb_clear_cache() {
  return guard([&] { mx::clear_cache(); });
}

// ---------------------------------------------------------------------------------------------
// Devices and streams (type 0 = cpu, 1 = gpu)
// ---------------------------------------------------------------------------------------------

int mlxb_is_available(int type) {
  try {
    return mx::is_available(to_device(type, 0)) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int mlxb_set_default_device(int type, int index) {
  return guard([&] { mx::set_default_device(to_device(type, index)); });
}

void mlxb_default_device(int* type, int* index) {
  auto& d = mx::default_device();
  *type = d.type == mx::Device::gpu ? 1 : 0;
  *index = d.index;
}

int mlxb_new_stream(int type, int index, int* stream_index) {
  return guard([&] { *stream_index = mx::new_stream(to_device(type, index)).index; });
}

int mlxb_default_stream(int type, int index, int* stream_index) {
  return guard([&] { *stream_index = mx::default_stream(to_device(type, index)).index; });
}

int mlxb_set_default_stream(int stream_index, int type, int index) {
  return guard([&] { mx::set_default_stream(mx::Stream(stream_index, to_device(type, index))); });
}

int mlxb_synchronize() {
  return guard([&] { mx::synchronize(); });
}

}  // extern "C"

extern "C" {

// ---------------------------------------------------------------------------------------------
// Distributed: one process-wide group (MLX's own backends: ring over TCP, MPI, JACCL, NCCL),
// chosen by MLX's environment conventions (MLX_RANK + MLX_HOSTFILE for the ring).
// ---------------------------------------------------------------------------------------------

static std::optional<mx::distributed::Group> g_group;

int mlxb_dist_is_available(const char* backend) {
  try {
    return mx::distributed::is_available(backend) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int mlxb_dist_init(int strict, const char* backend, int* rank, int* size) {
  return guard([&] {
    g_group = mx::distributed::init(strict != 0, backend);
    *rank = g_group->rank();
    *size = g_group->size();
  });
}

int mlxb_dist_all_sum(const arr a, arr* out) {
  return guard([&] {
    if (!g_group) throw std::runtime_error("the distributed group is not initialized");
    set_out(out, mx::distributed::all_sum(*a, *g_group));
  });
}

int mlxb_dist_all_gather(const arr a, arr* out) {
  return guard([&] {
    if (!g_group) throw std::runtime_error("the distributed group is not initialized");
    set_out(out, mx::distributed::all_gather(*a, *g_group));
  });
}

}  // extern "C"
