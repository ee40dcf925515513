// Placeholder until the llama2.c loader lands; replaced by llama2c_model.cpp.
#include "core/error.h"
#include "format/llama2c_model.h"
namespace elutq {
std::unique_ptr<ModelSource> open_llama2c(const std::string& p, const std::string&) { fail("llama2.c checkpoints are not supported yet: ", p); }
}  // namespace elutq
