// Bit-serial lookup-table matrix products on a PackedMatrix, with no dequantization.
//
// Every weight is written in the symmetric form w = z' + sum_b (s_b / 2) * sigma_b, sigma_b = +-1
// (z' = z + sum_b s_b / 2). For each run of 4 activations a table of the 16 signed sums
// +-x0 +-x1 +-x2 +-x3 is built once per call, rounded to int8 (or int16, see LutTables) with one
// scale per weight group; each bit-plane's 4-bit pattern then looks up its partial dot product.
// Per group and row:
//   y += (scale_g / 2) * sum_b s_b * isum_b + z' * sum(x over the group)
// where isum_b is the exact int32 sum of the looked-up entries. The only approximation is the
// rounding of the tables (bounded in tests/unit/test_lut_kernels.cpp and docs/RESULTS.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "core/cpu_features.h"
#include "kernels/packed_matrix.h"

namespace elutq {

class ThreadPool;

// Precision of the activation tables.
//   Int8:  entries rounded to int8 (the group's largest |sum| -> 127); ~0.7% relative error per
//          matmul against fp32 with Gaussian activations, more where a few outlier channels set
//          the group's scale. One byte lookup per weight byte.
//   Int12: entries rounded to 12 bits (largest |sum| -> 2047), kept as a 6-bit low-part and a
//          high-part table: ~16x less table error than int8. Two lookups per weight byte like
//          int16, but the parts are small enough that AVX2 adds four lookups as bytes before
//          widening, which makes it cheaper than int16 there (docs/RESULTS.md).
//   Int16: entries rounded to int16 (largest |sum| -> 32767), kept as a low-byte and a high-byte
//          table so each ISA still uses its byte lookup: ~250x less table error, at two lookups
//          and two integer sums per weight byte (docs/RESULTS.md has the measured cost).
//   Auto:  per matrix, wide tables for B <= 2 and Int8 for B >= 3 (the tools' default): int8
//          tables move the perplexity of 2-bit models measurably and of 3- and 4-bit ones little,
//          so only 2-bit models pay for wider tables, and those are the cheaper ones on the
//          kernels' ISA: Int12 on AVX2, Int16 elsewhere (where both cost the same, so the finer).
//          Figures: see docs/RESULTS.md, sections "LUT kernels" and "int12 activation tables".
enum class LutTables : uint8_t { Int8, Int16, Auto, Int12 };

// "int8", "int12", "int16" or "auto"; throws Error naming the choices otherwise.
LutTables parse_lut_tables(const std::string& name);
const char* lut_tables_name(LutTables tables);
// The precision a matrix of `bits` bits per weight and groups of group_padded columns runs with
// on the kernels of `isa`: Auto resolved as above (Int8 where a group is too long for wide sums);
// others unchanged.
LutTables resolve_lut_tables(LutTables tables, int bits, int64_t group_padded, Isa isa);

// The unit layout an instruction set's kernels read (packed_matrix.h): Rows32 for AVX2, Tables4
// (the file layout) for the others.
UnitLayout lut_unit_layout(Isa isa);
// w in the layout isa reads: w itself where it already is (a file's mapping stays in use), else
// a copy made once (PackedMatrix::relaid). What a runtime calls at load.
PackedMatrix lut_matrix_for(PackedMatrix w, Isa isa);

// y (rows) = W (rows, cols) x (cols). pool may be null (single-threaded). W must be in the unit
// layout of the ISA that runs (lut_matrix_for); Error otherwise.
void lut_gemv(const PackedMatrix& w, const float* x, float* y, ThreadPool* pool,
              LutTables tables = LutTables::Int8);
// Y (n, rows) = X (n, cols) W^T: every weight tile is loaded once and used for all n tokens.
void lut_gemm(const PackedMatrix& w, const float* X, int64_t n, float* Y, ThreadPool* pool,
              LutTables tables = LutTables::Int8);

// The same with an explicit instruction set (tests and benchmarks); throws Error if this build or
// CPU lacks it. The plain calls use active_isa().
void lut_gemm_isa(Isa isa, const PackedMatrix& w, const float* X, int64_t n, float* Y,
                  ThreadPool* pool, LutTables tables = LutTables::Int8);

// Whether a and b can run on one set of activation tables (lut_gemm_same_input_isa on `isa`): the
// same columns and group, unit layout and, with `tables` resolved for each, the same precision.
bool lut_tables_shareable(const PackedMatrix& a, const PackedMatrix& b, LutTables tables, Isa isa);

// At most this many matrices run as one job (lut_gemm_same_input_isa).
constexpr size_t kLutMaxSameInput = 8;

// Several matrices that read the same input (a block's Q/K/V, its gate/up): Ys[i] (n,
// ws[i]->rows()) = X ws[i]^T, at most kLutMaxSameInput matrices. The activation tables are built
// once for all of them and their tiles go to the threads in one dispatch, as if they were one
// matrix; each output is bit-identical to a lut_gemm_isa of its matrix alone. Error unless every
// pair is lut_tables_shareable.
void lut_gemm_same_input_isa(Isa isa, std::span<const PackedMatrix* const> ws, const float* X,
                             int64_t n, std::span<float* const> Ys, ThreadPool* pool,
                             LutTables tables = LutTables::Int8);

}  // namespace elutq
