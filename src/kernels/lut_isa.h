// What each instruction set provides to the LUT matmul driver (lut_matmul.cpp): one table of
// function pointers per ISA, filled in that ISA's own file (lut_scalar.cpp, lut_avx2.cpp,
// lut_avx512.cpp, lut_neon.cpp). Internal to src/kernels.
#pragma once

#include <cstdint>

#include "kernels/packed_matrix.h"

namespace elutq {

// Activations prepared once per call and shared read-only by all threads.
struct LutActivations {
  int64_t n = 0;                   // tokens
  int64_t n_groups = 0;            // weight groups per row
  int64_t quads_per_group = 0;     // group_padded / 16
  const int8_t* tables = nullptr;  // (n, n_groups, quads_per_group, 4 tables x 16 entries)
  const float* scale_half = nullptr;  // (n, n_groups): table scale / 2
  const float* sum_x = nullptr;       // (n, n_groups): sum of the group's activations
};

struct LutIsaKernels {
  // Tables for one token: xpad (n_chunks * 4) zero-padded per group, inv_scale (n_groups) the
  // factor that maps the group's largest |sum| to 127. Writes tables (n_chunks * 16). Every ISA
  // must produce the same bytes as the scalar version (round to nearest even of
  // (((+-x0 +- x1) +- x2) +- x3) * inv_scale).
  void (*build_tables)(const float* xpad, const float* inv_scale, int64_t n_groups,
                       int64_t chunks_per_group, int8_t* tables);
  // Y (n, rows) for tiles [tile_begin, tile_end). Float steps are fmas in the scalar order, so
  // every ISA gives bit-identical results.
  void (*matmul_tiles)(const PackedMatrix& w, const LutActivations& a, int64_t tile_begin,
                       int64_t tile_end, float* Y);
};

const LutIsaKernels& lut_kernels_scalar();
const LutIsaKernels& lut_kernels_avx2();
const LutIsaKernels& lut_kernels_avx512();
const LutIsaKernels& lut_kernels_neon();

}  // namespace elutq
