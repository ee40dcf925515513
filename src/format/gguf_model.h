// GGUF v2/v3 files as a ModelSource: metadata -> ModelConfig and TokenizerSpec, tensors mapped in
// place with canonical names.
#pragma once

#include <memory>
#include <string>

#include "tensor/model_source.h"

namespace elutq {

// True if the file starts with the GGUF magic.
bool is_gguf_file(const std::string& path);

// Opens a GGUF model. Throws Error on anything malformed or unsupported.
std::unique_ptr<ModelSource> open_gguf(const std::string& path);

}  // namespace elutq
