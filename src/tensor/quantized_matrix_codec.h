// The one byte encoding of a QuantizedMatrix, for every format: what elutq model files store (one
// GGUF I8 tensor each), what the LUT kernels run (PackedMatrix wraps the same bytes) and what the
// resume checkpoints keep. Two layouts, chosen by the format (tensor/quantized_matrix_layout.h):
// LUT for Uniform, HLQ and HLQC with B <= 4, plain for everything else.
//
// Parameters are stored as fp16, so decode(encode(q)) gives q back exactly when q's parameters are
// fp16 values (the quantizers guarantee it), and encode(decode(blob)) == blob for every blob an
// encoder wrote. The padding of a blob (rows up to a whole tile, columns up to a whole unit,
// HLQC's ratio codes up to 64 bytes) is written as zeros, skipped by decoding and met only by zero
// activations in the kernels, so in a blob from elsewhere it may hold anything: such a blob
// decodes to the same matrix and re-encodes with zero padding. Every reader validates the header
// against the size before touching the data, so a corrupt blob gives an Error, never an
// out-of-bounds read.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/qformat.h"
#include "tensor/quantized_matrix_layout.h"

namespace elutq {

// True if the spec is stored in the LUT layout (Uniform, HLQ or HLQC with B <= 4).
bool quantized_blob_is_lut(const QuantSpec& spec);
// Bytes of the blob for a spec and shape (what a file writer declares before the data exists).
uint64_t quantized_blob_bytes(const QuantSpec& spec, int64_t rows, int64_t cols);
// The blob of a quantized matrix. Throws Error if q is inconsistent.
std::vector<uint8_t> encode_quantized_blob(const QuantizedMatrix& q);

// The LUT layout's header for a spec and shape (its unit layout Tables4).
PackedHeader make_lut_header(const QuantSpec& spec, int64_t rows, int64_t cols);
// Writes q's LUT blob into out, which holds lut_blob_bytes(make_lut_header(...)) zero bytes (the
// caller picks the memory: PackedMatrix uses huge pages). Throws Error unless q is a consistent
// Uniform, HLQ or HLQC matrix with B <= 4.
void encode_lut_blob(const QuantizedMatrix& q, uint8_t* out);
// Validates a LUT blob of either unit layout (magic, version, kind, shape, derived fields, exact
// size, HLQC codebook) and returns its header. Throws Error saying what is wrong.
PackedHeader check_lut_blob(const uint8_t* data, uint64_t size);

// What a blob holds, from its validated header.
struct QuantizedBlobInfo {
  QuantSpec spec;
  int64_t rows = 0, cols = 0;
  bool lut = false;  // LUT layout rather than plain
};
// Validates the header against size (magic, version, kind, bits, group, shape, derived fields, the
// exact byte count). Throws Error saying what is wrong.
QuantizedBlobInfo inspect_quantized_blob(const uint8_t* data, uint64_t size);
// The matrix back: codes, parameters (the stored fp16 values as floats; HLQC's expanded from s_0,
// m and the ratios) and HLQC's ratio codes and codebook. data must be 4-byte aligned (it is read
// in place as fp16 and fp32 arrays; the model file aligns every blob to 64).
QuantizedMatrix decode_quantized_blob(const uint8_t* data, uint64_t size);
// Exact dequantization of rows [row_begin, row_end) into dst ((row_end - row_begin) * cols).
void quantized_blob_rows_to_f32(const uint8_t* data, uint64_t size, int64_t row_begin,
                                int64_t row_end, float* dst);

}  // namespace elutq
