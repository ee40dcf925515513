// The calibration activations of block-by-block quantization: N sequences of (L, dim) fp32 hidden
// states, the inputs of the block being quantized; the quantizer overwrites sequence i with the
// block's output once the block is final (each sequence is independent, so one copy suffices).
// While they fit the byte budget they live in memory; otherwise they live in a scratch file (pread/pwrite, so they never count in the process's resident set; the
// page cache holds them as the kernel sees fit). The scratch file is unlinked as soon as it is
// created, so it disappears with the process however the process ends.
//
// Reads return exactly the floats written (the two storages are interchangeable), so a run with a
// small budget produces the same quantized model as one held in memory. Resumable runs save and
// load them whole with quant/resume_checkpoint.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/calib_activations.h"

namespace elutq {

class ActivationStore final : public CalibActivations {
 public:
  // n_seqs sequences of (seq_len, dim) floats. Spills to a scratch file in scratch_dir (created if
  // missing) when n_seqs * seq_len * dim * 4 bytes exceed budget_bytes. Throws
  // Error if the shape is not positive or the scratch file cannot be created.
  ActivationStore(int64_t n_seqs, int64_t seq_len, int64_t dim, uint64_t budget_bytes,
                  const std::string& scratch_dir);
  ~ActivationStore() override;
  ActivationStore(const ActivationStore&) = delete;
  ActivationStore& operator=(const ActivationStore&) = delete;

  int64_t count() const override { return n_; }
  int64_t tokens() const override { return L_; }
  int64_t dim() const override { return dim_; }
  int64_t seq_floats() const { return L_ * dim_; }
  // Bytes of all sequences (what the budget is compared with).
  uint64_t total_bytes() const { return bytes_; }
  bool spilled() const { return fd_ >= 0; }

  // dst (seq_len, dim) = sequence i.
  void get(int64_t i, float* dst) override { read(i, dst); }
  void read(int64_t i, float* dst) const;
  // sequence i = src (seq_len, dim).
  void put(int64_t i, const float* src) override;

 private:
  int64_t n_, L_, dim_;
  uint64_t bytes_;
  std::vector<float> mem_;  // (n_seqs, seq_len, dim) when in memory
  int fd_ = -1;             // scratch file (n_seqs, seq_len, dim) when spilled
};

}  // namespace elutq
