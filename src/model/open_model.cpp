#include <filesystem>

#include "core/error.h"
#include "format/gguf_model.h"
#include "format/hf_model.h"
#include "format/llama2c_model.h"
#include "model/model_source.h"

namespace elutq {

namespace fs = std::filesystem;

const TensorInfo& ModelSource::get(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorInfo* t = find(name);
  require(t != nullptr, "tensor '", name, "' is missing from the ", format_name(), " model");
  if (t->shape != shape) {
    auto str = [](const std::vector<int64_t>& s) {
      std::string r = "[";
      for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
      return r + "]";
    };
    fail("tensor '", name, "' has shape ", str(t->shape), " but the config implies ", str(shape));
  }
  return *t;
}

std::unique_ptr<ModelSource> open_model(const std::string& path, const std::string& tokenizer_path) {
  std::error_code ec;
  require(fs::exists(path, ec), "model '", path, "' does not exist");
  if (fs::is_directory(path, ec)) {
    require(fs::exists(fs::path(path) / "config.json", ec), "folder '", path,
            "' has no config.json; expected a Hugging Face model folder");
    return open_hf_folder(path);
  }
  if (is_gguf_file(path)) return open_gguf(path);
  if (fs::path(path).extension() == ".bin") return open_llama2c(path, tokenizer_path);
  fail("cannot tell what kind of model '", path,
       "' is: expected a GGUF file, a Hugging Face folder (with config.json) or a llama2.c .bin checkpoint");
}

}  // namespace elutq
