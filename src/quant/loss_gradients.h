// The gradient of the fp model's next-token loss with respect to every decoder block's output,
// on a few calibration sequences: how much a change of each block's output moves the loss. Bit
// allocation weighs each projection's block-output error by its square (a diagonal Fisher
// estimate of the loss increase), so an error in a middle block, which every later block passes
// on, counts for what it costs at the end (quant/bit_allocation.h).
#pragma once

#include <vector>

#include "core/thread_pool.h"
#include "tensor/model_source.h"

namespace elutq {

// For every block l, dL/d(output of block l) as (n_seq * seq_len, dim) row-major, sequence by
// sequence, where L is the mean cross-entropy of predicting tokens 1..T-1 of each sequence (all of
// length T >= 2). Block weights are read from src one block at a time (fp32), the output head
// dequantized whole for the duration. Throws Error on an unsupported source.
std::vector<std::vector<float>> block_output_gradients(const ModelSource& src,
                                                       const std::vector<std::vector<int>>& seqs,
                                                       ThreadPool& pool);

}  // namespace elutq
