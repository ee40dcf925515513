// Placeholder until the GGUF reader lands; replaced by gguf_model.cpp.
#include "core/error.h"
#include "format/gguf_model.h"
namespace elutq {
bool is_gguf_file(const std::string&) { return false; }
std::unique_ptr<ModelSource> open_gguf(const std::string& path) { fail("GGUF support is not built yet: ", path); }
}  // namespace elutq
