// Codes held compactly in memory: `bits` (1..8) bits per code rounded up to a power of two
// (1, 2, 4 or 8: 3-bit codes take 4), little-endian within each byte. What keeps a whole model's
// frozen codes resident at a quarter of QuantizedMatrix's byte per code (E2E-QP holds every block's
// codes for the whole training run). Unpacking is a shift and a mask per code.
#pragma once

#include <cstdint>
#include <vector>

namespace elutq {

class PackedCodes {
 public:
  PackedCodes() = default;
  // Packs codes (n), each < 2^bits; throws Error on a code that does not fit or bits outside 1..8.
  PackedCodes(const uint8_t* codes, int64_t n, int bits);

  // Bits a code of `bits` bits takes here (1, 2, 4 or 8); throws Error outside 1..8.
  static int width_for(int bits);

  int64_t size() const { return n_; }
  int width() const { return width_; }  // bits each code takes here
  uint64_t bytes() const { return data_.size(); }
  // Codes [begin, end) into out (end - begin).
  void unpack(int64_t begin, int64_t end, uint8_t* out) const;

 private:
  std::vector<uint8_t> data_;
  int64_t n_ = 0;
  int width_ = 8;
};

}  // namespace elutq
