// Sensitivity-driven bit allocation; see bit_allocation.h.
#include "quant/bit_allocation.h"

#include <algorithm>
#include <queue>
#include <sstream>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/calib_activations.h"
#include "quant/loss_gradients.h"
#include "quant/tensor_spec_rules.h"
#include "tensor/tensor_names.h"

namespace elutq {
namespace {

// "w3g128" for a spec (the tensor-spec rules' width syntax).
std::string width_text(const QuantSpec& s) {
  return "w" + std::to_string(s.bits) + "g" + std::to_string(s.group);
}

// One tensor's upgrade path: the candidates on the lower convex hull of (bits, error), cheapest
// first, so that each step buys less error per bit than the one before it.
std::vector<int> convex_path(const std::vector<double>& bits, const std::vector<double>& error) {
  std::vector<int> order(bits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    return bits[a] != bits[b] ? bits[a] < bits[b] : error[a] < error[b];
  });
  std::vector<int> hull;
  for (int c : order) {
    if (!hull.empty() && error[c] >= error[hull.back()]) continue;  // dominated: more bits, no gain
    // Drop the last point while it lies on or above the segment from the one before it to c.
    while (hull.size() >= 2) {
      const int a = hull[hull.size() - 2], b = hull.back();
      const double slope_ab = (error[a] - error[b]) / (bits[b] - bits[a]);
      const double slope_ac = (error[a] - error[c]) / (bits[c] - bits[a]);
      if (slope_ac < slope_ab) break;
      hull.pop_back();
    }
    hull.push_back(c);
  }
  return hull;
}

}  // namespace

std::vector<QuantSpec> parse_width_choices(const std::string& list, QuantKind kind) {
  std::vector<QuantSpec> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    require(!item.empty(), "--width-choices '", list, "': an empty entry");
    TensorSpecRule r;
    try {
      r = parse_tensor_spec_rule("x=" + item);
    } catch (const Error& e) {
      fail("--width-choices: '", item, "' is not a width like w3g128 (", e.what(), ")");
    }
    require(r.group.has_value(), "--width-choices: '", item, "' needs its group, e.g. ", item,
            "g128");
    QuantSpec s;
    s.kind = kind;
    s.bits = r.bits;
    s.group = *r.group;
    try {
      validate_quant_spec(s);
    } catch (const Error& e) {
      fail("--width-choices: '", item, "': ", e.what());
    }
    const bool seen = std::any_of(out.begin(), out.end(), [&](const QuantSpec& o) {
      return o.bits == s.bits && o.group == s.group;
    });
    if (!seen) out.push_back(s);
  }
  require(out.size() >= 2, "--width-choices '", list,
          "' needs at least two widths to choose between");
  return out;
}

std::vector<QuantSpec> default_width_choices(QuantKind kind, int bits, int group) {
  const int max_bits = (kind == QuantKind::HLQ || kind == QuantKind::HLQC) ? 4 : 8;
  std::vector<QuantSpec> out;
  for (int b = bits; b <= std::min(bits + 2, max_bits); ++b) {
    QuantSpec s;
    s.kind = kind;
    s.bits = b;
    s.group = group;
    out.push_back(s);
  }
  return out;
}

