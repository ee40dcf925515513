// Opening a model file or folder with the loader that reads it. It knows every loader in format/,
// so it lives in runtime/, above everything that only consumes a ModelSource.
#pragma once

#include <memory>
#include <string>

#include "tensor/model_source.h"

namespace elutq {

// Opens a model, choosing the loader by what the path is: a folder with config.json (Hugging
// Face), a file starting with the GGUF magic, or a llama2.c checkpoint (.bin; its tokenizer is
// found by tokenizer_path, or tokenizer.bin / tok*.bin beside it). Throws Error otherwise.
std::unique_ptr<ModelSource> open_model(const std::string& path,
                                        const std::string& tokenizer_path = "");

}  // namespace elutq
