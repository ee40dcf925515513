// One quantized projection under training. It keeps latent fp32 weights W and the format's
// per-group parameters (HLQ: s_0..s_{B-1}, z; uniform: scale, zero; HLQC: s_0 and the midpoint
// m, its ratio codes and codebook frozen, so s_b = s_0 * ratio_b stays a codebook ratio); the codes are the nearest
// representable pattern of each latent weight under the current parameters (assign_nearest), and
// the forward multiplies by the effective weights W_eff = dequant(codes, params).
//
// Gradients from dL/dW_eff (what block_backward returns):
//   parameters, exact given the codes:  dL/ds_b = sum over the group of dL/dW_eff * bit_b(code)
//                                       dL/dz   = sum over the group of dL/dW_eff
//                                       (uniform: dL/dscale = sum dL/dW_eff * code, dL/dzero = sum;
//                                       HLQC: dL/ds_0 = sum dL/dW_eff * sum_b ratio_b (bit_b - 1/2),
//                                       dL/dm = sum)
//   latent weights, straight through:   dL/dW   = dL/dW_eff
// Block-AP trains both (codes follow the weights); E2E-QP freezes the codes and trains only the
// parameters.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "tensor/qformat.h"

namespace elutq {

// The formats finetuning trains: HLQ, HLQC and uniform (not GANQ's per-row codebooks).
bool trainable_format(const QuantSpec& spec);
// Trained parameters per group of a format (HLQC: 2, fewer than the B + 1 it holds expanded).
int trainable_params_per_group(const QuantSpec& spec);
// A matrix's trained parameters (params() below) from its QuantizedMatrix::params, and back
// (HLQC: expanded with the matrix's ratio codes and codebook; no rounding).
std::vector<float> trainable_params(const QuantizedMatrix& q);
void expand_trainable_params(const std::vector<float>& trained, QuantizedMatrix& q);

class QuantizedLinearParam {
 public:
  // From a fitted matrix (HLQ, HLQC or uniform; other kinds throw Error). The latent weights start at
  // its dequantized values, so the first reassignment gives back its own codes. Without
  // with_latent (codes frozen, as in E2E-QP) no latent copy is held, and what needs one throws.
  // With a pool the effective weights are formed on it (E2E-QP builds a block's every step).
  explicit QuantizedLinearParam(QuantizedMatrix fitted, bool with_latent = true,
                                ThreadPool* pool = nullptr);

  int64_t rows() const { return q_.rows; }
  int64_t cols() const { return q_.cols; }
  const QuantSpec& spec() const { return q_.spec; }

  // Rebuilds the effective weights from the parameters; with reassign_codes, first gives every
  // latent weight the nearest code under them (Block-AP), else keeps the codes (E2E-QP).
  void update_effective(bool reassign_codes, ThreadPool& pool);
  void update_effective(bool reassign_codes, ThreadPool* pool);  // serial without a pool
  const float* effective() const { return eff_.data(); }  // (rows, cols)

  // Adds the gradients that d_eff = dL/dW_eff (rows, cols) implies: into grad_params() always,
  // into grad_latent() when with_latent (it is then sized on first use).
  void accumulate_grads(const float* d_eff, bool with_latent, ThreadPool& pool);
  void zero_grads();

  // What an optimizer updates, with its gradient arrays of the same length.
  std::vector<float>& latent() { return latent_; }
  std::vector<float>& params() { return trained_; }  // trainable_params' layout
  std::vector<float>& grad_latent() { return grad_latent_; }
  std::vector<float>& grad_params() { return grad_params_; }

  // The matrix to store: parameters rounded to fp16, then (with reassign_codes) codes assigned
  // to the latent weights under the rounded parameters; codes kept otherwise.
  QuantizedMatrix finish(bool reassign_codes, ThreadPool& pool) const;

  // Current codes and parameters (not rounded), as of the last update_effective.
  const QuantizedMatrix& current() const { return q_; }

 private:
  QuantizedMatrix q_;
  std::vector<float> trained_;  // what params() trains; q_.params follows it in update_effective
  std::vector<float> latent_, eff_, grad_latent_, grad_params_;
};

}  // namespace elutq
