// Small dense least-squares helpers for the quantizers: the (B+1)x(B+1) normal equations of an HLQ
// group, the 2^B x 2^B codebook system of GANQ. Double precision; the proximal solve by its own
// Cholesky, the pseudo-inverse by LAPACKE.
#pragma once

#include <cstdint>

namespace elutq {

// Solves (M + lambda*I) p = rhs + lambda*p_prev for an n x n symmetric positive semi-definite M
// (row-major, n <= 64), with lambda = ridge * (trace(M)/n + tiny). The proximal term keeps p at
// p_prev along directions M does not determine (an unused bit plane), and because it is a proximal
// step the objective never rises above its value at p_prev. p_prev and p may alias.
// Returns false (p = p_prev) if even the regularised system cannot be factorised.
bool solve_proximal_spd(const double* M, const double* rhs, const double* p_prev, int n,
                        double ridge, double* p);

// Minimum-norm least-squares solution of the symmetric system M x = rhs (n x n, row-major) via
// SVD (LAPACKE dgelsd), singular values below rcond * max treated as zero.
void solve_pinv_sym(const double* M, const double* rhs, int n, double rcond, double* x);

}  // namespace elutq
