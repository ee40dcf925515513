// Codes at 1, 2, 4 or 8 bits each; see packed_codes.h.
#include "tensor/packed_codes.h"

#include "core/error.h"

namespace elutq {

int PackedCodes::width_for(int bits) {
  require(bits >= 1 && bits <= 8, "packed codes take 1 to 8 bits, not ", bits);
  int w = 1;
  while (w < bits) w *= 2;
  return w;
}

PackedCodes::PackedCodes(const uint8_t* codes, int64_t n, int bits)
    : n_(n), width_(width_for(bits)) {
  require(n >= 0, "packed codes: negative count ", n);
  const int per_byte = 8 / width_;
  data_.assign(static_cast<size_t>((n + per_byte - 1) / per_byte), 0);
  const unsigned limit = 1u << bits;
  for (int64_t i = 0; i < n; ++i) {
    require(codes[i] < limit, "code ", int(codes[i]), " at ", i, " does not fit in ", bits,
            " bits");
    data_[size_t(i / per_byte)] |= uint8_t(codes[i] << ((i % per_byte) * width_));
  }
}

void PackedCodes::unpack(int64_t begin, int64_t end, uint8_t* out) const {
  require(begin >= 0 && begin <= end && end <= n_, "packed codes: range [", begin, ", ", end,
          ") outside [0, ", n_, ")");
  const int per_byte = 8 / width_;
  const uint8_t mask = uint8_t((1u << width_) - 1);
  int64_t i = begin;
  for (; i < end && i % per_byte != 0; ++i)  // the partial byte at the start
    *out++ = uint8_t((data_[size_t(i / per_byte)] >> ((i % per_byte) * width_)) & mask);
  for (; i + per_byte <= end; i += per_byte) {  // whole bytes
    const uint8_t byte = data_[size_t(i / per_byte)];
    for (int k = 0; k < per_byte; ++k) *out++ = uint8_t((byte >> (k * width_)) & mask);
  }
  for (; i < end; ++i)
    *out++ = uint8_t((data_[size_t(i / per_byte)] >> ((i % per_byte) * width_)) & mask);
}

}  // namespace elutq
