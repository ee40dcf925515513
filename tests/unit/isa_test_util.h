// Test helpers for the stored-type kernels: the kernel tables of every SIMD instruction set this
// CPU has and this build compiled in (to hold each against the scalar reference), and a view of a
// byte buffer as a stored (rows, n) matrix.
#pragma once

#include <cstdint>
#include <exception>
#include <vector>

#include "core/cpu_features.h"
#include "kernels/dispatch.h"
#include "tensor/tensor_info.h"

namespace elutq::test {

inline std::vector<const IsaKernels*> simd_kernel_tables() {
  std::vector<const IsaKernels*> tables;
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Neon}) {
    if (!isa_available(isa)) continue;
    try {
      tables.push_back(&isa_kernels(isa));
    } catch (const std::exception&) {
      // available on the CPU, not compiled into this build
    }
  }
  return tables;
}

// w viewed as a (rows, n) matrix of type t, named like a block projection.
inline TensorInfo view_tensor(DType t, const std::vector<uint8_t>& w, int64_t rows, int64_t n) {
  TensorInfo ti;
  ti.name = "blk.0.ffn_up.weight";
  ti.dtype = t;
  ti.shape = {rows, n};
  ti.data = w.data();
  ti.nbytes = w.size();
  return ti;
}

}  // namespace elutq::test
