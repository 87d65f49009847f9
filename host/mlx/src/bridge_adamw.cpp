// AdamW's update of float32 parameters as one CPU primitive per parameter.
//
// Written with MLX's ops, one parameter's update is ~15 array ops (casts, scalar multiplies,
// adds, a square, a square root, a divide), each a graph node, an allocation and a scheduled task
// on the stream: LoRA on SmolLM2's 30 layers has 240 small matrices (0.9M numbers) and the
// composed update took 50-60 ms, as one primitive per parameter 8-11 ms (profile_step's
// "optimizer", BRAIN_COMPOSED_ADAMW=1 for the composed form). Each primitive reads the parameter,
// its gradient and moments and writes the new ones in one pass, in the same order of float
// operations as the composed form (optim.rs), so the two agree to rounding.

#include <cmath>
#include <memory>
#include <sstream>

#include "bridge_util.h"
#include "mlx/primitives.h"

using namespace mlxb;

namespace {

struct AdamWConfig {
  float lr_hat, v_scale, b1, b2, eps, decay;
  bool operator==(const AdamWConfig&) const = default;
};

// One parameter's update. Inputs: p, g, m, v (float32, contiguous, one shape); outputs: p', m', v'.
class AdamWCpu : public mx::Primitive {
 public:
  AdamWCpu(mx::Stream s, AdamWConfig c) : mx::Primitive(s), c_(c) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mlxb::prepare(stream(), in, out);
    enc.dispatch([p = in[0].data<float>(), g = in[1].data<float>(), m = in[2].data<float>(),
                  v = in[3].data<float>(), po = out[0].data<float>(), mo = out[1].data<float>(),
                  vo = out[2].data<float>(), size = in[0].size(), c = c_]() {
      for (size_t j = 0; j < size; j++) {
        const float mj = m[j] * c.b1 + g[j] * (1.0f - c.b1);
        const float vj = v[j] * c.b2 + (g[j] * g[j]) * (1.0f - c.b2);
        const float denom = std::sqrt(vj) * c.v_scale + c.eps;
        po[j] = p[j] * c.decay - (mj * c.lr_hat) / denom;
        mo[j] = mj;
        vo[j] = vj;
      }
    });
  }
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[adamw_cpu] CPU only; use the composed update on a GPU");
  }
  const char* name() const override { return "AdamWCpu"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto o = dynamic_cast<const AdamWCpu*>(&other);
    return o && o->c_ == c_;
  }

 private:
  AdamWConfig c_;
};

}  // namespace

extern "C" {

// One AdamW update of every parameter: p' = p * decay - lr_hat * m' / (sqrt(v') * v_scale + eps)
// with m' = b1 m + (1 - b1) g, v' = b2 v + (1 - b2) g^2. Parameters, moments: float32, one shape
// each (gradients of any float dtype are cast). Returns params' then m' then v' (3n arrays).
int mlxb_adamw_cpu(const mlxb_vec* params, const mlxb_vec* grads, const mlxb_vec* m, const mlxb_vec* v,
                   float lr_hat, float v_scale, float b1, float b2, float eps, float decay, mlxb_vec** out) {
  return guard([&] {
    const size_t n = params->v.size();
    if (grads->v.size() != n || m->v.size() != n || v->v.size() != n) {
      std::ostringstream os;
      os << "[adamw_cpu] " << n << " parameters but " << grads->v.size() << " gradients, " << m->v.size()
         << " first and " << v->v.size() << " second moments";
      throw std::invalid_argument(os.str());
    }
    auto s = mx::default_stream(mx::Device::cpu);
    const AdamWConfig c{lr_hat, v_scale, b1, b2, eps, decay};
    std::vector<mx::array> res(3 * n, mx::array(0.0f));
    for (size_t i = 0; i < n; i++) {
      std::vector<mx::array> in;
      for (const mlxb_vec* list : {params, grads, m, v}) {
        const auto& a = list->v[i];
        if (a.shape() != params->v[i].shape()) {
          std::ostringstream os;
          os << "[adamw_cpu] parameter " << i << " has shape " << params->v[i].shape() << " but its "
             << (list == grads ? "gradient" : list == m ? "first moment" : "second moment") << " " << a.shape();
          throw std::invalid_argument(os.str());
        }
        if (list != grads && a.dtype() != mx::float32) {
          throw std::invalid_argument("[adamw_cpu] parameters and moments must be float32");
        }
        in.push_back(mx::contiguous(list == grads ? mx::astype(a, mx::float32, s) : a, false, s));
      }
      // One primitive per parameter: MLX gives each output of a primitive the list of its
      // siblings, so one primitive for all would cost quadratically in the number of parameters.
      const auto& shape = params->v[i].shape();
      auto outs = mx::array::make_arrays({shape, shape, shape}, {mx::float32, mx::float32, mx::float32},
                                         std::make_shared<AdamWCpu>(s, c), std::move(in));
      for (int k = 0; k < 3; k++) res[k * n + i] = outs[k];
    }
    *out = new mlxb_vec{std::move(res)};
  });
}

}  // extern "C"
