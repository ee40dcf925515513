// llama2.c checkpoints (stories*.bin: a 7-int header then fp32 weights, shared or separate
// classifier) with their tokenizer.bin, as a ModelSource.
#pragma once

#include <memory>
#include <string>

#include "tensor/model_source.h"

namespace elutq {

// tokenizer_path "" means: tokenizer.bin or tok*.bin in the checkpoint's folder.
std::unique_ptr<ModelSource> open_llama2c(const std::string& path,
                                          const std::string& tokenizer_path);

}  // namespace elutq
