// Hugging Face model folders as a ModelSource: config.json, model.safetensors or a sharded
// model.safetensors.index.json, tokenizer.json + tokenizer_config.json.
#pragma once

#include <memory>
#include <string>

#include "tensor/model_source.h"

namespace elutq {

std::unique_ptr<ModelSource> open_hf_folder(const std::string& folder);

}  // namespace elutq
