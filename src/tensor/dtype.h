// Element types of stored tensors. The GGML block types use the values of the GGUF specification
// so a GGUF tensor's type field maps to DType directly; our own quantized formats sit above 1000.
#pragma once

#include <cstdint>
#include <string>

namespace elutq {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,  // the intermediate type of llama.cpp's K-quant dot products; rarely in files
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,   // plain integer / double tensors (GGUF values); raw blobs in our own files
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  // A quantized matrix of an elutq model file (tensor/quantized_matrix_codec.h), shape {rows, cols}, its
  // bytes the self-describing blob. Only loaders produce it; it is never a GGUF tensor type (the
  // file stores the blob as I8), so dtype_known() is false for it.
  ELUTQ = 1000,
};

// "F32", "Q4_K", ...; "unknown(N)" for a value that is not a DType.
std::string dtype_name(DType t);
// True if t is one of the enumerators above.
bool dtype_known(uint32_t t);
// The names of all of them but ELUTQ, comma-separated, for error messages.
std::string dtype_known_names();
// Elements per block (1 for F32/F16/BF16) and bytes per block.
int64_t dtype_block_elems(DType t);
int64_t dtype_block_bytes(DType t);
// Bytes of a row of n elements; throws Error if n is not a multiple of the block size.
uint64_t dtype_row_bytes(DType t, int64_t n);

}  // namespace elutq
