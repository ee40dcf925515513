// AdamW (decoupled weight decay) over groups of float arrays, each group with its own learning
// rate, and the learning-rate schedules the finetuning stages use.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace elutq {

struct AdamWGroup {
  float* param = nullptr;       // (n) updated in place
  const float* grad = nullptr;  // (n)
  size_t n = 0;
  float lr = 1e-4f;             // peak learning rate of this group
  float weight_decay = 0.0f;    // decoupled: param -= lr * weight_decay * param
};

struct AdamWOptions {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

class AdamW {
 public:
  AdamW(std::vector<AdamWGroup> groups, const AdamWOptions& opt = {});
  // One step with every group's lr multiplied by lr_scale (the schedule), bias-corrected as in
  // PyTorch's torch.optim.AdamW.
  void step(float lr_scale = 1.0f);
  int steps() const { return t_; }

 private:
  std::vector<AdamWGroup> groups_;
  AdamWOptions opt_;
  std::vector<std::vector<float>> m_, v_;
  int t_ = 0;
};

enum class LrSchedule { Constant, Linear, Cosine };

// "constant", "linear", "cosine"; throws Error otherwise.
LrSchedule parse_lr_schedule(const std::string& name);
const char* lr_schedule_name(LrSchedule s);

// The multiplier of the peak learning rate at step (0-based) of total: first `warmup` steps
// rising linearly, (step + 1) / (warmup + 1); then over the remaining steps constant 1, linear
// 1 -> 0, or cosine (1 + cos(pi * f)) / 2, f the fraction of them done.
float lr_scale_at(LrSchedule s, int step, int total, int warmup = 0);

}  // namespace elutq
