// Row-major matrix products through BLAS for float and double, for the training form of the
// block (block_gradient.h, block_ops.h): C (m, n) = alpha * op(A) op(B) + beta * C, op(X) = X or
// X^T, leading dimensions as in cblas. The callers thread over the pool; BLAS itself runs
// single-threaded (blas_single_threaded) so several pool threads may call it at once.
#pragma once

namespace elutq {

template <class T>
void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
          int ldb, T beta, T* c, int ldc);

// Makes OpenBLAS run each call on the calling thread only (cheap; call before threaded use).
void blas_single_threaded();

}  // namespace elutq
