#include "core/cpu_features.h"

#include <cstdlib>

#include "core/error.h"

#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace elutq {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vnni");
  f.amd = __builtin_cpu_is("amd");
#elif defined(__aarch64__)
  f.neon = true;
  const unsigned long hw = getauxval(AT_HWCAP);
#ifdef HWCAP_ASIMDDP
  f.neon_dotprod = (hw & HWCAP_ASIMDDP) != 0;
#endif
  (void)hw;
#endif
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

bool isa_available(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return f.avx2;
    case Isa::Avx512: return f.avx512;
    case Isa::Neon: return f.neon;
  }
  return false;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Neon: return "neon";
  }
  return "?";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon}) {
    if (name == isa_name(isa)) {
      require(isa_available(isa), "instruction set '", name, "' is not available on this CPU");
      return isa;
    }
  }
  fail("unknown instruction set '", name, "'; use scalar, avx2, avx512 or neon");
}

Isa active_isa() {
  static const Isa isa = [] {
    if (const char* e = std::getenv("ELUTQ_ISA"); e && *e) return parse_isa(e);
    const CpuFeatures& f = cpu_features();
    if (f.avx512) return Isa::Avx512;
    if (f.avx2) return Isa::Avx2;
    if (f.neon) return Isa::Neon;
    return Isa::Scalar;
  }();
  return isa;
}

}  // namespace elutq