std::vector<int> allocate_widths(const std::vector<TensorSensitivity>& tensors,
                                 const std::vector<QuantSpec>& choices, double target_bpw) {
  const size_t n = tensors.size(), k = choices.size();
  std::vector<std::vector<double>> bits(n, std::vector<double>(k));
  double weights = 0, used = 0;
  std::vector<std::vector<int>> path(n);
  std::vector<size_t> at(n, 0);  // position on the path
  for (size_t t = 0; t < n; ++t) {
    require(tensors[t].error.size() == k, "internal: ", tensors[t].name, " has ",
            tensors[t].error.size(), " errors for ", k, " widths");
    const double w = double(tensors[t].rows) * double(tensors[t].cols);
    for (size_t c = 0; c < k; ++c) bits[t][c] = w * choices[c].bits_per_weight(tensors[t].cols);
    weights += w;
    path[t] = convex_path(bits[t], tensors[t].error);
    used += bits[t][size_t(path[t][0])];
  }
  const double budget = target_bpw * weights;
  require(used <= budget * (1 + 1e-12), "--target-bpw ", target_bpw,
          " is below what the narrowest widths store: ", used / weights, " bits per weight");
  // Best next step of every tensor, by error removed per extra bit; ties to the earlier tensor.
  using Step = std::pair<double, size_t>;  // (gain per bit, -tensor) in a max-heap
  const auto gain_of = [&](size_t t) {
    const int a = path[t][at[t]], b = path[t][at[t] + 1];
    return (tensors[t].error[size_t(a)] - tensors[t].error[size_t(b)]) /
           (bits[t][size_t(b)] - bits[t][size_t(a)]);
  };
  auto cmp = [](const Step& x, const Step& y) {
    return x.first != y.first ? x.first < y.first : x.second > y.second;
  };
  std::priority_queue<Step, std::vector<Step>, decltype(cmp)> heap(cmp);
  for (size_t t = 0; t < n; ++t)
    if (path[t].size() > 1) heap.push({gain_of(t), t});
  while (!heap.empty()) {
    const size_t t = heap.top().second;
    heap.pop();
    const double extra = bits[t][size_t(path[t][at[t] + 1])] - bits[t][size_t(path[t][at[t]])];
    if (used + extra > budget) continue;  // this tensor's upgrades no longer fit; others may
    used += extra;
    ++at[t];
    if (at[t] + 1 < path[t].size()) heap.push({gain_of(t), t});
  }
  std::vector<int> chosen(n);
  for (size_t t = 0; t < n; ++t) chosen[t] = path[t][at[t]];
  return chosen;
}

double allocation_bpw(const std::vector<TensorSensitivity>& tensors,
                      const std::vector<QuantSpec>& choices, const std::vector<int>& chosen) {
  double bits = 0, weights = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const double w = double(tensors[t].rows) * double(tensors[t].cols);
    bits += w * choices[size_t(chosen[t])].bits_per_weight(tensors[t].cols);
    weights += w;
  }
  return weights > 0 ? bits / weights : 0;
}

std::vector<std::string> allocation_rules(const std::vector<TensorSensitivity>& tensors,
                                          const std::vector<QuantSpec>& choices,
                                          const std::vector<int>& chosen) {
  std::vector<std::string> rules;
  for (size_t t = 0; t < tensors.size(); ++t) {
    std::string pattern = "^";
    for (char ch : tensors[t].name) {
      if (ch == '.') pattern += '\\';
      pattern += ch;
    }
    rules.push_back(pattern + "$=" + width_text(choices[size_t(chosen[t])]));
  }
  return rules;
}

std::vector<TensorSensitivity> measure_model_sensitivity(
    const ModelSource& src, const BlockwiseOptions& opt, const std::vector<std::vector<int>>& seqs,
    const std::vector<QuantSpec>& choices, const std::function<void(int, int)>& progress) {
  require(!seqs.empty(), "bit allocation needs calibration sequences");
  const ModelConfig& c = src.config();
  for (int l = 0; l < c.n_layers; ++l)
    for (LinearSlot s : kAllLinearSlots) {
      const int64_t cols = linear_shape(c, s).second;
      for (const QuantSpec& q : choices)
        require(q.group <= cols, "--width-choices ", width_text(q), ": group ", q.group,
                " is longer than the rows of ", linear_weight_name(l, s), " (", cols, " weights)");
    }
  BlockwiseOptions fp = opt;
  fp.tensor_rules.clear();
  fp.block_ap.reset();
  fp.awq = false;
  BlockwiseQuantizer bq(src, fp);
  // How much each block's output moves the loss: its error counts at that price (squared
  // gradient, a diagonal Fisher estimate), not at its size relative to the residual stream.
  std::vector<std::vector<float>> weight;
  {
    ThreadPool pool(opt.n_threads);
    weight = block_output_gradients(src, seqs, pool);
  }
  for (auto& w : weight)
    for (float& v : w) v *= v;
  MemoryCalibActivations store(int64_t(seqs.size()), int64_t(seqs[0].size()), c.dim);
  bq.embed_calibration(seqs, store);
  std::vector<TensorSensitivity> out;
  for (int l = 0; l < c.n_layers; ++l) {
    bq.load_block(l);
    const std::vector<std::vector<double>> e =
        bq.measure_sensitivity(l, store, choices, &weight[size_t(l)]);
    weight[size_t(l)] = {};
    bq.release_block(l);
    for (LinearSlot s : kAllLinearSlots) {
      const auto [R, C] = linear_shape(c, s);
      out.push_back({linear_weight_name(l, s), R, C, e[size_t(s)]});
    }
    if (progress) progress(l + 1, c.n_layers);
  }
  return out;
}

}  // namespace elutq
