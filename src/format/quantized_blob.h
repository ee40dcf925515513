// The bytes of one quantized matrix as elutq model files store them (one GGUF I8 tensor each), and
// the only code that reads or writes them. Two layouts, chosen by the format:
//   LUT     Uniform and HLQ with B <= 4: the PackedMatrix blob of kernels/packed_matrix.h (64-byte
//           "ELUTQLP1" header, tiles of bit-planes), so the LUT kernels run it straight from the
//           mmap'ed file.
//   plain   everything else (Codebook / GANQ at any B, Uniform with B = 5..8): a 64-byte "ELUTQPC1"
//           header (PlainQuantHeader), the fp16 parameters row-major by (row, group), padding to
//           64 bytes, then each row's B-bit codes as a little-endian bit stream (code of column c
//           in bits [c*B, c*B + B) of the row; each row starts on a byte).
// docs/FORMAT.md ("Quantized model file") describes both. Every reader validates the header against
// the size before touching the data, so a corrupt blob gives an Error, never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/qformat.h"

namespace elutq {

struct PlainQuantHeader {
  char magic[8];              // "ELUTQPC1"
  uint32_t version;           // 1
  uint8_t kind;               // QuantKind
  uint8_t bits;               // B, 1..8
  uint16_t params_per_group;  // P: Uniform 2, HLQ B + 1, Codebook 2^B
  int64_t rows, cols;         // the logical matrix (out, in)
  int32_t group;              // spec.group (0 = whole row; always 0 for Codebook)
  int32_t group_len;          // columns per parameter group (Codebook: cols)
  int64_t n_groups;           // parameter groups per row (Codebook: 1)
  int64_t params_bytes;       // rows * n_groups * P * 2
  int64_t row_code_bytes;     // ceil(cols * B / 8)
};
static_assert(sizeof(PlainQuantHeader) == 64, "the plain quantized header is 64 bytes on disk");

// True if the spec is stored in the LUT layout (Uniform or HLQ with B <= 4).
bool quantized_blob_is_lut(const QuantSpec& spec);
// Bytes of the blob for a spec and shape (what a file writer declares before the data exists).
uint64_t quantized_blob_bytes(const QuantSpec& spec, int64_t rows, int64_t cols);
// The blob of a quantized matrix. Parameters are stored as fp16 (exact if they already are fp16
// values, as the quantizers guarantee). Throws Error if q is inconsistent.
std::vector<uint8_t> encode_quantized_blob(const QuantizedMatrix& q);

// What a blob holds, from its validated header.
struct QuantizedBlobInfo {
  QuantSpec spec;
  int64_t rows = 0, cols = 0;
  bool lut = false;  // LUT layout (PackedMatrix) rather than plain
};
// Validates the header against size (magic, version, kind, bits, group, shape, derived fields, the
// exact byte count). Throws Error saying what is wrong.
QuantizedBlobInfo inspect_quantized_blob(const uint8_t* data, uint64_t size);
// The codes and parameters back (parameters are the stored fp16 values as floats).
QuantizedMatrix decode_quantized_blob(const uint8_t* data, uint64_t size);
// Exact dequantization of rows [row_begin, row_end) into dst ((row_end - row_begin) * cols).
void quantized_blob_rows_to_f32(const uint8_t* data, uint64_t size, int64_t row_begin,
                                int64_t row_end, float* dst);

}  // namespace elutq
