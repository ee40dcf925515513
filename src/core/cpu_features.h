// What the CPU we run on can do, detected once at run time. ELUTQ_ISA=scalar|avx2|avx512|neon
// caps the choice (for tests and benchmarks); asking for something the CPU lacks is an error.
#pragma once

#include <string>

namespace elutq {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };

struct CpuFeatures {
  bool avx2 = false;     // with FMA and F16C
  bool avx512 = false;   // F, BW, VL, DQ, VBMI and VNNI together
  bool neon = false;
  bool neon_dotprod = false;
  bool amd = false;      // an AMD x86 CPU: kernels tuned by measurement per vendor ask this
};

const CpuFeatures& cpu_features();
// The best ISA this build and CPU support, unless ELUTQ_ISA names another.
Isa active_isa();
// Throws Error if the name is unknown or the CPU/build lacks it.
Isa parse_isa(const std::string& name);
bool isa_available(Isa isa);
const char* isa_name(Isa isa);

}  // namespace elutq
