// Placeholder until the Hugging Face loader lands; replaced by hf_model.cpp.
#include "core/error.h"
#include "format/hf_model.h"
namespace elutq {
std::unique_ptr<ModelSource> open_hf_folder(const std::string& p) { fail("HF folders are not supported yet: ", p); }
}  // namespace elutq
