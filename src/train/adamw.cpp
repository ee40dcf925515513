// AdamW and the learning-rate schedules; see adamw.h.
#include "train/adamw.h"

#include <cmath>

#include "core/error.h"

namespace elutq {

AdamW::AdamW(std::vector<AdamWGroup> groups, const AdamWOptions& opt)
    : groups_(std::move(groups)), opt_(opt) {
  for (const AdamWGroup& g : groups_) {
    require(g.n == 0 || (g.param && g.grad), "AdamW: a group of ", g.n, " values has no arrays");
    m_.emplace_back(g.n, 0.0f);
    v_.emplace_back(g.n, 0.0f);
  }
}

void AdamW::step(float lr_scale) {
  ++t_;
  const double c1 = 1.0 - std::pow(double(opt_.beta1), t_);
  const double c2 = 1.0 - std::pow(double(opt_.beta2), t_);
  const float b1 = opt_.beta1, b2 = opt_.beta2;
  for (size_t k = 0; k < groups_.size(); ++k) {
    const AdamWGroup& g = groups_[k];
    const float lr = g.lr * lr_scale;
    if (lr == 0.0f) continue;  // a frozen group keeps its values and moments
    // PyTorch's order: decay, then the moment update and the bias-corrected step.
    const float decay = 1.0f - lr * g.weight_decay;
    const float step = float(lr / c1);
    const float root_c2 = float(std::sqrt(c2));
    float* m = m_[k].data();
    float* v = v_[k].data();
    for (size_t i = 0; i < g.n; ++i) {
      const float gr = g.grad[i];
      g.param[i] *= decay;
      m[i] = b1 * m[i] + (1.0f - b1) * gr;
      v[i] = b2 * v[i] + (1.0f - b2) * gr * gr;
      g.param[i] -= step * m[i] / (std::sqrt(v[i]) / root_c2 + opt_.eps);
    }
  }
}

LrSchedule parse_lr_schedule(const std::string& name) {
  if (name == "constant") return LrSchedule::Constant;
  if (name == "linear") return LrSchedule::Linear;
  if (name == "cosine") return LrSchedule::Cosine;
  fail("unknown learning-rate schedule '", name, "' (use constant, linear or cosine)");
}

const char* lr_schedule_name(LrSchedule s) {
  switch (s) {
    case LrSchedule::Constant: return "constant";
    case LrSchedule::Linear: return "linear";
    case LrSchedule::Cosine: return "cosine";
  }
  return "?";
}

float lr_scale_at(LrSchedule s, int step, int total, int warmup) {
  if (warmup > 0 && step < warmup) return float(step + 1) / float(warmup + 1);
  step -= std::max(warmup, 0);
  total -= std::max(warmup, 0);
  if (total <= 0 || s == LrSchedule::Constant) return 1.0f;
  const double f = double(step) / double(total);
  if (s == LrSchedule::Linear) return float(1.0 - f);
  return float(0.5 * (1.0 + std::cos(M_PI * f)));
}

}  // namespace elutq
