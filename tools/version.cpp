// `elutq version`: the build and what this CPU offers.
#include <cstdio>

#include "cli.h"
#include "core/cpu_features.h"
#include "core/thread_pool.h"

namespace elutq::cli {
namespace {

int run_version(int argc, char** argv) {
  CLI::App app("Print the elutq version and the CPU features it will use.", argv[0]);
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;
  const CpuFeatures& f = cpu_features();
  std::printf("elutq 0.1.0\n");
  std::printf("cpu: avx2=%d avx512=%d neon=%d dotprod=%d; kernels use: %s; hardware threads: %d\n",
              f.avx2, f.avx512, f.neon, f.neon_dotprod, isa_name(active_isa()), hardware_threads());
  return 0;
}

const VerbRegistrar reg({"version", "print the version and the CPU features in use", run_version});

}  // namespace
}  // namespace elutq::cli
