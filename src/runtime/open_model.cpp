// open_model: picks the loader for a path (HF folder, GGUF file, llama2.c checkpoint).
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/input_file.h"
#include "format/gguf_model.h"
#include "format/hf_model.h"
#include "format/llama2c_model.h"
#include "runtime/open_model.h"

namespace elutq {

namespace fs = std::filesystem;

std::unique_ptr<ModelSource> open_model(const std::string& path,
                                        const std::string& tokenizer_path) {
  std::error_code ec;
  // Only llama2.c checkpoints come without their tokenizer; ignoring the file for another model
  // would leave the user believing it is in use.
  const auto no_tokenizer_file = [&](const char* kind) {
    require(tokenizer_path.empty(), "--tokenizer '", tokenizer_path,
            "' applies to llama2.c checkpoints only; '", path, "' is ", kind,
            " and carries its own tokenizer: drop --tokenizer");
  };
  require(!path.empty(),
          "no model given; pass a GGUF file, a Hugging Face folder or a llama2.c .bin");
  require(fs::exists(path, ec), "model '", path, "' does not exist");
  if (fs::is_directory(path, ec)) {
    require(::access(path.c_str(), R_OK | X_OK) == 0, "cannot read folder '", path, "': ",
            std::strerror(errno));
    require(fs::exists(fs::path(path) / "config.json", ec), "folder '", path,
            "' has no config.json; expected a Hugging Face model folder");
    no_tokenizer_file("a Hugging Face folder");
    return open_hf_folder(path);
  }
  require_readable_file(path, "model");  // a pipe, a device or no permission: say so, never block
  if (is_gguf_file(path)) {
    no_tokenizer_file("a GGUF file");
    return open_gguf(path);
  }
  // A file inside a Hugging Face folder stands for the folder.
  const fs::path p(path);
  const std::string name = p.filename().string();
  if (p.extension() == ".safetensors" || name == "config.json" ||
      name == "model.safetensors.index.json") {
    const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    require(fs::exists(dir / "config.json", ec), "'", path,
            "' is part of a Hugging Face model, but its folder has no config.json; pass a folder "
            "holding config.json and the safetensors weights");
    no_tokenizer_file("part of a Hugging Face folder");
    return open_hf_folder(dir.string());
  }
  require(p.extension() != ".gguf", "'", path,
          "' is named .gguf but does not start with the GGUF magic; the file is corrupt or "
          "truncated");
  if (p.extension() == ".bin") {
    require(name.rfind("pytorch_model", 0) != 0, "'", path,
            "' is PyTorch pickle weights, which elutq does not read; use the safetensors version "
            "of the model (a folder with config.json and model.safetensors)");
    return open_llama2c(path, tokenizer_path);
  }
  fail("cannot tell what kind of model '", path,
       "' is: expected a GGUF file, a Hugging Face folder (with config.json) or a llama2.c .bin "
       "checkpoint");
}

}  // namespace elutq
