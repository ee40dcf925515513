// The two kinds of file in a resumable run's work directory (quant/resume.h) besides its manifest:
//   block-N.ckpt  "ELUTQCK2": what block N sent to the output, each tensor by name and kind:
//                 a quantized tensor as its model-file blob (tensor/quantized_matrix_codec.h, the
//                 same bytes the output file holds, so every format and all its parameters come
//                 back exactly), an fp32 tensor with its shape, or "unchanged"; then free-form notes
//   acts-N.bin    "ELUTQAC2": the calibration activations after block N, (n_seqs, seq_len, dim)
//                 fp32 after a header with the shape
// Both end up whole or absent (written under a temporary name, fsync'd, renamed) and carry a
// checksum, so a damaged file gives an Error naming it rather than a wrong model. Files of the
// earlier layouts (ELUTQCK1, which lost HLQC's ratio codes, and ELUTQAC1, without a checksum) are
// refused with a message saying to start over.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/qformat.h"

namespace elutq {

class ActivationStore;

// One tensor a finished block produced, in the form it went to the output.
struct CheckpointTensor {
  enum class Kind : uint8_t { Quantized = 0, F32 = 1, Unchanged = 2 };
  std::string name;
  Kind kind = Kind::Quantized;
  QuantizedMatrix q;            // Quantized
  std::vector<int64_t> shape;   // F32: outermost first
  std::vector<float> data;      // F32: numel(shape) floats
                                // Unchanged: nothing; replayed from the source by name
};

struct BlockCheckpoint {
  std::vector<CheckpointTensor> tensors;  // in the order the run produced them
  std::string notes;                      // free-form (report lines), given back as it was
};

// path holds bytes, whole or not at all (written under a temporary name, fsync'd, renamed).
void write_file_atomic(const std::string& path, const std::string& bytes);
// The whole file. Throws Error if it cannot be opened.
std::string read_whole_file(const std::string& path);

void write_block_checkpoint(const std::string& path, const BlockCheckpoint& cp);
// Throws Error if the file is missing, of another layout, truncated or damaged.
BlockCheckpoint read_block_checkpoint(const std::string& path);

// All of acts' sequences to path, and back into acts (which must have the file's shape). load
// throws Error if the file is missing, of another layout or shape, truncated or damaged.
void save_activations(const ActivationStore& acts, const std::string& path);
void load_activations(const std::string& path, ActivationStore& acts);

}  // namespace elutq
