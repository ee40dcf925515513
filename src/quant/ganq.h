// GANQ: a per-output-row codebook of 2^B values with B-bit indices, fitted against the layer
// Hessian H = 2 X^T X / n. Per row w (1, n) it alternates
//   codebook:   T = w H S^T (S H S^T)^+   (S (2^B, n) one-hot codes: least squares for T)
//   assignment: with H = L L^T, the error (w - T S) L is made small column by column from the last
//               to the first: each weight takes the codebook entry nearest to its value corrected
//               by the errors already made on the later columns (back-substitution).
// Start: a uniform grid over the row's [min, max]; 10 iterations; the best iterate per row is kept;
// the codebook is rounded to fp16 before the final assignment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/qformat.h"

namespace elutq {

class ThreadPool;

struct GanqOptions {
  int iterations = 10;
  double percdamp = 0.01;
};

struct GanqResult {
  QuantizedMatrix q;  // kind Codebook
  std::string log;    // damping retries
  double loss = 0;    // sum over rows of (w - q) H_damped (w - q)^T
};

GanqResult ganq_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                         int bits, const GanqOptions& opt = {}, ThreadPool* pool = nullptr);

// The codebook step for one row: wH (n) = w H, H (n, n), codes (n). Entries of T (2^B) whose code
// is unused keep their value; the rest get the least-squares solution (minimum norm if singular).
void ganq_codebook_update(const float* wH, const float* H, int n, const uint8_t* codes, int bits,
                          float* T);

// The assignment step for one row: L (n, n) lower Cholesky factor of H, row-major. Writes codes
// and returns ||(w - T[codes]) L||^2.
double ganq_assign(const float* w, const float* L, int n, const float* T, int bits,
                   uint8_t* codes);

}  // namespace elutq
