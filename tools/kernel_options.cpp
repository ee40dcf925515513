// KernelOptions (see kernel_options.h).
#include "kernel_options.h"

#include "runtime/quantized_linear_factory.h"
#include "tensor/model_source.h"

namespace elutq::cli {

void KernelOptions::add_to(CLI::App& app) {
  app.add_option("--kernel", kernel, kKernelOptionHelp)->check(CLI::IsMember({"lut", "dequant"}));
  app.add_option("--lut-tables", lut_tables, kLutTablesOptionHelp)
      ->check(CLI::IsMember({"int8", "int12", "int16", "auto"}));
}

LinearFactory KernelOptions::factory_for(const ModelSource& src) const {
  return linear_factory_for(src, parse_kernel_choice(kernel), parse_lut_tables(lut_tables));
}

}  // namespace elutq::cli
