// Reading the elutq-specific part of an elutq quantized model file (a GGUF file with
// elutq.format_version; docs/FORMAT.md "Quantized model file"): the version check and the
// quantized tensors, each validated three ways (its blob header, its elutq.tensor.<name>.* keys and
// the shape the model config implies). gguf_model.cpp calls these; other GGUF files never reach
// them.
#pragma once

#include <map>
#include <string>

#include "format/gguf_file.h"
#include "tensor/model_config.h"
#include "tensor/tensor_info.h"

namespace elutq {

// True if the file says it is an elutq quantized model file (has elutq.format_version).
bool is_elutq_model_file(const GgufFile& g);

// Checks elutq.format_version and returns every quantized tensor as a TensorInfo with its logical
// shape {rows, cols}, dtype ELUTQ and the blob as its bytes (in the mapping). Throws Error naming
// the file and the tensor on any inconsistency: unknown version, a format key whose tensor is
// missing or not an I8 vector, a blob whose header disagrees with the keys or is truncated, a
// shape that is not the one the config implies.
std::map<std::string, TensorInfo> read_elutq_quantized_tensors(const GgufFile& g,
                                                               const ModelConfig& c);

}  // namespace elutq
