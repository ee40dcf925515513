// The kernel-ready form of a quantized matrix (Uniform, HLQ or HLQC, B = 1..4): the LUT layout of
// tensor/quantized_matrix_layout.h as one flat byte blob, made once from a QuantizedMatrix by the
// codec the model file uses (tensor/quantized_matrix_codec.h), so the kernels also run it straight
// from an mmap'ed model file. docs/FORMAT.md ("LUT kernel layout") has a worked example.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/huge_page_buffer.h"
#include "tensor/qformat.h"
#include "tensor/quantized_matrix_layout.h"

namespace elutq {

class PackedMatrix {
 public:
  PackedMatrix() = default;
  PackedMatrix(PackedMatrix&&) = default;
  PackedMatrix& operator=(PackedMatrix&&) = default;
  PackedMatrix(const PackedMatrix&) = delete;
  PackedMatrix& operator=(const PackedMatrix&) = delete;

  // Packs a Uniform, HLQ or HLQC matrix with B <= 4 (throws Error for anything else): the bytes
  // encode_quantized_blob gives, on huge pages where enabled.
  static PackedMatrix pack(const QuantizedMatrix& q);
  // Random bits and small constant parameters at a real shape, built directly in the packed form
  // (fast even for 7B-size models): for speed measurements only.
  static PackedMatrix synthetic(const QuantSpec& spec, int64_t rows, int64_t cols, uint64_t seed,
                                UnitLayout layout = UnitLayout::Tables4);
  // Uses bytes produced by pack() (e.g. mmap'ed from a model file) without copying; they must
  // outlive the result. Throws Error if the header or the size is inconsistent.
  static PackedMatrix view(const uint8_t* data, size_t size);
  // The same matrix with its units in `layout`: w itself if it is already, else an owned copy
  // (one pass over the bytes; a view's mapping is no longer read afterwards).
  static PackedMatrix relaid(PackedMatrix w, UnitLayout layout);

  const PackedHeader& header() const { return *reinterpret_cast<const PackedHeader*>(data_); }
  const uint8_t* data() const { return data_; }
  size_t size_bytes() const { return size_; }
  // Bytes the kernels stream per call: everything after the header.
  size_t weight_bytes() const { return size_ - sizeof(PackedHeader); }
  int64_t rows() const { return header().rows; }
  int64_t cols() const { return header().cols; }
  bool empty() const { return data_ == nullptr; }
  UnitLayout layout() const { return UnitLayout(header().layout); }

  // The (tile, group) block: params then bit-plane units.
  const uint8_t* block(int64_t tile, int64_t group) const {
    return data_ + lut_block_offset(header(), tile, group);
  }
  // HLQC: the ratio codebook ((B - 1) x 16 fp32) and the (tile, group) ratio codes
  // ((B - 1) x 16 bytes, see quantized_matrix_layout.h).
  const float* ratio_codebook() const {
    return reinterpret_cast<const float*>(data_ + sizeof(PackedHeader));
  }
  const uint8_t* ratio_codes(int64_t tile, int64_t group) const {
    return data_ + lut_ratio_codes_offset(header(), tile, group);
  }

  // The codes back out (rows * cols, row-major), for tests.
  std::vector<uint8_t> unpack_codes() const;

 private:
  // An owned blob of the header's size, zero-filled but for the header.
  static PackedMatrix allocate(const PackedHeader& h);
  uint8_t* mutable_data() { return owned_.data(); }

  HugePageBuffer owned_;  // what pack() / synthetic() made (empty for a view)
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace elutq
