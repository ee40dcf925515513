// The `--kernel` and `--lut-tables` options shared by every verb that runs a model (generate,
// chat, logits, perplexity): one place for their defaults, choices and help, and for turning them
// into the model's LinearFactory.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "model/linear.h"

namespace elutq {
class ModelSource;
}

namespace elutq::cli {

struct KernelOptions {
  std::string kernel = "lut";
  std::string lut_tables = "auto";

  void add_to(CLI::App& app);
  // linear_factory_for(src, kernel, lut tables): empty for models with no quantized tensor.
  LinearFactory factory_for(const ModelSource& src) const;
};

}  // namespace elutq::cli
